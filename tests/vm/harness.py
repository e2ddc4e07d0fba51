"""Run shell scripts inside a tiny qemu VM that has real v4l2loopback devices.

The VM boots Debian 12's kernel (TCG, no KVM needed) with an initramfs built by
``tests/vm/build.sh``.  Its /init (``tests/vm/init.sh``) loads virtio/9p,
mounts the host's ``/`` read-only over 9p with a tmpfs overlay on top, mounts
the requested host directories writable at the same paths, loads the chosen
v4l2loopback version (and vivid when asked), then chroots into the host root
and runs the given script with ``/bin/bash``.  So the script sees the host's
files (venvs, ffmpeg, the repo) at their usual paths; only writes into the
``shared_rw`` directories reach the host.

Example::

    from harness import run_in_vm, vm_available
    reason = vm_available()
    if reason: pytest.skip(reason)
    res = run_in_vm("v4l2-ctl -d /dev/video10 --info", shared_rw=[tmp_path])
    assert res.returncode == 0, res.report()
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
INIT_SCRIPT = HERE / "init.sh"


#: Default cache dir of build.sh (override with MATTECAM_VM_CACHE).
def cache_dir() -> Path:
    env = os.environ.get("MATTECAM_VM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mattecam-vm"


#: The two v4l2loopback versions the VM is built with (bookworm, trixie).
LOOPBACK_VERSIONS = ("0.12.7", "0.15.0")
DEFAULT_LOOPBACK = "0.12.7"
#: Arguments for ``modprobe v4l2loopback`` (shell-like string, parsed with shlex).
DEFAULT_MODPROBE_ARGS = 'devices=2 video_nr=10,11 exclusive_caps=1,1 card_label="mattecam"'
#: vivid: one instance with only a video capture node.
DEFAULT_VIVID_ARGS = "n_devs=1 node_types=0x1"

#: Exit status reported when the VM timed out / died before the script finished.
RC_TIMEOUT = 124
RC_NO_STATUS = 255
#: Exit status written by the guest init when its own setup failed.
RC_INIT_FAILED = 254

QEMU = "qemu-system-x86_64"
#: Guest CPU model.  "max" (all TCG-emulated features) is needed for the venv's
#: wheels: numpy 2.x dies with SIGILL on the default qemu64 (no SSE4.2/POPCNT).
DEFAULT_CPU = os.environ.get("MATTECAM_VM_CPU", "max")
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class VMError(RuntimeError):
    pass


@dataclass
class VMResult:
    returncode: int
    """Exit status of the script; RC_TIMEOUT (124) on timeout, RC_NO_STATUS (255)
    when the VM ended without reporting one, RC_INIT_FAILED (254) when the guest
    setup (mounts, modprobe) failed."""
    output: str
    """stdout and stderr of the script, interleaved."""
    console: str = ""
    """Serial console: kernel messages (quiet) and the init's progress markers."""
    init_log: str = ""
    """The guest init's log: mounts and modprobe commands with their output."""
    dmesg: str = ""
    """Guest kernel log, taken after the script ended."""
    duration: float = 0.0
    """Wall-clock seconds from starting qemu to its exit."""
    timed_out: bool = False
    command: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def report(self) -> str:
        """Everything useful for an assertion message."""
        parts = [
            f"returncode={self.returncode} timed_out={self.timed_out}"
            f" duration={self.duration:.1f}s",
            "--- output ---",
            self.output.rstrip(),
        ]
        if self.returncode != 0:
            parts += [
                "--- init log ---",
                self.init_log.rstrip(),
                "--- console (tail) ---",
                "\n".join(self.console.splitlines()[-40:]),
                "--- dmesg (tail) ---",
                "\n".join(self.dmesg.splitlines()[-40:]),
            ]
        return "\n".join(parts)

    def check(self) -> VMResult:
        if self.returncode != 0:
            raise VMError(self.report())
        return self


def _manifest() -> dict:
    data: dict = json.loads((cache_dir() / "manifest.json").read_text())
    return data


def _init_sha() -> str:
    return hashlib.sha256(INIT_SCRIPT.read_bytes()).hexdigest()[:16]


