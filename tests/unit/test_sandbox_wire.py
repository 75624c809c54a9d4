"""The sandbox's pure parts: the launch command and the frames read back from
hostile code. (Real sandboxes run in tests/sandbox.)"""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest

from seedserve.sandbox._command import SANDBOX_UID, Mounts, launch_command
from seedserve.sandbox._frames import FrameError, arrays_from, pack_arrays, read_frame, write_frame


def _command(as_root: bool, staged: tuple[str, ...] = ()) -> list[str]:
    mounts = Mounts({"/opt/py": "/opt/py", "/srv/pkg": "/srv/pkg"}, staged, "/run/stage" if staged else None)
    return launch_command(["/opt/py/bin/python", "-m", "x"], mounts, {"PATH": "/usr/bin"},
                          cgroup_procs=["/sys/fs/cgroup/memory/s/a/cgroup.procs"], rlimits={"-n": 256, "-t": 60},
                          tmp_bytes=2**20, as_root=as_root)


def test_a_root_launcher_joins_its_cgroup_then_drops_to_nobody_before_bwrap() -> None:
    script = _command(as_root=True)[2]
    assert script.index("echo $$ > /sys/fs/cgroup/memory/s/a/cgroup.procs") < script.index("ulimit -n 256")
    assert script.index("ulimit -t 60") < script.index("setpriv") < script.index("bwrap")
    for flag in (f"--reuid={SANDBOX_UID}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                 "--no-new-privs"):
        assert flag in script
    for flag in ("--unshare-all", "--clearenv", "--die-with-parent", "--new-session", "--remount-ro /"):
        assert flag in script
    assert "unshare --mount" not in script  # nothing to stage


def test_paths_the_sandbox_user_cannot_reach_are_staged_in_a_private_mount_namespace() -> None:
    script = _command(as_root=True, staged=("/opt/py",))[2]
    assert "unshare --mount --propagation private" in script
    assert "mount --bind -o ro /opt/py /run/stage/0" in script
    assert "--ro-bind /run/stage/0 /opt/py" in script and "--ro-bind /srv/pkg /srv/pkg" in script


def test_an_unprivileged_launcher_runs_bwrap_directly() -> None:
    script = _command(as_root=False)[2]
    assert "setpriv" not in script and "exec bwrap" in script


def test_arrays_and_named_parts_and_strings_round_trip() -> None:
    values = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "text": np.array(["a", "é"], dtype=object),
              "g": {"x": np.ones((2, 2), np.float64), "edge_index": np.zeros((2, 1), np.int64)}}
    described, payload = pack_arrays(values)
    stream = io.BytesIO()
    write_frame(stream, {"inputs": described}, payload)
    stream.seek(0)
    header, data = read_frame(stream, 2**20)
    back = arrays_from(header["inputs"], data)
    assert np.array_equal(back["x"], values["x"]) and back["text"].tolist() == ["a", "é"]
    assert set(back["g"]) == {"x", "edge_index"} and back["g"]["edge_index"].dtype == np.int64


@pytest.mark.parametrize("entry, why", [
    ({"name": "y", "dtype": "object", "shape": [1], "nbytes": 8}, "dtype 'object'"),
    ({"name": "y", "dtype": "float32", "shape": [4], "nbytes": 8}, "do not match"),
    ({"name": "y", "dtype": "float32", "shape": [-1], "nbytes": 4}, "no valid shape"),
    ({"name": "y", "dtype": "float32", "shape": [100], "nbytes": 400}, "runs past the payload"),
    ({"name": "y", "strings": [1, 2], "shape": [2]}, "list of strings"),
    ({"dtype": "float32", "shape": [1], "nbytes": 4}, "with a name"),
])
def test_answers_that_do_not_describe_their_bytes_are_refused(entry: dict[str, object], why: str) -> None:
    with pytest.raises(FrameError, match=why):
        arrays_from([entry], b"\0" * 8)


def test_leftover_bytes_and_oversized_frames_are_refused_before_reading_them() -> None:
    with pytest.raises(FrameError, match="belong to no array"):
        arrays_from([{"name": "y", "dtype": "float32", "shape": [1], "nbytes": 4}], b"\0" * 8)
    huge = io.BytesIO(struct.pack("<QQ", 2, 2**40) + b"{}")
    with pytest.raises(FrameError, match="exceeds the limit"):
        read_frame(huge, 2**20)
    cut = io.BytesIO(struct.pack("<QQ", 10, 0) + json.dumps({}).encode())
    with pytest.raises(FrameError, match="stream ended"):
        read_frame(cut, 2**20)


def test_a_gpu_sandbox_gets_only_its_assigned_gpus_device_files() -> None:
    from seedserve.sandbox import gpu_device_files

    present = {"/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"}
    assert gpu_device_files("1", present.__contains__) == ("/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm")
    assert gpu_device_files(None, present.__contains__) == gpu_device_files("", present.__contains__) == ()
    assert gpu_device_files("GPU-3f1c", present.__contains__) == ()  # a UUID names no device file
    assert "--dev-bind /dev/nvidia1 /dev/nvidia1" in " ".join(
        launch_command(["python"], Mounts({}, devices=("/dev/nvidia1",)), {}, cgroup_procs=[], rlimits={},
                       tmp_bytes=1, as_root=False))


def test_the_process_limit_is_set_by_the_sh_that_runs_it() -> None:
    """Where no cgroup can be made the launcher lowers the process limit with
    ``ulimit``: ``-u`` in bash, ``-p`` in dash (Debian's sh refuses ``-u``)."""
    import subprocess

    from seedserve.sandbox._command import _ulimit

    for shell in ("sh", "bash"):
        done = subprocess.run([shell, "-c", f"set -e; {_ulimit('-u', 50)}; echo set"], capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.strip() == "set", (shell, done.stderr)
