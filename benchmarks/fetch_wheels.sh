#!/usr/bin/env bash
# Fetch wheels for a GPU node that cannot reach a package index, on a machine that can.
#
#   bash benchmarks/fetch_wheels.sh DIR [--python-version 3.12] [--platform TAG]... [PACKAGE[==VERSION]...]
#
# Without PACKAGE arguments it fetches what the GPU benchmarks (benchmarks/gpu_suite.sh) need
# beyond a usual PyTorch + transformers image: polars (and its runtime) and diffusers, each
# at the version installed here, so the node runs the versions this project was tested
# with. Wheels are fetched without their dependencies (the node's own numpy, torch, ... stay
# in charge); each wheel's requirements are listed at the end so that you can check the
# node has them. Then, on the node:
#
#   bash benchmarks/gpu_suite.sh --out figures --wheels DIR
set -euo pipefail

dir=""
python_version="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
platforms=()
packages=()
while [ $# -gt 0 ]; do
  case "$1" in
    --python-version) python_version="$2"; shift 2 ;;
    --platform) platforms+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fetch_wheels: unknown option '$1' (see --help)" >&2; exit 64 ;;
    *) if [ -z "$dir" ]; then dir="$1"; else packages+=("$1"); fi; shift ;;
  esac
done
if [ -z "$dir" ]; then
  echo "fetch_wheels: give the folder to fetch into, e.g. bash benchmarks/fetch_wheels.sh wheels --python-version 3.12" >&2
  exit 64
fi
if [ ${#platforms[@]} -eq 0 ]; then
  # pip matches manylinux tags exactly: name the common ones, newest first.
  platforms=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)
fi
if [ ${#packages[@]} -eq 0 ]; then
  # Pin each default package to the version installed here; the polars runtime only where
  # the installed polars is split into a front end and a runtime.
  # a read loop rather than mapfile: macOS ships bash 3.2
  while IFS= read -r line; do packages+=("$line"); done < <(python3 - <<'EOF'
from importlib import metadata

for name in ("polars", "polars-runtime-32", "diffusers"):
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        if name != "polars-runtime-32":
            print(name)
EOF
  )
fi

mkdir -p "$dir"
platform_args=()
for p in "${platforms[@]}"; do platform_args+=(--platform "$p"); done
echo "fetching for CPython $python_version (${platforms[*]}): ${packages[*]}"
python3 -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
  --python-version "$python_version" "${platform_args[@]}" -d "$dir" "${packages[@]}"

python3 - "$dir" <<'EOF'
import sys
import zipfile
from pathlib import Path

total = 0
for wheel in sorted(Path(sys.argv[1]).glob("*.whl")):
    total += wheel.stat().st_size
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        needs = [line.split(":", 1)[1].strip() for line in z.read(meta).decode().splitlines()
                 if line.startswith("Requires-Dist:") and "extra ==" not in line]
    print(f"{wheel.name}  ({wheel.stat().st_size / 2**20:.1f} MiB)")
    if needs:
        print("    needs: " + ", ".join(needs))
print(f"{total / 2**20:.1f} MiB in {sys.argv[1]}")
EOF
