#!/usr/bin/env bash
# Single-process debug run: no mpirun, MPI is never initialized (a world of one), all cores
# for this process, and --debug names the first layer that produces a NaN or Inf.
# Example:  launch/debug.sh train --config configs/smoke.yaml
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 1 ] || { echo "usage: $0 COMMAND [ARGS...]   e.g. $0 train --config configs/smoke.yaml" >&2; exit 2; }
bin=$(ensure_binary)
export OPENBLAS_NUM_THREADS=$(nproc)
cmd=$1; shift
if [ "$cmd" = train ]; then exec "$bin" train --debug "$@"; else exec "$bin" "$cmd" "$@"; fi
