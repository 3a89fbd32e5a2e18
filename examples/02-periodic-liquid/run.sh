#!/usr/bin/env bash
# Example 2: a periodic liquid. Distil a student on packed periodic boxes, compile it, then check
# NVE energy drift and the O-O radial distribution function against the teacher. See README.md.
#   ./run.sh [--toy] [WORKDIR]     (default WORKDIR: ./work; needs `mlffc` on PATH)
# --toy: a handful of frames, one epoch, short MD (about a minute; what the tests run).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
toy=0
[[ "${1:-}" == "--toy" ]] && { toy=1; shift; }
work="${1:-work}"
mkdir -p "$work" && cd "$work"
cp "$here/liquids.smi" liquids.smi   # the recipe names its seeds file relative to this directory
if (( toy )); then
  recipe="$here/liquid-toy.yaml"
  md=(--md-steps 20 --rdf-steps 20 --equilibration 0)
else
  recipe="$here/liquid.yaml"
  md=(--md-steps 2000 --rdf-steps 2000 --equilibration 500)
fi

# 1. Seeds -> ANI-1x labels of molecules and periodic boxes -> the pretrained student fine-tuned
#    -> (full size) one on-policy round. A re-run resumes; --fresh starts over.
mlffc distill "$recipe" --workdir distill --fresh
student="$(python -c 'import json; print(json.load(open("distill/distill.json"))["best"])')"

# 2. Compile the best round's student for this CPU; its accuracy on the test split goes in the manifest.
mlffc compile "$student" --target cpu --data distill/data --out artifact

# 3. Check: forces and energies on held-out frames, then MD with the artifact and with the teacher:
#    NVE of a molecule and of a periodic box of 27 water molecules (energy drift), Langevin NVT of
#    the box at 300 K (O-O RDF, plotted to rdf.png). Exit 1 when the artifact misses a limit.
status=0
mlffc check artifact --data distill/data --plot parity.png --md --md-box 27 "${md[@]}" --rdf-plot rdf.png --json check.json || status=$?
echo "outputs in $PWD: distill/, artifact/, check.json (drift, RDF), rdf.png, parity.png"
# A toy student is not meant to pass the limits: there the check's verdict is shown, not enforced.
(( toy )) && exit 0
exit "$status"
