#!/usr/bin/env bash
# Elastic training over launch/hostfile.sh, in the spirit of torchrun's --max-restarts and Horovod
# Elastic: when the job fails (a node lost: the collective watchdog ends every rank with status
# 124; a crash; a rank killed), find the hosts that still answer, take the largest world size that
# fits in their slots and divides the global batch (train.batch_size), and launch again with
# `--resume auto` (resuming at another world size is supported), up to MAX_RESTARTS times. Each
# restart adds a "restart" record to the run's metrics.jsonl (step, ranks, why).
#
#   launch/elastic.sh HOSTFILE train --config FILE [--set key=value ...]
#
#   MAX_RESTARTS   restarts after the first launch (default 3)
#   CHECK_TIMEOUT  seconds a host has to answer (default 10; hostfile.sh's checks use it too)
#   AGENT, SUBNET, THREADS, BTL, ...   passed on to launch/hostfile.sh (see there)
#   RESTART_DELAY  seconds between a failure and the next launch (default 2)
#
# The hostfile's lines are "HOST [slots=N]" (slots default 1). A host answers when
# `AGENT HOST true` succeeds within CHECK_TIMEOUT. Example (the netns test cluster, docs/cluster.md):
#   launch/netns-cluster.sh run -- launch/elastic.sh /run/resnet-netns/rn/hostfile train --config configs/smoke.yaml
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"
die() { echo "elastic: $*" >&2; exit 2; }
[ $# -ge 2 ] || die "usage: $0 HOSTFILE train --config FILE [--set key=value ...]"
hostfile=$1; shift
[ -r "$hostfile" ] || die "hostfile '$hostfile' not found or not readable"
[ "$1" = train ] || die "runs 'train' (got '$1')"
max=${MAX_RESTARTS:-3}; [[ "$max" =~ ^[0-9]+$ ]] || die "MAX_RESTARTS must be a non-negative integer, got '$max'"
timeout_s=${CHECK_TIMEOUT:-10}
agent=${AGENT:-${NETNS_AGENT:-ssh}}
bin=$(ensure_binary)

# The config options of the command (--config FILE, --set KEY=VALUE), for `resnet config-show`.
# `base`: the command without --resume/--overwrite (a restart always continues with --resume auto).
config_args=(); resume_given=0
args=("$@"); base=()
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --config|--set) config_args+=("${args[i]}" "${args[i + 1]:-}"); base+=("${args[i]}" "${args[i + 1]:-}"); i=$((i + 1)); continue ;;
        --config=*|--set=*) config_args+=("${args[i]}") ;;
        --resume) resume_given=1; i=$((i + 1)); continue ;;
        --resume=*|--overwrite) resume_given=1; continue ;;
    esac
    base+=("${args[i]}")
done
batch=$("$bin" config-show "${config_args[@]}" train.batch_size) || die "cannot read train.batch_size from the config"

# Hosts and slots of the hostfile.
mapfile -t lines < <(sed -e 's/#.*//' "$hostfile" | awk 'NF')
[ ${#lines[@]} -gt 0 ] || die "hostfile '$hostfile' names no host"

attempt=0; previous=""
while :; do
    live=$(mktemp); trap 'rm -f "$live"' EXIT
    answered=0; slots=0; lost=()
    for line in "${lines[@]}"; do
        host=$(awk '{print $1}' <<<"$line")
        n=$(sed -n 's/.*slots=\([0-9][0-9]*\).*/\1/p' <<<"$line"); n=${n:-1}
        cmd=($agent); [ "$(basename "${cmd[0]}")" = ssh ] && cmd+=(-o BatchMode=yes -o ConnectTimeout="$timeout_s")
        if timeout "$timeout_s" "${cmd[@]}" "$host" true </dev/null >/dev/null 2>&1; then
            echo "$line" >> "$live"; answered=$((answered + 1)); slots=$((slots + n))
        else
            lost+=("$host")
        fi
    done
    [ "$slots" -gt 0 ] || die "no host of $hostfile answers through '$agent' (within ${timeout_s} s each)"
    world=$slots
    while [ "$world" -gt 1 ] && [ $((batch % world)) -ne 0 ]; do world=$((world - 1)); done
    if [ "$attempt" -eq 0 ]; then   # as given (a fresh folder also starts with --resume auto)
        launch=("${args[@]}"); [ "$resume_given" -eq 1 ] || launch+=(--resume auto)
    else
        note="restart $attempt of $max: $answered of ${#lines[@]} host(s) answer${lost:+ (lost: ${lost[*]})}; world size $previous -> $world"
        launch=("${base[@]}" --resume auto --restart-note "$note")
        echo "[elastic] $note" >&2
    fi
    echo "[elastic] launch $((attempt + 1)): $world rank(s) on $answered host(s), global batch $batch" >&2
    rc=0; "$here/hostfile.sh" "$live" "$world" "${launch[@]}" || rc=$?
    rm -f "$live"
    [ "$rc" -eq 0 ] && exit 0
    attempt=$((attempt + 1))
    if [ "$attempt" -gt "$max" ]; then
        echo "[elastic] giving up: the job failed with status $rc after $max restart(s)" >&2
        exit "$rc"
    fi
    echo "[elastic] the job failed with status $rc; restarting ($attempt of $max)" >&2
    previous=$world
    sleep "${RESTART_DELAY:-2}"
done
