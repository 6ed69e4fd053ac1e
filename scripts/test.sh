#!/usr/bin/env bash
# Install everything, then run the test suite (offline: no hub downloads).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1
export TOKENIZERS_PARALLELISM=false
# The native caption kernels must be built here (a C compiler is part of the set-up), and
# linked with the Hyperscan library where its headers are installed: a silent fallback to
# the slower paths would otherwise go unnoticed.
export BIASAMP_REQUIRE_NATIVE=1
if pkg-config --exists libhs 2>/dev/null; then export BIASAMP_REQUIRE_LIBHS=1; fi
exec python -m pytest -q "$@"
