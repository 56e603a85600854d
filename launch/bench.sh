#!/usr/bin/env bash
# The project's benchmark: `resnet bench` beside the PyTorch peer in one run, out of the box (no
# OPENBLAS_* variable set), 1 process x 2 threads, for each shape of the matrix; then the 2-rank
# scaling efficiency. Each figure is the median of REPEAT runs (default 3), ours and the peer's
# alternating: the machine is shared, and its speed drifts by ±20 % within minutes, so the ratio
# is the median of the ratios of each of our runs to the peer's run right after it (a slow spell
# hits both runs of a pair alike), not the ratio of the two medians.
# Per row: images/s of both, their ratio, and both peak RSS figures (/usr/bin/time's max RSS); then
# our effective GFLOP/s (direct-convolution FLOPs per second, `resnet bench`'s count) against the
# peak of the 2 threads' sgemm, twice the one-core probe `resnet sysinfo` prints.
#   matrix (MATRIX to override, "BATCH CHANNELS SIZE" per row, rows separated by ';'):
#     64 1 96 ; 256 1 96 ; 256 1 28 ; 16 3 224
#   scaling: 2 ranks x 1 thread x batch 32 (images/s) over 2 x (1 rank x 1 thread x batch 32), the
#   median of each 2-rank run over the 1-rank run right before it; beside it, as a control, two
#   independent 1-rank processes run at once (what the machine gives two busy cores) and the CPU
#   steal time during each 2-rank run (a VM's host taking the cores)
# Example:  launch/bench.sh        REPEAT=5 STEPS=8 launch/bench.sh        MATRIX="64 1 96" launch/bench.sh
#           MATRIX= launch/bench.sh   (the scaling part alone)
# (TORCH_BENCH=path/to/torch_resnet_bench.py locates the peer; it needs Debian's python3-torch.)
set -euo pipefail
source "$(dirname "$0")/common.sh"
root=$(repo_root); bin=$(ensure_binary)
repeat=${REPEAT:-3}; steps=${STEPS:-5}
matrix=${MATRIX-"64 1 96;256 1 96;256 1 28;16 3 224"}   # MATRIX="" runs the scaling part alone
peer=${TORCH_BENCH:-$root/../shared/anchors/torch_resnet_bench.py}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS RESNET_WORKER_THREADS RESNET_BLAS_AUTODETECTED
ips() { sed -n 's/^\([0-9.]*\) images\/s$/\1/p' | tail -1; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
twice() { awk -v a="$1" 'BEGIN {print 2 * a}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
# timed FILE CMD...: runs CMD, prints its stdout, and appends its peak RSS (KiB) to FILE.
timed() { local out=$1; shift; /usr/bin/time -f "%M" -o "$rss.one" "$@"; cat "$rss.one" >> "$out"; }
rss=$(mktemp); trap 'rm -f "$rss" "$rss.one" "$rss.ours" "$rss.theirs"' EXIT

info=$("$bin" sysinfo); echo "$info" | grep -E '^(CPU |sgemm )'
peak=$(twice "$(echo "$info" | sed -n 's/.*sgemm \([0-9.]*\) GFLOP\/s on one core.*/\1/p')")   # 2 threads' sgemm peak
IFS=';' read -ra rows <<< "$matrix"
[ ${#rows[@]} -eq 0 ] || printf '%-22s %10s %10s %6s %12s %12s %6s\n' "shape (batch CxHxW)" "resnet/s" "torch/s" "ratio" "resnet MiB" "torch MiB" "RSS"
for row in "${rows[@]}"; do
    read -r b c s <<< "$row"
    # Ours and the peer alternate, so a slow spell of the shared machine hits both sides alike.
    ours=(); theirs=(); flops=(); : > "$rss.ours"; : > "$rss.theirs"
    for _ in $(seq "$repeat"); do
        out=$(timed "$rss.ours" "$bin" bench --depth 18 --batch "$b" --channels "$c" --size "$s" --threads 2 --steps "$steps")
        ours+=("$(echo "$out" | ips)")
        flops+=("$(echo "$out" | sed -n 's/.* \([0-9.]*\) GFLOP\/s per rank.*/\1/p')")
        if [ -f "$peer" ]; then
            theirs+=("$(timed "$rss.theirs" /usr/bin/python3 "$peer" "$b" "$c" "$s" 2 "$steps" | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p')")
        fi
    done
    our_rss=$(median < "$rss.ours"); their_rss=$(median < "$rss.theirs")
    o=$(printf '%s\n' "${ours[@]}" | median)
    t=$([ ${#theirs[@]} -gt 0 ] && printf '%s\n' "${theirs[@]}" | median || echo 0)
    pairs=(); for i in "${!theirs[@]}"; do pairs+=("$(ratio "${ours[$i]}" "${theirs[$i]}")"); done
    r=$([ ${#pairs[@]} -gt 0 ] && printf '%s\n' "${pairs[@]}" | median || echo -)
    printf '%-22s %10s %10s %6s %12s %12s %6s\n' "$b ${c}x${s}x${s}" "$o" "$t" "$r" \
        "$(mib "$our_rss")" "$([ "$t" = 0 ] && echo - || mib "$their_rss")" "$([ "$t" = 0 ] && echo - || ratio "$our_rss" "$their_rss")"
    echo "    runs: resnet ${ours[*]}; torch ${theirs[*]:-(peer not found at $peer)}; paired ratios ${pairs[*]:--}"
    g=$(printf '%s\n' "${flops[@]}" | median)
    echo "    effective $g GFLOP/s = $(ratio "$g" "$peak") x the 2-thread sgemm peak ($peak GFLOP/s)"
done

# jiffies "steal total" of all CPUs so far (/proc/stat): the share of time the VM's host ran
# something else while this machine wanted its cores.
jiffies() { awk '/^cpu /{t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t}' /proc/stat 2>/dev/null || echo "0 0"; }
steal_pct() { awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%.1f", (d > 0 ? 100 * (y[1] - x[1]) / d : 0)}'; }
one1() { OPENBLAS_NUM_THREADS=1 "$bin" bench --batch 32 --threads 1 --steps "$steps" | ips; }
one=(); two=(); wait2=(); eff=(); side=(); steal=()
for _ in $(seq "$repeat"); do
    one+=("$(one1)")
    # the control: two independent single-rank processes at once, what this machine gives two busy
    # cores without any communication (the ceiling of the scaling figure here)
    pair=$( (one1 & one1; wait) | tr '\n' ' ')
    side+=("$(ratio "$(echo "$pair" | awk '{print $1 + $2}')" "$(twice "${one[-1]}")")")
    before=$(jiffies)
    out=$(mpirun -np 2 --bind-to none -x OPENBLAS_NUM_THREADS=1 "$bin" bench --batch 32 --steps "$steps")
    steal+=("$(steal_pct "$before" "$(jiffies)")")
    two+=("$(echo "$out" | ips)")
    wait2+=("$(echo "$out" | sed -n 's/.*communication wait \([0-9.]*\)%.*/\1/p')")
    eff+=("$(ratio "${two[-1]}" "$(twice "${one[-1]}")")")   # this pair's
done
s1=$(printf '%s\n' "${one[@]}" | median); s2=$(printf '%s\n' "${two[@]}" | median); w=$(printf '%s\n' "${wait2[@]}" | median)
echo "1 rank x 1 thread, batch 32:  $s1 images/s   (runs: ${one[*]})"
echo "2 ranks x 1 thread x batch 32: $s2 images/s   (runs: ${two[*]}), communication wait $w % of the step"
echo "scaling efficiency: $(printf '%s\n' "${eff[@]}" | median)   (median of the paired runs: ${eff[*]})"
echo "    control, 2 independent single-rank processes at once: $(printf '%s\n' "${side[@]}" | median) of twice one alone (runs: ${side[*]}); CPU steal during the 2-rank runs: ${steal[*]} %"
