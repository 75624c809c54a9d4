"""The sandbox that user code (handler scripts, artifacts at test-load) runs in.

What a sandboxed process sees and may do, and the mechanism for each:

* files: read-only ``/usr``, the Python installation and virtual
  environment, and the seedserve package; a private tmpfs at ``/tmp`` (its
  size bounded) is the only writable place. Never the checkout, the data
  directory or a home. (bubblewrap's own root and bind mounts)
* environment: cleared, then a short allow-list (:data:`ALLOWED_ENV`).
* network: none; a network namespace of its own with only a down loopback
  (bubblewrap ``--unshare-net``).
* user: ``nobody`` (65534), no capabilities, ``no_new_privs``. (setpriv)
* other processes: invisible and unreachable; a pid namespace of its own,
  and another uid. (``--unshare-pid``)
* memory and processes: a cgroup per sandbox (``memory.max`` /
  ``memory.limit_in_bytes``, ``pids.max``); CPU share: the cgroup's CPU
  quota; total CPU time (at test-load) and open files: rlimits.
* devices: a minimal ``/dev``, plus only the GPU devices it is assigned.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from seedserve.errors import SeedserveError
from seedserve.sandbox._cgroup import Cgroup, CgroupLimits, cgroup_support
from seedserve.sandbox._command import SANDBOX_UID, Mounts, launch_command

__all__ = ["ALLOWED_ENV", "INSIDE_SOURCE", "INSIDE_VENV", "Launch", "SandboxLimits", "SandboxUnavailable",
           "check_available", "gpu_device_files",
           "launch", "mechanisms", "sandbox_python"]

#: Variables a sandboxed process may inherit; everything else is dropped.
#: OPENBLAS_* work around wrong results of older OpenBLAS builds on some CPUs.
ALLOWED_ENV = ("LANG", "LC_ALL", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "CUDA_VISIBLE_DEVICES")

_TOOLS = {"bwrap": "bubblewrap", "setpriv": "util-linux", "unshare": "util-linux"}


class SandboxUnavailable(SeedserveError):
    """The machine lacks what the sandbox needs; nothing user-supplied may run."""

    code = "sandbox_unavailable"


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandboxed process may use."""

    memory_bytes: int = 4 * 2**30
    pids: int = 64
    open_files: int = 256
    tmp_bytes: int = 256 * 2**20
    #: Total CPU seconds (test-load); None while serving, where ``cpus`` bounds the rate.
    cpu_seconds: int | None = None
    cpus: float | None = None
    #: Torch threads of the sandboxed process; None: as many as its caller's torch uses.
    threads: int | None = None
    #: GPU device files the process may open (``/dev/nvidia0``...), none on a CPU worker.
    gpu_devices: tuple[str, ...] = ()


def gpu_device_files(visible: str | None, exists: Callable[[str], bool] = os.path.exists) -> tuple[str, ...]:
    """The device files a sandbox needs for the GPUs in ``visible`` (a
    ``CUDA_VISIBLE_DEVICES`` of indices, as Ray sets it): each GPU's own
    ``/dev/nvidiaN`` and the driver's shared control files; none for none."""
    indices = [item.strip() for item in (visible or "").split(",") if item.strip().isdigit()]
    if not indices:
        return ()
    shared = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
    return tuple(path for path in (*(f"/dev/nvidia{i}" for i in indices), *shared) if exists(path))


