#!/usr/bin/env bash
# Run across cluster nodes listed in an Open MPI hostfile ("node1 slots=8" per line).
# The binary and the dataset must be at the same paths on every node (shared file system).
# Ranks are bound to cores; THREADS (default 1) sets the worker threads per rank, each rank
# getting THREADS cores (one rank per core with THREADS=1; one rank per node with
# THREADS=cores-per-node). BTL picks the transport (default tcp,self; e.g. BTL=^openib).
# Example:  launch/hostfile.sh hosts.txt 16 train --config configs/fashion-mnist-resnet18.yaml
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 3 ] || { echo "usage: $0 HOSTFILE RANKS COMMAND [ARGS...]" >&2; exit 2; }
hostfile=$1; ranks=$2; shift 2
[ -r "$hostfile" ] || { echo "hostfile '$hostfile' not found or not readable" >&2; exit 2; }
bin=$(ensure_binary)
export OPENBLAS_NUM_THREADS=${THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun --hostfile "$hostfile" -np "$ranks" \
    --map-by "${MAP_BY:-slot:PE=${THREADS:-1}}" --bind-to "${BIND_TO:-core}" \
    --mca btl "${BTL:-tcp,self}" \
    -x OPENBLAS_NUM_THREADS -x PATH -x LD_LIBRARY_PATH \
    "$bin" "$@"