def built_loopback_versions() -> list[str]:
    """v4l2loopback versions present in the build (empty if not built)."""
    try:
        return sorted(_manifest()["initramfs"])
    except (OSError, ValueError, KeyError):
        return []


def loopback_module(version: str = DEFAULT_LOOPBACK) -> Path:
    """Host path of the built v4l2loopback.ko for ``version`` (e.g. for modinfo)."""
    m = _manifest()
    return Path(m["modules"][_resolve_loopback(version, m)])


def _resolve_loopback(version: str, manifest: dict) -> str:
    images = manifest["initramfs"]
    if version in images:
        return version
    # accept "0.15" for "0.15.0" (or a newer Debian upload of the same series)
    cands = [v for v in images if v == version or v.startswith(version.rstrip(".") + ".")]
    if not cands:
        major_minor = ".".join(version.split(".")[:2]) + "."
        cands = [v for v in images if v.startswith(major_minor)]
    if len(cands) == 1:
        return cands[0]
    raise VMError(f"v4l2loopback {version!r} not built; have {sorted(images)}")


def vm_available(loopback: str | None = None) -> str | None:  # noqa: PLR0911
    """None when the VM can run, else a human-readable reason (for pytest.skip)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"VM tests need an x86_64 Linux host (have {sys.platform}/{platform.machine()})"
    if os.environ.get("MATTECAM_VM", "1") == "0":
        return "VM tests disabled (MATTECAM_VM=0)"
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found; run tests/vm/build.sh (installs qemu-system-x86)"
    mpath = cache_dir() / "manifest.json"
    try:
        m = _manifest()
    except (OSError, ValueError):
        return f"VM not built ({mpath} missing); run tests/vm/build.sh"
    for key in ("kernel",):
        if not Path(m.get(key, "")).is_file():
            return f"VM build incomplete ({key} missing); run tests/vm/build.sh"
    if m.get("init_sha") != _init_sha():
        return "VM initramfs is outdated (tests/vm/init.sh changed); run tests/vm/build.sh"
    versions = [loopback] if loopback else list(m.get("initramfs", {}))
    if not versions:
        return "VM build has no initramfs; run tests/vm/build.sh"
    for v in versions:
        try:
            rv = _resolve_loopback(v, m)
        except VMError as e:
            return str(e)
        if not Path(m["initramfs"][rv]).is_file():
            return f"initramfs for v4l2loopback {rv} missing; run tests/vm/build.sh"
    return None


def build(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run tests/vm/build.sh (idempotent, fast when already built)."""
    return subprocess.run(["bash", str(BUILD_SCRIPT), *args], check=check)


def guest_env(extra: Mapping[str, str] | None = None) -> dict:
    """Environment the script starts with in the guest (env -i, then this)."""
    env = {
        "PATH": GUEST_PATH,
        "HOME": "/root",
        "USER": "root",
        "LOGNAME": "root",
        "SHELL": "/bin/bash",
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "PYTHONUNBUFFERED": "1",
    }
    # Inside a venv: put its bin first, so `python` is the venv's interpreter
    # (a symlink to the real one, not a pyenv shim).
    if sys.prefix != getattr(sys, "base_prefix", sys.prefix):
        env["VIRTUAL_ENV"] = sys.prefix
        env["PATH"] = f"{sys.prefix}/bin:{env['PATH']}"
    if extra:
        env.update(extra)
    return env


#: Where the guest mounts fresh, empty file systems over the host root it sees.
GUEST_EMPTY_DIRS = (Path("/tmp"), Path("/run"), Path("/dev/shm"))


def _hidden_in_guest(path: Path) -> bool:
    return any(path == d or d in path.parents for d in GUEST_EMPTY_DIRS)


def _with_hidden_paths(shares: list[Path], needed: Iterable[Path]) -> list[Path]:
    """``shares`` plus those of ``needed`` (the script's cwd, the venv, the repo) that the
    guest's empty /tmp, /run or /dev/shm would hide, e.g. a checkout under /tmp; ordered
    so that a parent is mounted before a share inside it."""
    out = list(shares)
    for want in needed:
        path = want.resolve()
        if not _hidden_in_guest(path):
            continue
        if any(path == s or s in path.parents for s in out):
            continue  # already visible through a share
        out = [s for s in out if path not in s.parents or s in shares]
        out.append(path)
    return sorted(dict.fromkeys(out), key=lambda q: len(q.parts))


