#!/usr/bin/env bash
# The wheels benchmarks/bench_gpu.py needs on the lent GPU machine (Python 3.12, torch 2.11, transformers 5.17,
# peft, accelerate, pandas, pyarrow; no trl, bitsandbytes or datasets; no internet): downloaded here into .whl/
# (git-ignored), without their dependencies, then their sizes. Carry .whl to the machine (64 MiB with the
# working tree) and install them there as benchmarks/README.md says (GPU smoke).
#   bash benchmarks/gpu_wheels.sh [PYTHON]
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
python="${1:-python3}"
dest=.whl
mkdir -p "$dest"
git check-ignore -q "$dest/x.whl" || { echo "$dest/ is not git-ignored: add it to .gitignore first" >&2; exit 2; }
# the project's pins (pyproject.toml) for what the machine lacks or has in another version; dill and multiprocess
# are the two of datasets' needs the machine lacks
wheels=(trl==1.12.0 bitsandbytes==0.50.2 datasets==5.2.0 "dill==0.4.1" "multiprocess==0.70.19"
        transformers==5.20.2 peft==0.21.2)
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$dest" "${wheels[@]}"
ls -l "$dest"/*.whl | awk '{printf "%8.2f MiB  %s\n", $5 / 1048576, $NF; total += $5} END {printf "%8.2f MiB  in all\n", total / 1048576}'
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
printf "%8.2f MiB  the tracked working tree (untracked files that git does not ignore travel too)\n" "$(echo "$tree / 1048576" | bc -l)"
