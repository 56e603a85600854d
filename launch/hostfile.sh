#!/usr/bin/env bash
# Run across cluster nodes listed in an Open MPI hostfile ("node1 slots=8" per line).
# The binary and the dataset must be at the same paths on every node (shared file system).
# Ranks are bound to cores; THREADS (default 1) sets the worker threads per rank, each rank
# getting THREADS cores (one rank per core with THREADS=1; one rank per node with
# THREADS=cores-per-node). BTL picks the transport (default tcp,self; e.g. BTL=^openib).
#
#   AGENT   the remote shell mpirun starts its daemons with (Open MPI's plm_rsh_agent), called
#           as `AGENT HOST COMMAND`; default ssh, or inside the netns test cluster
#           (launch/netns-cluster.sh run) its agent, $NETNS_AGENT.
#   SUBNET  the network the job uses, a CIDR (10.213.0.0/24) or an interface name (eth0):
#           both Open MPI's TCP BTL and its daemons' out-of-band channel are restricted to it
#           (btl_tcp_if_include, oob_tcp_if_include). Default: Open MPI's choice, or inside the
#           netns test cluster its subnet, $NETNS_SUBNET.
#   CHECK_TIMEOUT  seconds allowed to each node for the checks before launch (default 10);
#           CHECK=0 skips them.
#   MAP_BY, BIND_TO  Open MPI's --map-by / --bind-to (default slot:PE=THREADS, and core; none
#           inside the netns test cluster, whose nodes are pinned to their cores by taskset).
#   OOB_KEEPALIVE  TIME:INTERVAL:PROBES of TCP keepalive on Open MPI's daemon connections
#           (oob_tcp_keepalive_*; default 60:10:3, about 90 s to notice a node that is gone;
#           Open MPI's own default is 300:20:9, 8 minutes; 0 leaves Open MPI's). Without it mpirun
#           waits on an unreachable node's daemon for those 8 minutes at least, after the
#           ranks have ended (docs/cluster.md).
#   MPIRUN_ARGS  more mpirun options (word-split).
#
# Before mpirun, every host of the hostfile is checked through AGENT, each within CHECK_TIMEOUT:
# that it answers, that SUBNET matches one of its interfaces, and that the binary is there and
# executable. A failure prints one line naming the host and what failed and exits non-zero
# (Open MPI itself would wait for the daemon of an unreachable host, and only warns about a
# subnet that matches no interface).
#
# Examples:
#   launch/hostfile.sh hosts.txt 16 train --config configs/fashion-mnist-resnet18.yaml
#   SUBNET=10.1.0.0/16 launch/hostfile.sh hosts.txt 16 train --config ...
#   launch/netns-cluster.sh up 2 && launch/netns-cluster.sh run -- \
#       launch/hostfile.sh /run/resnet-netns/rn/hostfile 2 train --config configs/smoke.yaml   (docs/cluster.md)
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 3 ] || { echo "usage: $0 HOSTFILE RANKS COMMAND [ARGS...]" >&2; exit 2; }
hostfile=$1; ranks=$2; shift 2
[ -r "$hostfile" ] || { echo "hostfile '$hostfile' not found or not readable" >&2; exit 2; }
[[ "$ranks" =~ ^[1-9][0-9]*$ ]] || { echo "RANKS must be a positive integer, got '$ranks'" >&2; exit 2; }
bin=$(ensure_binary)
# Inside the netns test cluster (launch/netns-cluster.sh run) its agent and subnet are the defaults.
agent=${AGENT:-${NETNS_AGENT:-ssh}}
subnet=${SUBNET:-${NETNS_SUBNET:-}}
bind_default=core; [ -n "${NETNS_CLUSTER:-}" ] && bind_default=none   # nodes pinned by taskset there
timeout_s=${CHECK_TIMEOUT:-10}

# The hosts: first word of each line that is not blank or a comment.
hosts=$(sed -e 's/#.*//' "$hostfile" | awk 'NF {print $1}' | awk '!seen[$0]++')
[ -n "$hosts" ] || { echo "hostfile '$hostfile' names no host" >&2; exit 2; }

ip_to_int() { local IFS=.; set -- $1; echo $(( ($1 << 24) + ($2 << 16) + ($3 << 8) + $4 )); }

# Whether one of the addresses (lines "ADDR/LEN") lies in CIDR $1.
in_subnet() {
    local net=${1%/*} len=${1#*/} mask a
    mask=$(( len == 0 ? 0 : (0xffffffff << (32 - len)) & 0xffffffff ))
    while read -r a; do
        [ -n "$a" ] || continue
        if [ $(( $(ip_to_int "${a%/*}") & mask )) -eq $(( $(ip_to_int "$net") & mask )) ]; then return 0; fi
    done
    return 1
}

