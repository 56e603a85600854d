#!/usr/bin/env bash
# The project's benchmark: `resnet bench` side by side with the PyTorch peer in one run, then the
# 2-rank scaling efficiency. Each figure is the median of REPEAT runs (default 5): the machine is shared.
#   1. ResNet-18, batch 64, 1x96x96, 1 rank x 2 threads  vs  torch_resnet_bench.py 64 1 96 2
#   2. scaling: 2 ranks x 1 thread x batch 32 (images/s) over 2 x (1 rank x 1 thread x batch 32)
# Example:  launch/bench.sh            (TORCH_BENCH=path/to/torch_resnet_bench.py to locate the peer)
set -euo pipefail
source "$(dirname "$0")/common.sh"
root=$(repo_root); bin=$(ensure_binary)
repeat=${REPEAT:-5}; steps=${STEPS:-8}
peer=${TORCH_BENCH:-$root/../shared/anchors/torch_resnet_bench.py}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ips() { sed -n 's/^\([0-9.]*\) images\/s$/\1/p' | tail -1; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
ours=(); theirs=(); one=(); two=(); wait2=()
for i in $(seq "$repeat"); do
    ours+=("$("$bin" bench --depth 18 --batch 64 --channels 1 --size 96 --threads 2 --steps "$steps" | ips)")
    if [ -f "$peer" ]; then
        theirs+=("$(/usr/bin/python3 "$peer" 64 1 96 2 "$steps" | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p')")
    fi
    one+=("$(OPENBLAS_NUM_THREADS=1 "$bin" bench --batch 32 --threads 1 --steps "$steps" | ips)")
    out=$(mpirun -np 2 --bind-to none -x OPENBLAS_NUM_THREADS=1 "$bin" bench --batch 32 --steps "$steps")
    two+=("$(echo "$out" | ips)")
    wait2+=("$(echo "$out" | sed -n 's/.*communication wait \([0-9.]*\)%.*/\1/p')")
done
o=$(printf '%s\n' "${ours[@]}" | median); s1=$(printf '%s\n' "${one[@]}" | median); s2=$(printf '%s\n' "${two[@]}" | median)
w=$(printf '%s\n' "${wait2[@]}" | median)
echo "resnet   ResNet-18 b64 1x96x96, 1 rank x 2 threads: $o images/s   (runs: ${ours[*]})"
if [ ${#theirs[@]} -gt 0 ]; then
    t=$(printf '%s\n' "${theirs[@]}" | median)
    echo "pytorch  same model/batch/threads:               $t images/s   (runs: ${theirs[*]})"
    echo "ratio resnet / pytorch: $(ratio "$o" "$t")"
else
    echo "pytorch peer not found at $peer (set TORCH_BENCH; needs python3-torch): no side-by-side figure"
fi
echo "1 rank x 1 thread, batch 32:  $s1 images/s   (runs: ${one[*]})"
echo "2 ranks x 1 thread x batch 32: $s2 images/s   (runs: ${two[*]}), communication wait $w % of the step"
echo "scaling efficiency: $(ratio "$s2" "$(awk -v a="$s1" 'BEGIN {print 2 * a}')")"