def guest_python() -> str:
    """Path of a Python that works in the guest: this interpreter (the venv's)."""
    return sys.executable


def _sh_words(args: str | Sequence[str]) -> str:
    words = shlex.split(args) if isinstance(args, str) else list(args)
    return " ".join(shlex.quote(w) for w in words)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def _qopt(value: str | Path) -> str:
    """Escape a value for a qemu -opt list (commas are doubled)."""
    return str(value).replace(",", ",,")


def qemu_command(
    kernel: str,
    initrd: str,
    ctl: Path,
    shares: Sequence[Path],
    *,
    memory_mb: int,
    cpus: int,
    console_log: Path,
    cpu: str = DEFAULT_CPU,
) -> list[str]:
    cmd = [
        QEMU,
        "-accel",
        "tcg",
        "-M",
        "pc",
        "-cpu",
        cpu,
        "-m",
        str(memory_mb),
        "-smp",
        str(cpus),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-kernel",
        kernel,
        "-initrd",
        initrd,
        "-append",
        "console=ttyS0 quiet panic=-1 8250.nr_uarts=1",
        "-chardev",
        f"file,id=con,path={_qopt(console_log)}",
        "-serial",
        "chardev:con",
        "-device",
        "virtio-rng-pci",
    ]
    fsdevs = [("hostroot", Path("/"), True), ("ctl", ctl, False)]
    fsdevs += [(f"rw{i}", p, False) for i, p in enumerate(shares)]
    for i, (tag, path, ro) in enumerate(fsdevs):
        opts = f"local,id=fs{i},path={_qopt(path)},security_model=none,multidevs=remap"
        if ro:
            opts += ",readonly=on"
        cmd += ["-fsdev", opts, "-device", f"virtio-9p-pci,fsdev=fs{i},mount_tag={tag}"]
    return cmd


