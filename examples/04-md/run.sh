#!/usr/bin/env bash
# Example 4: MD with a compiled artifact in ASE (Langevin at 300 K, then NVE), with plots of the
# total-energy drift and the temperature. See README.md.
#   ./run.sh [--toy] [WORKDIR]     (default WORKDIR: ./work; needs `mlffc` and its python on PATH)
# ARTIFACT=DIR uses that artifact (from example 1 or 2); otherwise the bundled pretrained student
# (ani1x-moment) is compiled for this CPU first. --toy: 100 + 200 steps (seconds; the tests).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
toy=0
[[ "${1:-}" == "--toy" ]] && { toy=1; shift; }
work="${1:-work}"
mkdir -p "$work" && cd "$work"
if (( toy )); then steps=(--langevin-steps 100 --nve-steps 200); else steps=(--langevin-steps 2000 --nve-steps 4000); fi

artifact="${ARTIFACT:-artifact}"
if [[ -z "${ARTIFACT:-}" ]]; then
  mlffc compile ani1x-moment --target cpu --out "$artifact"
fi
# 27 water molecules in a periodic 9.3 Å box; --structure FILE simulates any structure ASE reads.
python "$here/md.py" "$artifact" --water 27 "${steps[@]}" --out .
