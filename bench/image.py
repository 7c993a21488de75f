"""The image's size and build time (needs root and Debian's docker.io, or METALBUS_TEST_DOCKER_HOST).

    python bench/image.py

Builds the Dockerfile as shipped on the Python base the container tests use (tests/containers/images.py: the
official python:3.11.7-slim-bookworm when present, else the Debian stand-in, cached) in a private engine, and
prints the image's size above its base, what takes the most room in its environment, and how long the base
and the build took (the build includes downloading every pin of requirements.lock).
Prints figures; the last line is one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.containers.engine import run_once, running_engine, skip_reason
from tests.containers.images import build_metalbus, image_size, python_base

MB = 1e6
_LARGEST = ("cd /opt/metalbus/lib/python*/site-packages && du -sk * | sort -rn | head -6; "
            "du -sk /opt/metalbus | tail -1")


def main() -> int:
    reason = skip_reason()
    if reason:
        print(f"cannot run: {reason}")
        return 1
    with running_engine() as engine:
        started = time.monotonic()
        base = python_base(engine)
        base_seconds = time.monotonic() - started
        started = time.monotonic()
        image = build_metalbus(engine, base=base)
        build_seconds = time.monotonic() - started
        size, base_size = image_size(engine, image), image_size(engine, base)
        largest = run_once(engine, image, "-c", _LARGEST, options=("--entrypoint", "sh")).stdout.split("\n")
    print(f"python base: {base} (ready in {base_seconds:.1f} s)")
    print(f"image built in {build_seconds:.1f} s")
    print(f"image size: {size / MB:.0f} MB, base {base_size / MB:.0f} MB")
    print(f"image size above base: {(size - base_size) / MB:.0f} MB")
    rows = [line.split("\t") for line in largest if "\t" in line]
    print("largest in /opt/metalbus: " + ", ".join(f"{name} {int(kb) / 1e3:.0f} MB" for kb, name in rows))
    print(json.dumps({"base": base, "base_seconds": round(base_seconds, 1), "build_seconds": round(build_seconds, 1),
                      "image_bytes": size, "base_bytes": base_size, "above_base_bytes": size - base_size}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