def run_in_vm(
    script: str,
    *,
    loopback: str | None = DEFAULT_LOOPBACK,
    modprobe_args: str | Sequence[str] | None = DEFAULT_MODPROBE_ARGS,
    vivid: bool | str = False,
    kmods: Iterable[str | Sequence[str]] = (),
    shared_rw: Iterable[str | os.PathLike] = (),
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    memory_mb: int = 1024,
    cpus: int = 1,
    cpu: str = DEFAULT_CPU,
    keep: bool | None = None,
) -> VMResult:
    """Boot the VM, run ``script`` with /bin/bash in the chroot of the host root, power off.

    loopback:      v4l2loopback version whose initramfs is booted ("0.12.7", "0.15.0";
                   "0.15" also works).  None: boot the default image, load nothing.
    modprobe_args: arguments for ``modprobe v4l2loopback`` (shell-like string or list);
                   None: do not load it (the script may ``modprobe v4l2loopback ...``
                   itself, kmod's modprobe in the chroot sees the VM's modules).
    vivid:         True: load vivid with DEFAULT_VIVID_ARGS; a string: with those args.
                   Loaded after v4l2loopback, so it takes the lowest free /dev/videoN.
    kmods:         further ``"module arg=val ..."`` to load (must be in the initramfs).
    shared_rw:     host directories mounted writable at the same path (created if missing).
    cwd:           working directory of the script (default: os.getcwd()); must exist
                   in the guest (the host root is visible, /tmp is an empty tmpfs
                   except for shared dirs).
    env:           extra environment on top of guest_env().
    timeout:       seconds for boot + script; qemu is killed after it (RC_TIMEOUT).
    memory_mb:     guest RAM; the overlay (all writes outside shared_rw) lives in it.
    cpus:          vCPUs.  1 is the default: with 2 vCPUs on a 2-core host, run
                   times vary a lot (lock-holder preemption under MTTCG).
    cpu:           qemu CPU model (default "max", or env MATTECAM_VM_CPU).
    keep:          keep the control dir (script, output, console log) for debugging;
                   default: env MATTECAM_VM_KEEP=1.  Its path is printed to stderr.
    """
    reason = vm_available(loopback)
    if reason:
        raise VMError(reason)
    m = _manifest()
    version = _resolve_loopback(loopback or DEFAULT_LOOPBACK, m)
    initrd = m["initramfs"][version]
    kernel = m["kernel"]
    if keep is None:
        keep = os.environ.get("MATTECAM_VM_KEEP") == "1"

    shares = []
    for d in shared_rw:
        path = Path(d).absolute()
        path.mkdir(parents=True, exist_ok=True)
        shares.append(path.resolve())
    cwd = Path(cwd).absolute() if cwd is not None else Path.cwd()
    shares = _with_hidden_paths(shares, [cwd, Path(sys.prefix), HERE.parents[1]])

    ctl = Path(tempfile.mkdtemp(prefix="mattecam-vm-")).resolve()
    console_log = ctl / "console.log"
    res: VMResult | None = None
    try:
        (ctl / "script.sh").write_text(script)
        cfg = ["# generated by tests/vm/harness.py", f"MV_CTL_PATH={shlex.quote(str(ctl))}"]
        for i, p in enumerate(shares):
            cfg.append(f"share rw{i} {shlex.quote(str(p))}")
        if loopback is not None and modprobe_args is not None:
            cfg.append(f"kmod v4l2loopback {_sh_words(modprobe_args)}")
        if vivid:
            vargs = DEFAULT_VIVID_ARGS if vivid is True else vivid
            cfg.append(f"kmod vivid {_sh_words(vargs)}")
        for km in kmods:
            cfg.append(f"kmod {_sh_words(km)}")
        (ctl / "config.sh").write_text("\n".join(cfg) + "\n")
        genv = guest_env(env)
        run_sh = [
            "# generated by tests/vm/harness.py; run by the guest init in the chroot",
            f"cd {shlex.quote(str(cwd))} || "
            f"{{ echo {shlex.quote(f'vm: cannot cd to {cwd} in the guest')} >&2; exit 125; }}",
            "exec env -i "
            + " ".join(shlex.quote(f"{k}={v}") for k, v in genv.items())
            + f" /bin/bash {shlex.quote(str(ctl / 'script.sh'))}",
        ]
        (ctl / "run.sh").write_text("\n".join(run_sh) + "\n")

        cmd = qemu_command(
            kernel,
            initrd,
            ctl,
            shares,
            memory_mb=memory_mb,
            cpus=cpus,
            console_log=console_log,
            cpu=cpu,
        )
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = False
        try:
            qemu_out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                qemu_out, _ = proc.communicate()
        duration = time.monotonic() - t0

        rc_text = _read(ctl / "rc").strip()
        if timed_out:
            rc = RC_TIMEOUT
        elif rc_text.lstrip("-").isdigit():
            rc = int(rc_text)
        else:
            rc = RC_NO_STATUS
        console = _read(console_log)
        qemu_text = qemu_out.decode("utf-8", "replace") if qemu_out else ""
        if qemu_text.strip():
            console += "\n--- qemu ---\n" + qemu_text
        output = _read(ctl / "output")
        if timed_out:
            output += f"\n[vm: timed out after {timeout:.0f} s, qemu killed]\n"
        res = VMResult(
            returncode=rc,
            output=output,
            console=console,
            init_log=_read(ctl / "init.log"),
            dmesg=_read(ctl / "dmesg"),
            duration=duration,
            timed_out=timed_out,
            command=cmd,
        )
        return res
    finally:
        if keep or (res is None):
            print(f"[vm] control dir kept: {ctl}", file=sys.stderr)
        else:
            shutil.rmtree(ctl, ignore_errors=True)


if __name__ == "__main__":  # quick manual check: python tests/vm/harness.py [version] [script]
    why = vm_available()
    if why:
        sys.exit(f"VM not available: {why}")
    ver = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_LOOPBACK
    scr = sys.argv[2] if len(sys.argv) > 2 else "v4l2-ctl --list-devices; uname -r"
    r = run_in_vm(scr, loopback=ver, vivid=True)
    print(r.report())
    sys.exit(r.returncode)
