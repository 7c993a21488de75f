"""Write the NATS accounts (``metalbus bus accounts``) into the files that ship them:
the ``accounts.conf`` key of the ConfigMap in ``k8s/base/nats.yaml`` and ``compose/nats/accounts.conf``.

    .venv/bin/python deploy/nats_config.py

A test fails while either is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from services.common.credentials import ISSUER_VARIABLE
from services.common.permissions import render_accounts

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "k8s" / "base" / "nats.yaml"
COMPOSE = ROOT / "compose" / "nats" / "accounts.conf"
_BLOCK = re.compile(r"(  accounts\.conf: \|\n)((?:    .*\n|\n)*?)(---)")


def accounts() -> str:
    return render_accounts(issuer=f"${ISSUER_VARIABLE}")


def manifest_with(text: str, manifest: str) -> str:
    indented = "".join(f"    {line}\n" if line else "\n" for line in text.rstrip("\n").split("\n"))
    return _BLOCK.sub(lambda match: match.group(1) + indented + match.group(3), manifest, count=1)


def main() -> int:
    text = accounts()
    MANIFEST.write_text(manifest_with(text, MANIFEST.read_text()))
    COMPOSE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
