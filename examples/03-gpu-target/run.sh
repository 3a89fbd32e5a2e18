#!/usr/bin/env bash
# Example 3: compile for a GPU target and check the artifact there. Where no CUDA GPU is visible,
# prints the pipeline the target would run (mlffc compile --plan) and stops. See README.md.
#   ./run.sh [--toy] [WORKDIR]     (default WORKDIR: ./work; needs `mlffc` and its python on PATH)
# TARGET=a100|h100|l4|v100 picks the target (default: the one matching this machine's GPU, h100
# when none is visible). --toy: a few check frames (the tests).
set -euo pipefail
toy=0
[[ "${1:-}" == "--toy" ]] && { toy=1; shift; }
work="${1:-work}"
mkdir -p "$work" && cd "$work"

# The GPU's compute capability (sm_90 on an H100 or H200), empty without one.
arch="$(python -c 'import torch; print("sm_%d%d" % torch.cuda.get_device_capability() if torch.cuda.is_available() else "")')"
target="${TARGET:-$(python -c '
import sys
from mlffc.targets import TARGETS
print(next((t.name for t in TARGETS.values() if t.arch == sys.argv[1]), "h100"))' "$arch")}"

echo "target $target; the pipeline mlffc compile runs for it:"
mlffc compile --target "$target" --plan
if [[ -z "$arch" ]]; then
  echo "no CUDA GPU visible: the plan above is what would run (AOTInductor compiles for the GPU it runs on)."
  exit 0
fi

if (( toy )); then sampling=(--limit 6 --mutants-per-seed 0 --rattles-per-scale 1 --normal-modes 0 --md-steps 16 --packed 0)
else sampling=(--packed 10); fi
# Labelled molecules whose scaffold families the pretrained student never saw, to check against.
mlffc generate --seeds molecules --unseen-by ani1x-moment --out data.h5 --overwrite "${sampling[@]}"
# Compile the bundled pretrained student for the GPU, then check it: compiled vs eager on the
# GPU, and forces and energies against the teacher's labels of the test split.
mlffc compile ani1x-moment --target "$target" --data data.h5 --out "artifact-$target"
mlffc check "artifact-$target" --data data.h5 --plot parity.png --json check.json
