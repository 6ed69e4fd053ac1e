#!/usr/bin/env bash
# Install everything, then run the main job on its default: `biasamp demo` (offline, CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
BIASAMP_SKIP_BROWSER=1 bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 TOKENIZERS_PARALLELISM=false
exec biasamp demo "$@"
