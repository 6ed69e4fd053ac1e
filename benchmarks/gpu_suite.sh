#!/usr/bin/env bash
# Both GPU benchmarks in one go, on one CUDA machine, with every figure written to one folder:
#   generate.json  images/s of biasamp's generator vs the study's loop (target >= 2x)
#   clip.json      CLIP ViT-L/14-sized classification throughput (target >= 1,000 images/s)
#   *.log, env.txt what each benchmark printed; Python, PyTorch, GPU and driver
#
#   bash benchmarks/gpu_suite.sh --out DIR                    # biasamp installed, or run from a clone
#   bash benchmarks/gpu_suite.sh --out DIR --wheels WHEELS    # GPU node without internet (see below)
#   bash benchmarks/gpu_suite.sh --out DIR --tiny             # the same steps on a CPU, tiny models
#
# GPU nodes often cannot reach a package index. Fetch the wheels the node lacks on a machine
# that can (benchmarks/fetch_wheels.sh), copy them over with the clone, and pass --wheels:
# they are installed, without an index, into a private folder put on PYTHONPATH; biasamp
# itself runs from this clone's src/ when it is not installed (its native kernels are
# optional and not used here).
#
# Exit status: 0 both ran and met their targets; 1 a target was missed; 2 a benchmark did not
# run to the end (its log says why); 3 biasamp or a library it needs cannot be imported;
# 4 the summary itself failed (the figures are still in DIR).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
out=""
wheels=""
tiny=0
python="${PYTHON:-python3}"
generate_timeout=360
clip_timeout=180

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --wheels) wheels="$2"; shift 2 ;;
    --tiny) tiny=1; shift ;;
    --python) python="$2"; shift 2 ;;
    --generate-timeout) generate_timeout="$2"; shift 2 ;;
    --clip-timeout) clip_timeout="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_suite: unknown option '$1' (see --help)" >&2; exit 64 ;;
  esac
done
if [ -z "$out" ]; then
  echo "gpu_suite: --out DIR is required: the folder that receives the figures and logs" >&2
  exit 64
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if [ -n "$wheels" ]; then
  shopt -s nullglob
  files=("$wheels"/*.whl)
  shopt -u nullglob
  if [ ${#files[@]} -eq 0 ]; then
    echo "gpu_suite: no .whl files in '$wheels'; fetch them with: bash benchmarks/fetch_wheels.sh $wheels" >&2
    exit 3
  fi
  site="$(mktemp -d "${TMPDIR:-/tmp}/biasamp-site.XXXXXX")"
  if ! "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "${files[@]}" >"$out/wheels.log" 2>&1; then
    echo "gpu_suite: installing the wheels in '$wheels' failed; see $out/wheels.log" >&2
    exit 3
  fi
  rm -f "$out/wheels.log"
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  echo "installed the ${#files[@]} wheel files of $wheels into $site"
fi

if ! "$python" -c "import biasamp" >/dev/null 2>&1; then
  export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$python" -c "import biasamp.generate, biasamp.classify, diffusers, torch" 2>"$out/import.log"; then
  echo "gpu_suite: cannot import what the benchmarks need (last line of the error below)." >&2
  tail -n 1 "$out/import.log" >&2
  echo "Install biasamp with its 'models' extra, or fetch the missing wheels with benchmarks/fetch_wheels.sh and pass --wheels." >&2
  exit 3
fi
rm -f "$out/import.log"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  "$python" - <<'EOF'
import platform, sys
import biasamp, diffusers, polars, torch, transformers
print("python:", sys.version.split()[0], platform.machine())
print("biasamp:", biasamp.__version__, "from", biasamp.__file__)
print("torch:", torch.__version__, "cuda:", torch.version.cuda, "available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu:", torch.cuda.get_device_name(0))
print("transformers:", transformers.__version__, "diffusers:", diffusers.__version__, "polars:", polars.__version__)
EOF
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  echo "cpus: $(nproc)"
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ "$tiny" = 1 ]; then
  generate_args=(--tiny --prompts 1 --images-per-prompt 2 --batch-size 2 --steps 1)
  clip_args=(--tiny --device cpu --batch-sizes 4,8 --n-images 16 --model-images 16)
else
  generate_args=()
  clip_args=()
fi

status=0
run() {  # name timeout command...
  local name="$1" limit="$2"
  shift 2
  echo "== $name (at most ${limit} s)"
  rm -f "$out/$name.json"  # a figure left by an earlier run in DIR must not pass for this one's
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  if [ "$rc" -ne 0 ] || [ ! -s "$out/$name.json" ]; then
    echo "gpu_suite: $name did not run to the end (exit $rc); see $out/$name.log" >&2
    status=2
  fi
}
# ${a[@]+"${a[@]}"}: an empty array under `set -u` on bash before 4.4
run generate "$generate_timeout" "$python" "$here/gpu_generate.py" --report-only --json "$out/generate.json" ${generate_args[@]+"${generate_args[@]}"}
run clip "$clip_timeout" "$python" "$here/gpu_clip.py" --report-only --json "$out/clip.json" ${clip_args[@]+"${clip_args[@]}"}

# One summary of both, judged against the targets each benchmark states.
"$python" - "$out" "$tiny" <<'EOF' | tee "$out/summary.txt"
import json, sys
from pathlib import Path

out, tiny = Path(sys.argv[1]), sys.argv[2] == "1"
missed = False


def verdict(ok):
    return "not judged with --tiny" if tiny else ("met" if ok else "MISSED")

gen = out / "generate.json"
if gen.exists():
    g = json.loads(gen.read_text())
    ok = tiny or g["speedup"] >= g["target"]
    missed |= not ok
    print(f"generate: {g['device']}, {g['model']}, {g['dtype']}, {g['steps']} steps, {g['size']}px, {g['images']} images: "
          f"study loop {g['study_images_per_s']:.3f} images/s, biasamp (batch {g['batch_size']}) {g['biasamp_images_per_s']:.3f} images/s, "
          f"{g['speedup']:.2f}x (target >= {g['target']:g}x: {verdict(ok)})")
clip = out / "clip.json"
if clip.exists():
    c = json.loads(clip.read_text())
    best = max(c["model_images_per_s"].values())
    target = c["target"]
    ok = tiny or (best >= target and c["end_to_end_images_per_s"] >= target and not c["decode_is_bottleneck"])
    missed |= not ok
    print(f"clip: {c.get('gpu', c['device'])}, {c['params'] / 1e6:.0f} M parameters: model {best:.0f} images/s (best batch), "
          f"decode {c['decode_images_per_s']:.0f} images/s on {c['workers']} threads, end to end {c['end_to_end_images_per_s']:.0f} images/s "
          f"(target >= {target:,.0f} with decoding not the bottleneck: {verdict(ok)})")
sys.exit(1 if missed else 0)
EOF
summary_rc=${PIPESTATUS[0]}
if [ "$summary_rc" -ne 0 ] && [ "$summary_rc" -ne 1 ]; then
  echo "gpu_suite: the summary failed (exit $summary_rc); the figures are in $out/*.json" >&2
  status=4
elif [ "$status" -eq 0 ] && [ "$summary_rc" -eq 1 ]; then
  status=1
fi
exit "$status"
