#!/usr/bin/env bash
# Set up biasamp on a fresh machine: a virtual environment in .venv with everything the
# project and its tests need. Safe to re-run (it only installs what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, pinned: pip takes the CPU build from the local wheel store (DEVELOPERS.md).
if ! python -c "import torch" 2>/dev/null; then
  pip install -q -c constraints.txt torch==2.13.0
fi
# The caption query's native kernels (a C extension, built by the install below) link the
# Hyperscan C library where its headers are installed: Debian's libhyperscan-dev (x86-64)
# or libvectorscan-dev (other CPUs). Without it, or without a C compiler, the query still
# runs, more slowly (DEVELOPERS.md).
if ! pkg-config --exists libhs 2>/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    if [ "$(uname -m)" = "x86_64" ]; then hs_pkg=libhyperscan-dev; else hs_pkg=libvectorscan-dev; fi
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends pkg-config "$hs_pkg") >/dev/null 2>&1 \
      || echo "setup: could not install $hs_pkg; the caption prefilter will use the hyperscan package" >&2
  else
    echo "setup: libhs not found and not root; the caption prefilter will use the hyperscan package" >&2
  fi
fi
pip install -q -c constraints.txt -e ".[all,test]"
python -c "from biasamp.corpus import kernels as k; print(f'setup: native caption kernels: {\"built\" if k.available() else \"NOT built (no C compiler?)\"}; Hyperscan library: {\"linked\" if k.libhs_available() else \"not linked\"}')"
# Browser tests (report, annotation app) use Debian's chromium, never a downloaded browser.
if [ "${BIASAMP_SKIP_BROWSER:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver) >/dev/null 2>&1 \
      || echo "setup: could not install chromium; browser tests will be skipped" >&2
  else
    echo "setup: chromium not found and not root; browser tests will be skipped" >&2
  fi
fi