def check_available() -> None:
    """Raise :class:`SandboxUnavailable`, saying what to install, unless every
    tool the sandbox needs is here and works."""
    missing = sorted({package for tool, package in _TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise SandboxUnavailable(
            f"seedserve runs user code in a sandbox and needs {', '.join(missing)}: "
            f"install it with 'apt-get install {' '.join(missing)}' (install.sh does)"
        )


def mechanisms() -> dict[str, str]:
    """How each limit is enforced on this machine, for logs and ``seedserve status``."""
    cgroup = cgroup_support()
    bounded = f"cgroup {cgroup}" if cgroup else "rlimit (no writable cgroup here)"
    return {"files": "bubblewrap mount namespace", "network": "network namespace", "user": f"uid {SANDBOX_UID}",
            "processes": f"pid namespace; count: {bounded}", "memory": bounded, "cpu time": "rlimit",
            "open files": "rlimit"}


def _reachable_by_others(path: Path) -> bool:
    """Whether a user owning nothing could open ``path`` (every parent searchable)."""
    for parent in reversed(path.parents):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IROTH)


#: Where the virtual environment and the seedserve package appear inside:
#: fixed paths outside ``/tmp``, whatever their host paths (a checkout under
#: the host's /tmp would otherwise appear inside the sandbox's writable tmpfs).
INSIDE_VENV = "/opt/seedserve/venv"
INSIDE_SOURCE = "/opt/seedserve/src"


def sandbox_python() -> str:
    """The interpreter a sandboxed process runs: this one's, seen from inside."""
    if sys.prefix == sys.base_prefix:
        return sys.executable
    return f"{INSIDE_VENV}/bin/{Path(sys.executable).name}"


def _python_mounts() -> dict[str, str]:
    """Host path -> path inside: the Python installation at its own path (the
    virtual environment's interpreter links there), the virtual environment
    and the seedserve package at :data:`INSIDE_VENV` and :data:`INSIDE_SOURCE`."""
    import seedserve

    mounts = {str(Path(sys.base_prefix).resolve()): str(Path(sys.base_prefix).resolve())}
    if sys.prefix != sys.base_prefix:
        mounts[str(Path(sys.prefix).resolve())] = INSIDE_VENV
    mounts[str(Path(seedserve.__file__).resolve().parent)] = f"{INSIDE_SOURCE}/seedserve"
    return mounts


@dataclass
class Launch:
    """A prepared sandbox: the argv to start (the launcher clears the
    environment itself) and its cgroup; :meth:`cleanup` removes what it made."""

    argv: list[str]
    cgroup: Cgroup | None
    stage_dir: str | None

    def hit_memory_limit(self) -> bool:
        return self.cgroup is not None and self.cgroup.hit_memory_limit()

    def cleanup(self) -> None:
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.stage_dir is not None:
            shutil.rmtree(self.stage_dir, ignore_errors=True)


def _threads(limits: SandboxLimits) -> int:
    if limits.threads is not None:
        return limits.threads
    torch = sys.modules.get("torch")  # a replica's torch (the sandbox itself never imports it here)
    return int(torch.get_num_threads()) if torch is not None else 1


def _env(threads: int, extra: Mapping[str, str]) -> dict[str, str]:
    env = {name: os.environ[name] for name in ALLOWED_ENV if name in os.environ}
    env |= {
        "PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1", "PYTHONPATH": INSIDE_SOURCE,
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
    }
    return env | dict(extra)


def launch(python_args: Sequence[str], limits: SandboxLimits, extra_env: Mapping[str, str] | None = None) -> Launch:
    """Prepare this interpreter with ``python_args`` (``["-m", module, ...]``)
    to run in a new sandbox under ``limits``."""
    program = [sandbox_python(), *python_args]
    check_available()
    as_root = os.geteuid() == 0
    read_only = _python_mounts()
    staged = [host for host in read_only if as_root and not _reachable_by_others(Path(host))]
    stage_dir = None
    if staged:
        stage_dir = tempfile.mkdtemp(prefix="seedserve-stage-")
        os.chmod(stage_dir, 0o755)
        for index in range(len(staged)):
            os.mkdir(Path(stage_dir) / str(index), 0o755)
    rlimits = {"-n": limits.open_files}
    if limits.cpu_seconds is not None:
        rlimits["-t"] = limits.cpu_seconds
    cgroup = None
    if cgroup_support() is not None:
        cgroup = Cgroup(CgroupLimits(limits.memory_bytes, limits.pids, limits.cpus))
    else:  # no cgroup to join: bound the address space instead (not for GPUs, whose drivers need more)
        rlimits["-v"] = limits.memory_bytes // 1024
        rlimits["-u"] = limits.pids
    mounts = Mounts(read_only, staged, stage_dir, limits.gpu_devices)
    argv = launch_command(
        program, mounts, _env(_threads(limits), extra_env or {}), cgroup_procs=cgroup.procs_files if cgroup else [],
        rlimits=rlimits, tmp_bytes=limits.tmp_bytes, as_root=as_root,
    )
    return Launch(argv, cgroup, stage_dir)