check_host() {
    local host=$1 out rc
    # One round trip: the host's IPv4 addresses and interfaces, then whether the binary runs.
    # (A remote shell's own failure is 255 for ssh and the netns agent.)
    local cmd=($agent)
    [ "$(basename "${cmd[0]}")" = ssh ] && cmd+=(-o BatchMode=yes -o ConnectTimeout="$timeout_s")
    out=$(timeout "$timeout_s" "${cmd[@]}" "$host" \
        "if command -v ip >/dev/null; then ip -o -4 addr show | awk '{print \"addr\", \$2, \$4}'; else echo no-ip; fi; if [ -x '$bin' ]; then echo binary-ok; else echo binary-missing; fi" \
        2>&1 </dev/null) && rc=0 || rc=$?
    if [ "$rc" -eq 124 ]; then
        echo "$host: unreachable: no answer through '$agent' within ${timeout_s} s" >&2; return 1
    elif [ "$rc" -ne 0 ] || ! grep -q '^binary-' <<<"$out"; then
        echo "$host: unreachable through '$agent' (status $rc): $(grep -v '^addr \|^binary-\|^no-ip' <<<"$out" | tail -1)" >&2; return 1
    fi
    if [ -n "$subnet" ] && grep -q '^no-ip' <<<"$out"; then
        echo "$host: note: no 'ip' command there, SUBNET $subnet not checked" >&2
    elif [ -n "$subnet" ]; then
        if [[ "$subnet" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/[0-9]+$ ]]; then
            if ! awk '$1 == "addr" {print $3}' <<<"$out" | in_subnet "$subnet"; then
                echo "$host: no interface in subnet $subnet (its addresses: $(awk '$1 == "addr" {printf "%s%s", s, $3; s=" "}' <<<"$out"))" >&2; return 1
            fi
        elif ! awk '$1 == "addr" {print $2}' <<<"$out" | grep -qx "$subnet"; then
            echo "$host: no interface named $subnet with an IPv4 address (its interfaces: $(awk '$1 == "addr" {printf "%s%s", s, $2; s=" "}' <<<"$out"))" >&2; return 1
        fi
    fi
    if grep -q '^binary-missing' <<<"$out"; then
        echo "$host: binary $bin is missing or not executable there" >&2; return 1
    fi
}

if [ -n "$subnet" ] && ! [[ "$subnet" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/([0-9]|[12][0-9]|3[0-2])$ || "$subnet" =~ ^[A-Za-z0-9_.:-]+$ ]]; then
    echo "SUBNET must be a CIDR (10.0.0.0/24) or an interface name, got '$subnet'" >&2; exit 2
fi
if [ "${CHECK:-1}" != 0 ]; then
    failed=0
    for h in $hosts; do check_host "$h" || failed=1; done
    [ "$failed" -eq 0 ] || exit 1
fi

export OPENBLAS_NUM_THREADS=${THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
net=()
[ -n "$subnet" ] && net=(--mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet")
extra=(); [ -n "${MPIRUN_ARGS:-}" ] && read -r -a extra <<<"$MPIRUN_ARGS"
[ -n "${LD_LIBRARY_PATH:-}" ] && extra+=(-x LD_LIBRARY_PATH)
keepalive=${OOB_KEEPALIVE:-60:10:3}
if [ "$keepalive" != 0 ]; then
    [[ "$keepalive" =~ ^([1-9][0-9]*):([1-9][0-9]*):([1-9][0-9]*)$ ]] \
        || { echo "OOB_KEEPALIVE must be TIME:INTERVAL:PROBES (seconds, seconds, count) or 0, got '$keepalive'" >&2; exit 2; }
    extra+=(--mca oob_tcp_keepalive_time "${BASH_REMATCH[1]}" --mca oob_tcp_keepalive_intvl "${BASH_REMATCH[2]}"
            --mca oob_tcp_keepalive_probes "${BASH_REMATCH[3]}")
fi
exec mpirun --hostfile "$hostfile" -np "$ranks" \
    --mca plm_rsh_agent "$agent" \
    --map-by "${MAP_BY:-slot:PE=${THREADS:-1}}" --bind-to "${BIND_TO:-$bind_default}" \
    --mca btl "${BTL:-tcp,self}" "${net[@]}" "${extra[@]}" \
    -x OPENBLAS_NUM_THREADS -x PATH \
    "$bin" "$@"
