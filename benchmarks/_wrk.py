"""Load with wrk (a C load generator, so the client costs little CPU) and parse its report."""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class Result:
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    #: CPU milliseconds (user + system) the server's whole process tree spent per answered request
    cpu_ms_per_request: float | None = None


def run_wrk(url: str, body: str | bytes, headers: dict[str, str], *, concurrency: int, seconds: int,
            think_ms: float = 0.0, timeout_s: float = 2.0) -> Result:
    """POST ``body`` to ``url`` from ``concurrency`` connections for ``seconds``.
    With ``think_ms``, each connection waits that long before each request, which
    caps the rate at about ``concurrency / (think + latency)``; an answer slower
    than ``timeout_s`` counts as an error."""
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body)}",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    if think_ms > 0:
        lines.append(f"function delay() return {round(think_ms)} end")  # whole milliseconds
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", f"--timeout={timeout_s:g}s", "--latency", "-s",
             script.name, url],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        ).stdout
    finally:
        Path(script.name).unlink()
    return Result(concurrency, float(_find(r"Requests/sec:\s+([\d.]+)", out)), _latency(out, "50%"),
                  _latency(out, "99%"), _errors(out),
                  int(_find(r"(\d+) requests in", out)))


def _lua_string(text: str | bytes) -> str:
    if isinstance(text, bytes):  # any byte, as Lua's decimal escapes (a binary body)
        return "'" + "".join(chr(b) if 32 <= b < 127 and b not in (39, 92) else f"\\{b:03d}" for b in text) + "'"
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"wrk output lacks {pattern!r}:\n{text}")
    return match.group(1)


def _latency(text: str, percentile: str) -> float:
    value, unit = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def _errors(text: str) -> int:
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, socket.groups())) if socket else 0)
