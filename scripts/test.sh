#!/usr/bin/env bash
# Install everything, then run the test suite (offline: no hub downloads).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1
export TOKENIZERS_PARALLELISM=false
exec python -m pytest -q "$@"
