"""metalbus releases to run side by side: this tree, and an earlier release built from its tag.

An earlier release is its tag's source tree (``git archive``) with a virtual environment of its own. Its
third-party packages are its own lock's: when that lock is this tree's (true of every release so far), the new
environment reads the packages already installed here instead of downloading them again; otherwise they are
installed from the release's lock. Either way the release's own code is the only metalbus code
its processes import: they run in its tree, with it first on the path.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from tests.netlab import REPO

#: The first release, and its commit (a clone without tags still has it).
PREVIOUS = "v0.1.0"
PREVIOUS_COMMIT = "0ca686a3d22f49ac4720e00e16470b6b5b6709e5"


@dataclass(frozen=True, slots=True)
class Release:
    name: str
    python: Path
    root: Path

    def command(self, *arguments: str) -> list[str]:
        """``metalbus ARGUMENTS`` of this release (run it with ``cwd=root``)."""
        return [str(self.python), "-m", "services.cli", *arguments]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "PYTHONPATH": str(self.root), "PYTHONUNBUFFERED": "1"}


CURRENT = Release("current", Path(sys.executable), REPO)


def unavailable(tag: str = PREVIOUS, commit: str = PREVIOUS_COMMIT) -> str | None:
    """Why the release cannot be built here (None: it can)."""
    if _known(tag) or _known(commit):
        return None
    return f"neither the tag {tag} nor its commit is in this clone's history"


def _known(ref: str) -> bool:
    return subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{ref}^{{commit}}"], capture_output=True,
                          check=False).returncode == 0


def built_release(directory: Path, tag: str = PREVIOUS, commit: str = PREVIOUS_COMMIT) -> Release:
    """The release ``tag`` built into ``directory``: its source tree and a venv of its own."""
    ref = tag if _known(tag) else commit
    tree = directory / tag / "src"
    venv = directory / tag / "venv"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref], capture_output=True,
                             check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    same_lock = (tree / "requirements.lock").read_bytes() == (REPO / "requirements.lock").read_bytes()
    if same_lock:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        packages = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
        site = _site_packages(venv)
        # plain paths, not site directories: their .pth files (this tree's editable install) are not read
        (site / "releases-packages.pth").write_text("".join(f"{path}\n" for path in packages))
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                        "-r", str(tree / "requirements.lock")], check=True)
    return Release(tag, venv / "bin" / "python", tree)


def _site_packages(venv: Path) -> Path:
    script = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    found = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, check=True)
    return Path(found.stdout.strip())
