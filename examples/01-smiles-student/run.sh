#!/usr/bin/env bash
# Example 1: a student for your own molecules, from a SMILES file. README.md says what and why.
#   ./run.sh [--toy] [WORKDIR]     (default WORKDIR: ./work; needs `mlffc` on PATH)
# --toy: the first 6 molecules, a few frames each, one epoch (seconds to a minute; what the tests run).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
toy=0
[[ "${1:-}" == "--toy" ]] && { toy=1; shift; }
work="${1:-work}"
mkdir -p "$work" && cd "$work"

if (( toy )); then
  grep -v '^#' "$here/molecules.smi" | head -n 6 > molecules.smi
  sampling=(--mutants-per-seed 0 --rattles-per-scale 1 --normal-modes 0 --md-steps 16 --md-interval 8 --packed 0)
  epochs=(--epochs 1)
else
  cp "$here/molecules.smi" molecules.smi
  sampling=()
  epochs=()
fi

# 1. Embed each SMILES in 3D (RDKit), sample configurations around it (relaxation, rattles, normal
#    modes, Langevin MD, H -> CH3/NH2/OH mutants, packed clusters), label them with ANI-1x.
#    --unseen-by: molecules whose scaffold family the pretrained student was trained on stay in
#    training, so the test split holds only chemistry it never saw.
mlffc generate --seeds molecules.smi --unseen-by ani1x-moment --out data.h5 --overwrite "${sampling[@]}"
mlffc data validate data.h5

# 2. Fine-tune the bundled pretrained student (ani1x-moment) on these labels.
mlffc train "$here/finetune.yaml" --data data.h5 --out run --restart "${epochs[@]}"

# 3. Compile it for this CPU (AOTInductor) and check the artifact against the teacher's labels of
#    the held-out molecules; `mlffc check` exits 1 when the artifact misses its limits.
mlffc compile run/student.safetensors --target cpu --data data.h5 --out artifact
status=0
mlffc check artifact --data data.h5 --plot parity.png --json check.json || status=$?
echo "outputs in $PWD: data.h5, run/, artifact/, check.json, parity.png"
# A toy student is not meant to pass the limits: there the check's verdict is shown, not enforced.
(( toy )) && exit 0
exit "$status"
