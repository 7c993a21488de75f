"""The images the container tests run: the Python base and metalbus's own image, built here.

:func:`python_base` answers the base the ``Dockerfile`` names (``ARG PYTHON_IMAGE``, the official
``python:3.11.7-slim-bookworm``) when the engine holds it or a ``docker save`` of it lies in the cache
directory; otherwise a stand-in built from Debian packages. No registry is reachable from the test machines,
so the stand-in is what CI uses. :func:`build_metalbus` builds the ``Dockerfile`` as shipped on that base.

The stand-in: ``debootstrap --variant=minbase`` of Debian bookworm with ``python3`` (3.11), ``python3-venv``,
``python-is-python3`` and ``ca-certificates``, made to behave as the official image does for everything the
``Dockerfile`` does with it:

- ``python`` is on PATH and the interpreter is not marked externally managed (the ``EXTERNALLY-MANAGED``
  file goes), as in the official image, whose Python is built from source;
- ``pip`` and ``setuptools`` are installed into the system Python by pip itself (from the wheels Debian
  ships for ``venv``), so they have a ``RECORD`` and ``python -m pip uninstall --yes pip setuptools wheel``
  removes them as it does in the official image (Debian's own ``python3-pip`` could not be uninstalled by
  pip); ``wheel``, which nothing here uses, is absent (pip says so and goes on);
- pip inside a build trusts the same certificate authorities as pip on this machine: the CA bundle pip uses
  here (``PIP_CERT``, else pip's configured ``cert``, else the system's) is copied in and ``PIP_CERT``
  points to it. The test machines reach package indexes only through an intercepting proxy.

Building it takes about 40 s, so the result is kept as a tarball in ``METALBUS_TEST_CACHE`` (default
``/var/cache/metalbus-tests``), named by a digest of everything that defines it (suite, packages, mirror,
CA bundle, this recipe's version): a rerun imports it in seconds.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.containers.engine import Engine

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
CACHE_VARIABLE = "METALBUS_TEST_CACHE"
DEFAULT_CACHE = Path("/var/cache/metalbus-tests")
#: The name the project image is built under in the tests' engine.
METALBUS_IMAGE = "metalbus:test"

SUITE = "bookworm"
STANDIN_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
#: Where the stand-in keeps the CA bundle pip uses inside builds.
STANDIN_CA_BUNDLE = "/usr/local/share/ca-certificates/build-ca-bundle.crt"
#: Raised whenever the recipe below changes what the stand-in holds (so a cached one is rebuilt).
STANDIN_RECIPE = 1
#: As the official image sets them.
STANDIN_ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "PIP_CERT": STANDIN_CA_BUNDLE,
}


class Unavailable(Exception):
    """The image cannot be made here (no Debian mirror reachable, no debootstrap): the reason to skip with."""


def cache_directory() -> Path:
    directory = Path(os.environ.get(CACHE_VARIABLE) or DEFAULT_CACHE)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def official_base() -> str:
    """The base the ``Dockerfile`` builds on by default (its ``ARG PYTHON_IMAGE``)."""
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    if match is None:
        raise AssertionError("the Dockerfile declares no ARG PYTHON_IMAGE=<default>")
    return match.group(1)


def python_base(engine: Engine) -> str:
    """The name of a Python base image present in ``engine``: the official one if the engine holds it or
    the cache holds its ``docker save`` tarball, else the stand-in (built once, then cached). Raises
    :class:`Unavailable` when neither can be had."""
    official = official_base()
    if engine.has_image(official):
        return official
    saved = cache_directory() / f"{re.sub(r'[^A-Za-z0-9.-]', '_', official)}.tar"
    if saved.is_file():
        engine.docker("load", "--input", str(saved), timeout=300)
        if engine.has_image(official):
            return official
    return standin_base(engine)


@dataclass(frozen=True)
class StandinRecipe:
    """Everything that defines the stand-in base; its digest names the cached tarball."""

    mirror: str
    ca_bundle: Path

    @property
    def digest(self) -> str:
        defined = {"suite": SUITE, "packages": STANDIN_PACKAGES, "mirror": self.mirror,
                   "ca": hashlib.sha256(self.ca_bundle.read_bytes()).hexdigest(),
                   "environment": STANDIN_ENVIRONMENT, "recipe": STANDIN_RECIPE}
        return hashlib.sha256(json.dumps(defined, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def image(self) -> str:
        return f"metalbus-test/python-standin:{self.digest}"


def standin_base(engine: Engine) -> str:
    """The stand-in base (see the module's documentation) imported into ``engine``; its name."""
    recipe = StandinRecipe(mirror=debian_mirror(), ca_bundle=pip_ca_bundle())
    if engine.has_image(recipe.image):
        return recipe.image
    tarball = cache_directory() / f"python-standin-{recipe.digest}.tar"
    if not tarball.is_file():
        _build_standin_tarball(recipe, tarball)
    changes = [f"ENV {name}={value}" for name, value in STANDIN_ENVIRONMENT.items()] + ['CMD ["python3"]']
    engine.docker("import", *(arg for change in changes for arg in ("--change", change)), str(tarball),
                  recipe.image, timeout=300)
    return recipe.image


def debian_mirror(apt: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses for ``bookworm`` (deb822 ``.sources`` or ``sources.list``)."""
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+)$", stanza, re.MULTILINE))
            if SUITE in fields.get("Suites", "").split() and "main" in fields.get("Components", "").split():
                return fields["URIs"].split()[0]
    sources = apt / "sources.list"
    if sources.is_file():
        for line in sources.read_text().splitlines():
            match = re.match(rf"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s+.*\bmain\b", line)
            if match:
                return match.group(1)
    raise Unavailable(f"no Debian {SUITE} mirror in apt's sources to build the stand-in Python base from")


def pip_ca_bundle() -> Path:
    """The CA bundle pip on this machine verifies HTTPS with: ``PIP_CERT``, else the ``cert`` of pip's
    configuration files, else the system's default bundle."""
    configured = os.environ.get("PIP_CERT")
    if not configured:
        parser = configparser.ConfigParser()
        parser.read(["/etc/pip.conf", "/etc/xdg/pip/pip.conf", Path.home() / ".config/pip/pip.conf",
                     Path.home() / ".pip/pip.conf"])
        configured = parser.get("global", "cert", fallback=None) or ssl.get_default_verify_paths().cafile
    if not configured or not Path(configured).is_file():
        raise Unavailable("no CA bundle for pip found (PIP_CERT, pip's cert, the system's)")
    return Path(configured)


def _mirror_reachable(mirror: str) -> str | None:
    """None when the mirror answers for the suite; else why not."""
    try:
        with urllib.request.urlopen(f"{mirror.rstrip('/')}/dists/{SUITE}/Release", timeout=15) as answer:
            answer.read(1)
    except OSError as error:
        return f"the Debian mirror {mirror} cannot be reached ({error}): no stand-in Python base"
    return None


def _build_standin_tarball(recipe: StandinRecipe, tarball: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise Unavailable("debootstrap is not installed (Debian: debootstrap): no stand-in Python base")
    unreachable = _mirror_reachable(recipe.mirror)
    if unreachable:
        raise Unavailable(unreachable)
    work = Path(tempfile.mkdtemp(prefix="standin-", dir=tarball.parent))
    root = work / "root"
    try:
        _run("nice", "debootstrap", "--variant=minbase", f"--include={','.join(STANDIN_PACKAGES)}", SUITE,
             str(root), recipe.mirror, timeout=900)
        (root / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
        wheels = root / "usr/share/python-wheels"
        (pip_wheel,) = wheels.glob("pip-*.whl")
        _run("chroot", str(root), "python3", f"/usr/share/python-wheels/{pip_wheel.name}/pip", "install",
             "--no-index", "--find-links", "/usr/share/python-wheels", "--no-cache-dir", "pip", "setuptools",
             timeout=300)
        bundle = root / STANDIN_CA_BUNDLE.lstrip("/")
        bundle.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(recipe.ca_bundle, bundle)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log"):
            for entry in (root / leftover).glob("*"):
                if entry.is_file():
                    entry.unlink()
        partial = work / "base.tar"
        _run("tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), ".", timeout=300)
        partial.replace(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(*command: str, timeout: float) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... exited {result.returncode}: "
                           f"{(result.stdout + result.stderr).strip()[-3000:]}")


def build_metalbus(engine: Engine, *, base: str, tag: str = METALBUS_IMAGE) -> str:
    """The project image built from the ``Dockerfile`` as shipped, on ``base`` (passed as ``PYTHON_IMAGE``),
    with the host's network for the downloads; its tag."""
    engine.docker("build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}", "--tag", tag, str(REPO),
                  timeout=1200)
    return tag


def image_size(engine: Engine, image: str) -> int:
    """The bytes an image takes, its base's layers included (``docker image inspect``'s Size)."""
    return int(engine.docker("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
