#!/usr/bin/env bash
# A 2-node run under SLURM, measured: `resnet bench` (ResNet-18, batch BATCH per rank, 1xSIZExSIZE,
# 1 thread per rank) submitted with sbatch on the SLURM test cluster (launch/slurm-cluster.sh,
# 1 core per node): 1 node x 1 rank, then 2 nodes x 1 rank (srun --mpi=pmix, TCP between the
# nodes), REPEAT rounds interleaved, best images/s of each; scaling efficiency (2-node images/s
# over twice the 1-node figure) and communication wait (bench's share of the step spent waiting
# for allreduces). Needs root; the cluster is made for the run and torn down at exit.
#   REPEAT (3)  STEPS (8)  BATCH (32)  SIZE (96)
set -euo pipefail
source "$(dirname "$0")/common.sh"
here=$(cd "$(dirname "$0")" && pwd)
bin=$(ensure_binary)
repeat=${REPEAT:-3}; steps=${STEPS:-8}; batch=${BATCH:-32}; size=${SIZE:-96}
export CLUSTER=${CLUSTER:-sbench} RESNET_BIN=$bin BTL=tcp,self
sc=$here/slurm-cluster.sh
trap '"$sc" down >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT; trap 'exit 143' TERM
"$sc" down >/dev/null 2>&1 || true
"$sc" up 2 | tail -2 | head -1
out=$(mktemp -d /var/tmp/resnet-slurm-bench-XXXXXX)
args=(bench --depth 18 --batch "$batch" --channels 1 --size "$size" --threads 1 --steps "$steps")
ips() { sed -n 's/^\([0-9.]*\) images\/s$/\1/p' "$1" | tail -1; }
commwait() { sed -n 's/.*communication wait \([0-9.]*\)%.*/\1/p' "$1" | tail -1; }
echo "ResNet-18, batch $batch per rank, 1x${size}x${size}, 1 thread per rank, $steps timed steps, best of $repeat (load average at start: $(cut -d' ' -f1-3 /proc/loadavg))"
one=(); two=(); waits=()
for r in $(seq "$repeat"); do
    for n in 1 2; do
        f=$out/n$n-r$r.out
        "$sc" run -- sbatch --wait --nodes=$n --ntasks-per-node=1 --time=10 --output="$f" "$here/slurm.sbatch" "${args[@]}" >/dev/null \
            || { echo "run failed ($n node(s)):"; tail -5 "$f"; exit 1; }
        if [ "$n" = 1 ]; then one+=("$(ips "$f")"); else two+=("$(ips "$f")/$(commwait "$f")"); fi
    done
done
s1=$(printf '%s\n' "${one[@]}" | sort -g | tail -1)
b2=$(printf '%s\n' "${two[@]}" | sort -t/ -k1 -g | tail -1)
echo "1 node x 1 rank:   $s1 images/s   (runs: ${one[*]})"
echo "2 nodes x 1 rank:  ${b2%/*} images/s, efficiency $(awk -v a="${b2%/*}" -v b="$s1" 'BEGIN {printf "%.2f", a / (2 * b)}'), communication wait ${b2#*/}%   (runs images/s / wait %: ${two[*]})"
echo "sbatch --nodes=N --ntasks-per-node=1 launch/slurm.sbatch ${args[*]}   (BTL=tcp,self; outputs in $out)"
