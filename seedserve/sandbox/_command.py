"""The command line that starts a process in the sandbox (pure: no I/O).

The chain, each step exec'ing the next:

1. ``sh`` (as the server's user) moves itself into the sandbox's cgroups
   and lowers its rlimits; everything it starts inherits both.
2. ``unshare --mount`` (root only) gives the launcher a private mount
   namespace, where paths the sandbox user cannot reach (an interpreter
   under ``/root``) are bind-mounted, read-only, onto a staging directory
   it can. Nothing of this is visible outside.
3. ``setpriv`` (root only) becomes the unprivileged sandbox user, with no
   capabilities, no supplementary groups and ``no_new_privs``.
4. ``bwrap``, run unprivileged, makes new user, pid, network, IPC, UTS and
   cgroup namespaces and a root of its own: read-only system and Python
   files, the seedserve package, a size-limited tmpfs as the only
   writable place, a minimal ``/dev`` (plus the assigned GPU devices, if
   any) and a cleared environment.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

__all__ = ["Mounts", "launch_command"]

#: The sandbox's own user: ``nobody``, which owns no file of the server's.
SANDBOX_UID = 65534

#: System directories the sandbox sees read-only, when they exist.
SYSTEM_DIRS = ("/usr", "/etc/alternatives", "/etc/ld.so.cache", "/etc/ssl/certs")


@dataclass(frozen=True)
class Mounts:
    """What the sandbox sees besides ``/usr`` and its tmpfs.

    ``read_only`` maps a host path to where it appears inside. ``staged``
    lists those host paths the sandbox user could not reach on the host
    (a parent directory without the others' ``x`` bit): they are first
    bind-mounted onto ``stage_dir`` by the root launcher.
    """

    read_only: Mapping[str, str]
    staged: Sequence[str] = ()
    stage_dir: str | None = None
    devices: Sequence[str] = ()
    system_dirs: Sequence[str] = field(default=SYSTEM_DIRS)


def _staged_path(mounts: Mounts, host: str) -> str:
    index = list(mounts.staged).index(host)
    return str(PurePosixPath(mounts.stage_dir or "/nonexistent") / str(index))


def bwrap_args(mounts: Mounts, env: Mapping[str, str], tmp_bytes: int, cwd: str = "/tmp") -> list[str]:
    """``bwrap``'s arguments (without the program to run)."""
    args = [
        "bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(tmp_bytes), "--tmpfs", "/tmp",
    ]
    for path in mounts.system_dirs:
        args += ["--ro-bind-try", path, path]
    for host, inside in mounts.read_only.items():
        source = _staged_path(mounts, host) if host in mounts.staged else host
        args += ["--ro-bind", source, inside]
    for device in mounts.devices:
        args += ["--dev-bind", device, device]
    for name, value in sorted(env.items()):
        args += ["--setenv", name, value]
    # Last: the root bwrap built (and the directories it made for the mounts) becomes read-only too.
    return [*args, "--remount-ro", "/", "--chdir", cwd]


def launch_command(
    program: Sequence[str],
    mounts: Mounts,
    env: Mapping[str, str],
    *,
    cgroup_procs: Sequence[str],
    rlimits: Mapping[str, int],
    tmp_bytes: int,
    as_root: bool,
) -> list[str]:
    """The argv that runs ``program`` in the sandbox.

    ``cgroup_procs`` are the ``cgroup.procs`` files the launcher joins;
    ``rlimits`` maps ``ulimit`` flags (``-n`` open files, ``-t`` CPU
    seconds, ``-v`` KiB of address space) to their values.
    """
    inner = [*bwrap_args(mounts, env, tmp_bytes), "--", *program]
    if as_root:
        inner = ["setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", *inner]
        binds = [f"mount --bind -o ro {shlex.quote(host)} {shlex.quote(_staged_path(mounts, host))}"
                 for host in mounts.staged]
        if binds:
            script = " && ".join([*binds, "exec " + shlex.join(inner)])
            inner = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    steps = ["set -e"]
    steps += [f"echo $$ > {shlex.quote(path)}" for path in cgroup_procs]
    steps += [_ulimit(flag, value) for flag, value in sorted(rlimits.items())]
    steps.append("exec " + shlex.join(inner))
    return ["sh", "-c", "; ".join(steps)]


def _ulimit(flag: str, value: int) -> str:
    """``ulimit flag value`` in whichever ``sh`` runs it: the process limit is
    ``-u`` in bash and ``-p`` in dash (Debian's ``sh``, which refuses ``-u``)."""
    if flag == "-u":
        return f"{{ ulimit -u {value} 2>/dev/null || ulimit -p {value}; }}"
    return f"ulimit {flag} {value}"
