#!/usr/bin/env bash
# The accuracy-regression gate (README.md here): compile the student for the cpu target, check it
# on the committed reference set against the committed baseline; exit 1 when a figure regressed
# beyond its tolerance, 2 when the baseline cannot be compared (other data, format, non-finite).
#   gate.sh            the gate (what .github/workflows/accuracy.yml runs)
#   gate.sh --update   rewrite the baseline from this build instead (commit it with the change)
# Environment: PYTHON (default python3), STUDENT (checkpoint file or bundled name; default
# ani1x-moment), ARTIFACT (an artifact already built: gate it instead of compiling), WORKDIR (for
# the artifact and check.json; default a temporary directory, removed at exit), BASELINE (default
# baseline.json here).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
absolute() { if [[ $1 == /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }
python="${PYTHON:-python3}"
if [[ $python == */* ]]; then python="$(absolute "$python")"; fi
student="${STUDENT:-ani1x-moment}"
if [[ -e $student ]]; then student="$(absolute "$student")"; fi
baseline="$(absolute "${BASELINE:-$here/baseline.json}")"
artifact="${ARTIFACT:+$(absolute "$ARTIFACT")}"
case "${1:-}" in
  "") mode=gate ;;
  --update) mode=update ;;
  *) echo "usage: $0 [--update]" >&2; exit 2 ;;
esac
if [[ $mode == gate && ! -f $baseline ]]; then
  echo "no baseline at $baseline: make it with '$0 --update' and commit it" >&2
  exit 2
fi
if [[ -n ${WORKDIR:-} ]]; then
  workdir="$(absolute "$WORKDIR")"
  mkdir -p "$workdir"
else
  workdir="$(mktemp -d)"
  trap 'rm -rf "$workdir"' EXIT
fi
cd "$here/../.."  # the repository root: the data path the baseline records is relative to it
data=examples/05-accuracy-gate/reference.h5

if [[ -z $artifact ]]; then
  artifact="$workdir/artifact"
  "$python" -m mlffc compile "$student" --target cpu --out "$artifact"
fi
# The absolute limits are loose sanity bounds (a broken build); the baseline is the gate.
limits=(--max-force-mae 0.5 --max-energy-mae 0.05)
if [[ $mode == update ]]; then
  "$python" -m mlffc check "$artifact" --data "$data" "${limits[@]}" --write-baseline "$baseline"
else
  "$python" -m mlffc check "$artifact" --data "$data" "${limits[@]}" --baseline "$baseline" --json "$workdir/check.json"
fi
