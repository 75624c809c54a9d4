# A hostile handler script (tests/sandbox, tests/integration/test_hostile_tenant.py).
#
# The test prepends `TARGETS = {...}` (paths, ports, pids to attack) and
# registers it as a handler package; `load()` (when TARGETS["in"] == "load")
# or `predict()` on an input whose first value is 42 runs every attack and
# raises the report, so the report travels back in the error message.
# Run as `python hostile_handler.py TARGETS.json` it attacks from outside the
# sandbox: the positive control that shows the sandbox is what stops each one.
import json
import os
import socket
import sys
import time

try:
    TARGETS  # noqa: B018 - set by the test before this line
except NameError:
    TARGETS = {}

SECRET_MARKERS = ("SEEDSERVE_", "mongodb://", "RAY_AUTH", "st_")


def attack_read_token():
    with open(TARGETS["token_file"]) as f:
        return True, f"read {len(f.read())} chars"


def attack_read_data_dir():
    read = 0
    for root, _, files in os.walk(TARGETS["data_dir"]):
        for name in files:
            try:
                with open(os.path.join(root, name), "rb") as f:
                    f.read(64)
                read += 1
            except OSError:
                pass
    if read:
        return True, f"read {read} files"
    return False, f"nothing readable under {TARGETS['data_dir']} (exists: {os.path.exists(TARGETS['data_dir'])})"


def attack_read_checkout():
    with open(os.path.join(TARGETS["checkout"], "pyproject.toml")) as f:
        return True, f"read {len(f.read())} chars"


def attack_proc_environ():
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().decode(errors="replace")
        except OSError:
            continue
        if any(marker in env for marker in SECRET_MARKERS[:3]):
            found.append(pid)
    if found:
        return True, f"secrets in the environment of pids {found[:5]}"
    return False, f"no secret in any of {sum(p.isdigit() for p in os.listdir('/proc'))} visible processes"


def attack_own_environment():
    leaked = sorted(k for k, v in os.environ.items() if any(m in k or m in v for m in SECRET_MARKERS[:3]))
    if leaked:
        return True, f"variables {leaked}"
    return False, f"own environment holds only {sorted(os.environ)}"


def _connect(host, port):
    with socket.create_connection((host, port), timeout=2):
        return True, f"connected to {host}:{port}"


def attack_connect_database():
    return _connect("127.0.0.1", TARGETS["db_port"])


def attack_connect_master():
    return _connect("127.0.0.1", TARGETS["master_port"])


def attack_connect_manager():
    return _connect("127.0.0.1", TARGETS["manager_port"])


def attack_connect_ray():
    return _connect("127.0.0.1", TARGETS["ray_port"])


def attack_connect_outside():
    return _connect(TARGETS["outside_host"], TARGETS["outside_port"])


def attack_fork_many():
    children = []
    try:
        for _ in range(TARGETS.get("forks", 2000)):
            pid = os.fork()
            if pid == 0:
                time.sleep(3)
                os._exit(0)
            children.append(pid)
    except OSError as exc:
        return False, f"fork failed after {len(children)} processes: {exc}"
    finally:
        for pid in children:
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
    return True, f"forked {len(children)} processes"


def attack_write_outside():
    written = []
    for directory in (TARGETS["checkout"], TARGETS["data_dir"], "/usr", TARGETS["home"]):
        path = os.path.join(directory, f"pwned-{TARGETS['tag']}")
        try:
            with open(path, "w") as f:
                f.write("x")
            written.append(path)
        except OSError:
            pass
    if written:
        return True, f"wrote {written}"
    return False, "no directory outside /tmp is writable"


def attack_signal_parent():
    # kill(pid, 0) delivers nothing but checks permission: a 0 return means
    # SIGKILL would have reached the process that runs this script.
    os.kill(TARGETS["parent_pid"], 0)
    return True, f"may signal pid {TARGETS['parent_pid']}"


def attack_touch_memory():
    blocks, step, total = [], 256 * 2**20, 0
    ceiling = TARGETS.get("memory_ceiling", 64 * 2**30)
    while total < ceiling:
        block = bytearray(step)
        block[::4096] = b"x" * len(block[::4096])
        blocks.append(block)
        total += step
        step = min(step * 2, ceiling - total) or step
    return True, f"touched {total / 2**30:.1f} GiB"


ATTACKS = {name[len("attack_"):]: fn for name, fn in list(globals().items()) if name.startswith("attack_")}


def run_attacks(names=None):
    report = {}
    for name in names or [n for n in ATTACKS if n != "touch_memory"]:
        try:
            ok, detail = ATTACKS[name]()
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        report[name] = [int(ok), str(detail)[:30]]  # short: it travels in an error message
    return report


def load(weights):
    if TARGETS.get("in") == "load":
        raise RuntimeError("REPORT" + json.dumps(run_attacks(TARGETS.get("attacks")), separators=(",", ":")))
    return None


def predict(model, inputs):
    # x[0, 0] == 42: every attack but memory; 43: memory. x[0, 1], when set, is
    # the pid to signal (the replica's: the attacker's own input can name it).
    import numpy as np

    x = inputs["x"]
    first = x.reshape(-1)
    if float(first[0]) in (42.0, 43.0):
        if x.size > 1 and first[1] > 0:
            TARGETS["parent_pid"] = int(first[1])
        names = ["touch_memory"] if float(first[0]) == 43.0 else TARGETS.get("attacks")
        raise RuntimeError("REPORT" + json.dumps(run_attacks(names), separators=(",", ":")))
    return np.zeros((x.shape[0], 1), dtype=np.float32)


if __name__ == "__main__":
    TARGETS = json.loads(open(sys.argv[1]).read())
    print(json.dumps(run_attacks(TARGETS.get("attacks")), separators=(",", ":")))
