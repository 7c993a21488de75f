"""Run a command on this machine's own files under another kernel: a small qemu guest booted with a Debian
kernel, whose root is this machine's root shared read-only over virtio-9p beneath a tmpfs overlay (the same
venv, routers and repository, every write the guest's own). For tests that need what this kernel lacks (a VRF
driver). The kernel is unpacked, not installed (``make guest-kernel``): nothing runs on this machine's boot.

The guest runs on KVM where the processor's virtualization is there (kvm_intel or kvm_amd), else on qemu's own
translator (TCG): KVM without it (a software KVM such as kvm_pvm inside a microVM) runs an unmodified kernel by
emulating it, far slower than TCG. Under TCG a guest boots in about 8 s and runs Python several times slower.

The initramfs is built here from this machine's own ``sh``, ``kmod``, ``mount`` and ``switch_root`` (each with
the libraries it links) and the kernel's 9p and overlay modules; it mounts the root and hands over to the job's
script. The job directory is shared read-write: the script the guest runs goes in, its output and exit status
come out. The guest powers off when the script ends (its init exits, the kernel panics, qemu does not reboot).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNEL_ROOT = ROOT / ".run" / "guest-kernel"
"""Where ``make guest-kernel`` unpacks the Debian kernel package (boot/vmlinuz-*, lib/modules/*)."""

QEMU = "qemu-system-x86_64"

_BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
"""What mounting a virtio-9p root beneath an overlay needs; the initramfs loads them after what they depend on."""

_ACCELERATION = {
    "kvm": ("-accel", "kvm", "-cpu", "host"),
    "tcg": ("-accel", "tcg,thread=multi", "-cpu", "max"),
}

_TOOLS = ("sh", "kmod", "mount", "mkdir", "switch_root")

_INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for module in {modules}; do insmod /modules/$module.ko || echo "guest: insmod $module failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower || exit 1
mount -t tmpfs -o size=75% writes /writes
mkdir -p /writes/upper /writes/work
mount -t overlay -o lowerdir=/lower,upperdir=/writes/upper,workdir=/writes/work root /newroot
mkdir -p /newroot/job
mount -t 9p -o trans=virtio,version=9p2000.L job /newroot/job || exit 1
exec switch_root /newroot /bin/sh /job/boot.sh
"""

_BOOT = """set -u
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /run/netns /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /job/keep /usr/lib/modules
# the working directory shared on its own (it may lie under /tmp, which the guest has just made its own)
mkdir -p /run/cwd-lower /run/cwd-writes {cwd}
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 cwd /run/cwd-lower || exit 1
mkdir -p /run/cwd-writes/upper /run/cwd-writes/work
mount -t overlay -o lowerdir=/run/cwd-lower,upperdir=/run/cwd-writes/upper,workdir=/run/cwd-writes/work cwd {cwd}
ln -sfn {modules} /usr/lib/modules/{release}
hostname guest
ip link set lo up
cd {cwd}
( {command} ) >/job/output 2>&1
echo $? >/job/status
"""


class GuestUnavailable(Exception):
    """Why no guest can be booted here (no KVM, no qemu, no kernel unpacked): a test's skip reason."""


@dataclass(frozen=True)
class GuestKernel:
    image: Path
    modules: Path  # lib/modules/<release>

    @property
    def release(self) -> str:
        return self.modules.name


@dataclass(frozen=True)
class GuestRun:
    status: int | None  # None: the guest stopped before the command ended
    output: str
    console: str
    seconds: float
    kept: dict[str, str]  # what the command left in /job/keep: relative path -> text


def _read_tree(directory: Path) -> dict[str, str]:
    if not directory.is_dir():
        return {}
    return {str(path.relative_to(directory)): path.read_text(errors="replace")
            for path in sorted(directory.rglob("*")) if path.is_file() and path.stat().st_size < 1 << 20}  # fmt: skip


def guest_kernel(root: Path = KERNEL_ROOT) -> GuestKernel:
    """The unpacked kernel, or GuestUnavailable saying what is missing."""
    images = sorted((root / "boot").glob("vmlinuz-*"))
    if not images:
        raise GuestUnavailable(f"no guest kernel unpacked in {root} (make guest-kernel)")
    release = images[-1].name.removeprefix("vmlinuz-")
    modules = root / "lib" / "modules" / release
    if not (modules / "modules.dep").is_file():
        raise GuestUnavailable(f"the guest kernel's modules are not indexed in {modules} (make guest-kernel)")
    return GuestKernel(images[-1], modules)


def accelerator() -> str:
    """``kvm`` where the processor's virtualization backs /dev/kvm, else ``tcg``."""
    hardware = any(Path(f"/sys/module/{module}").exists() for module in ("kvm_intel", "kvm_amd"))
    return "kvm" if hardware and os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"


def unavailable_reason() -> str | None:
    """Why no guest can be booted here, or None."""
    if os.geteuid() != 0:
        return "a KVM guest sharing this machine's root needs root"
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (Debian package qemu-system-x86)"
    try:
        guest_kernel()
    except GuestUnavailable as missing:
        return str(missing)
    return None


def run_in_guest(command: str, *, cwd: Path = ROOT, timeout: float = 180.0, memory_mb: int = 2048,
                 cpus: int = 2) -> GuestRun:  # fmt: skip
    """Boot a guest, run ``command`` (a shell command line) in ``cwd`` as root, and return its status and
    output; the guest (qemu) is gone when this returns, whatever happened. The command finds the job directory
    (shared with this machine, gone afterwards) at /job; what it writes to /job/keep comes back in ``kept``."""
    kernel = guest_kernel()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="metalbus-guest-") as scratch:
        job = Path(scratch) / "job"
        job.mkdir()
        (job / "boot.sh").write_text(_BOOT.format(modules=kernel.modules, release=kernel.release, cwd=cwd,
                                                  command=command))  # fmt: skip
        initrd = Path(scratch) / "initrd"
        initrd.write_bytes(initramfs(kernel))
        console = Path(scratch) / "console"
        qemu = subprocess.Popen(
            [QEMU, *_ACCELERATION[accelerator()], "-m", str(memory_mb), "-smp", str(cpus),
             "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", f"file:{console}",
             "-kernel", str(kernel.image), "-initrd", str(initrd),
             "-append", "console=ttyS0 panic=-1 quiet loglevel=4",
             "-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap",
             "-virtfs", f"local,path={cwd},mount_tag=cwd,security_model=passthrough,readonly=on,multidevs=remap",
             "-virtfs", f"local,path={job},mount_tag=job,security_model=passthrough"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            qemu_said, _ = qemu.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu_said, _ = qemu.communicate()
            qemu_said += f"\n(the guest was stopped after {timeout:.0f} s)"
        finally:
            if qemu.poll() is None:
                qemu.kill()
                qemu.wait()
        status_file, output_file = job / "status", job / "output"
        status_text = status_file.read_text().strip() if status_file.exists() else ""
        return GuestRun(
            status=int(status_text) if status_text.isdigit() else None,
            output=output_file.read_text(errors="replace") if output_file.exists() else "",
            console=(console.read_text(errors="replace") if console.exists() else "") + qemu_said,
            seconds=time.monotonic() - started,
            kept=_read_tree(job / "keep"),
        )


def initramfs(kernel: GuestKernel) -> bytes:
    """A newc cpio archive: /init, the tools it runs (with their libraries) and the boot modules."""
    archive = _Cpio()
    for directory in ("/bin", "/modules", "/proc", "/dev", "/lower", "/writes", "/newroot"):
        archive.directory(directory)
    for tool in _TOOLS:
        found = shutil.which(tool)
        if found is None:
            raise GuestUnavailable(f"{tool} is not installed: the guest's initramfs needs it")
        for library in _libraries(found):
            archive.file_with_parents(library, Path(library).read_bytes(), 0o755)
        archive.file(f"/bin/{tool}", Path(found).read_bytes(), 0o755)
    archive.symlink("/bin/insmod", "kmod")
    order = _load_order(kernel, _BOOT_MODULES)
    for path in order:
        archive.file(f"/modules/{path.name}", path.read_bytes(), 0o644)
    archive.file("/init", _INIT.format(modules=" ".join(path.stem for path in order)).encode(), 0o755)
    return archive.finish()


def _load_order(kernel: GuestKernel, wanted: Iterable[str]) -> list[Path]:
    """The modules ``wanted`` and what they depend on (modules.dep), each after its dependencies."""
    depends: dict[str, list[str]] = {}
    for line in (kernel.modules / "modules.dep").read_text().splitlines():
        module, _, needs = line.partition(":")
        depends[module] = needs.split()
    by_name = {Path(module).name.removesuffix(".ko"): module for module in depends}
    order: list[str] = []

    def visit(module: str) -> None:
        if module not in order:
            for need in reversed(depends[module]):
                visit(need)
            order.append(module)

    for name in wanted:
        if name not in by_name:
            raise GuestUnavailable(f"the guest kernel has no module {name} (built in? then it needs no loading)")
        visit(by_name[name])
    return [kernel.modules / module for module in order]


def _libraries(binary: str) -> list[str]:
    """The shared libraries ``binary`` loads, as absolute paths (its dynamic loader included)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    return [match for match in re.findall(r"(/\S+) \(0x", out)]


class _Cpio:
    """The newc format the kernel unpacks an initramfs from."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._inode = 1
        self._seen: set[str] = set()

    def directory(self, path: str) -> None:
        self._entry(path, stat.S_IFDIR | 0o755, b"")

    def file(self, path: str, data: bytes, mode: int) -> None:
        self._entry(path, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def file_with_parents(self, path: str, data: bytes, mode: int) -> None:
        for parent in reversed(Path(path).parents):
            if str(parent) != "/":
                self.directory(str(parent))
        self.file(path, data, mode)

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, b"", trailer=True)
        return self._out.getvalue()

    def _entry(self, path: str, mode: int, data: bytes, *, trailer: bool = False) -> None:
        name = path if trailer else path.lstrip("/")
        if name in self._seen:
            return
        self._seen.add(name)
        encoded = name.encode() + b"\0"
        fields = (self._inode, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        self._inode += 1
        self._out.write(b"070701" + b"".join(b"%08X" % field for field in fields) + encoded)
        self._pad()
        self._out.write(data)
        self._pad()

    def _pad(self) -> None:
        self._out.write(b"\0" * (-self._out.tell() % 4))


def tail(text: str, lines: int = 80) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.splitlines()[-lines:])
