#!/usr/bin/env bash
# Run N ranks on this machine: splits the cores evenly (OpenBLAS/worker threads per rank),
# allows running as root, oversubscribes when N exceeds the cores.
# Example:  launch/local.sh 2 train --config configs/fashion-mnist-resnet18.yaml
#           launch/local.sh 4 bench --batch 32
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 2 ] || { echo "usage: $0 RANKS COMMAND [ARGS...]   e.g. $0 2 train --config configs/smoke.yaml" >&2; exit 2; }
ranks=$1; shift
[[ "$ranks" =~ ^[1-9][0-9]*$ ]] || { echo "RANKS must be a positive integer, got '$ranks'" >&2; exit 2; }
bin=$(ensure_binary)
cores=$(nproc)
threads=$(( cores / ranks )); [ "$threads" -ge 1 ] || threads=1
extra=()
[ "$ranks" -gt "$cores" ] && extra+=(--oversubscribe)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=$threads
exec mpirun -np "$ranks" "${extra[@]}" --bind-to none -x OPENBLAS_NUM_THREADS "$bin" "$@"
