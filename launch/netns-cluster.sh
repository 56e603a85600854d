#!/usr/bin/env bash
# A cluster on one machine: N "nodes" as Linux network namespaces on one bridge, for testing
# what crosses a network (TCP between ranks, a link going down) without real hosts. Needs root
# and iproute2 (`ip`, `tc`); `taskset` (util-linux) gives each node its own cores.
#
#   launch/netns-cluster.sh up [N]           create N nodes (default 2); prints the hostfile and agent
#   launch/netns-cluster.sh run -- CMD ...   run CMD on node 0 (the head node, where mpirun runs)
#   launch/netns-cluster.sh exec NODE -- CMD run CMD on node NODE (index or name)
#   launch/netns-cluster.sh link NODE down|up  pull / plug a node's cable (its port on the bridge)
#   launch/netns-cluster.sh rate RATE|none   (re)set every link's bandwidth limit (tc tbf)
#   launch/netns-cluster.sh status           nodes, addresses, links, processes in the namespaces
#   launch/netns-cluster.sh kill             kill every process in the namespaces (cluster stays up)
#   launch/netns-cluster.sh down             kill every process in the namespaces, delete everything
#   launch/netns-cluster.sh with [N] -- CMD  up, run CMD on node 0, down (also on failure or Ctrl-C)
#   launch/netns-cluster.sh agent HOST CMD   the rsh agent itself (what mpirun's plm_rsh_agent calls)
#   launch/netns-cluster.sh reap             take down every cluster under /run/resnet-netns whose
#                                            CLUSTER_OWNER process is gone (a test run killed mid-way)
#
# Environment:
#   CLUSTER   name of the cluster (default rn), 1 to 8 characters of [a-z0-9]; several clusters
#             can exist side by side (the tests make their own).
#   CLUSTER_SUBNET the nodes' /24 (default 10.213.0.0/24; node i gets .(10+i)). Used only inside the
#             namespaces made here: nothing is added to the host's own network namespace.
#   RATE      bandwidth limit of each link, each direction, as tc writes it (1gbit, 10gbit,
#             500mbit); empty = unlimited. (netem is not available in every kernel; tbf is.)
#   CORES     cores per node (default: nproc / N, at least 1). Node i runs on cores
#             [i*CORES, (i+1)*CORES) modulo nproc: every process started on it (mpirun, orted,
#             ranks) is confined there with taskset.
#   STATE_DIR where the cluster's files live (default /run/resnet-netns/$CLUSTER).
#   CLUSTER_OWNER  pid of the process the cluster belongs to (the tests give theirs): `reap` takes
#             the cluster down once that process is gone — a SIGKILLed test cannot tear down.
#
# Layout: namespace ${CLUSTER}-sw holds the bridge (the switch); node i is namespace ${CLUSTER}-n$i
# with interface eth0 (address CLUSTER_SUBNET.(10+i)), cabled by a veth pair to port p$i of the bridge.
# Loopback is up in every node. `link NODE down` sets the switch side of the node's cable down:
# the node keeps running but can reach no one, and no one reaches it.
#
# Open MPI across the nodes (written to $STATE_DIR/mpirun-args by `up`; `run` exports
# NETNS_AGENT, NETNS_HOSTFILE, NETNS_SUBNET, the cluster's subnet):
#   mpirun --hostfile $STATE_DIR/hostfile -np 2 --mca plm_rsh_agent $STATE_DIR/agent \
#     --mca btl tcp,self --mca btl_tcp_if_include CLUSTER_SUBNET --mca oob_tcp_if_include CLUSTER_SUBNET \
#     --bind-to none  resnet ...
# --bind-to none: each node's processes are already confined to the node's cores (taskset). Open
# MPI computes bindings on the head node's view of the hardware, which here is the whole machine
# for every node, so --bind-to core would bind node 1's rank to core 0 (seen with Open MPI 4.1.4).
set -euo pipefail

CLUSTER=${CLUSTER:-rn}
net_subnet=${CLUSTER_SUBNET:-10.213.0.0/24}
STATE_DIR=${STATE_DIR:-/run/resnet-netns/$CLUSTER}
self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
. "$(dirname "$self")/common.sh"

die() { echo "netns-cluster: $*" >&2; exit 1; }

[[ "$CLUSTER" =~ ^[a-z0-9]{1,8}$ ]] || die "CLUSTER must be 1 to 8 characters of [a-z0-9], got '$CLUSTER'"
[[ "$net_subnet" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)\.0/24$ ]] || die "CLUSTER_SUBNET must be a /24 written A.B.C.0/24, got '$net_subnet'"
prefix=${net_subnet%.0/24}
sw="$CLUSTER-sw"; br="br0"
node_ns() { echo "$CLUSTER-n$1"; }
node_addr() { echo "$prefix.$((10 + $1))"; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, veth, bridge, tc)"
    command -v ip >/dev/null || die "'ip' not found: install iproute2"
}

# Node index from an index, a namespace name, an address or a node name (n0, n1, ...).
node_index() {
    local x=$1 i
    [ -r "$STATE_DIR/nodes" ] || die "cluster '$CLUSTER' is not up (no $STATE_DIR/nodes)"
    while read -r i ns addr name; do
        if [ "$x" = "$i" ] || [ "$x" = "$ns" ] || [ "$x" = "$addr" ] || [ "$x" = "$name" ]; then echo "$i"; return 0; fi
    done < "$STATE_DIR/nodes"
    return 1
}

nodes_count() { wc -l < "$STATE_DIR/nodes"; }

# tbf on both ends of node i's cable (egress of eth0 in the node, egress of p$i in the switch).
set_rate() {
    local i=$1 rate=$2
    for spec in "$(node_ns "$i") eth0" "$sw p$i"; do
        set -- $spec
        ip -n "$1" link show "$2" >/dev/null 2>&1 || continue
        tc -n "$1" qdisc del dev "$2" root >/dev/null 2>&1 || true
        if [ -n "$rate" ] && [ "$rate" != none ]; then
            # burst: at least 1 ms at the rate (tbf needs burst >= rate / HZ), and 64 KiB (a GSO segment)
            local bits bytes burst
            bits=$(rate_bits "$rate") || die "cannot read the rate '$rate' (e.g. 1gbit, 10gbit, 500mbit)"
            bytes=$(( bits / 8 / 1000 )); [ "$bytes" -ge 65536 ] || bytes=65536
            burst=$(( bytes * 2 ))
            tc -n "$1" qdisc add dev "$2" root tbf rate "$rate" burst "$burst" latency 50ms \
                || die "tc tbf on $1/$2 failed (is sch_tbf available?)"
        fi
    done
}

rate_bits() {
    local r=${1,,}
    case "$r" in
        *gbit) echo $(( ${r%gbit} * 1000000000 ));;
        *mbit) echo $(( ${r%mbit} * 1000000 ));;
        *kbit) echo $(( ${r%kbit} * 1000 ));;
        *bit)  echo $(( ${r%bit} ));;
        *) return 1;;
    esac
}

cmd_up() {
    need_root
    local n=${1:-2}
    [[ "$n" =~ ^[1-9][0-9]?$ ]] && [ "$n" -le 50 ] || die "N must be 1 to 50, got '$n'"
    [ ! -e "$STATE_DIR/nodes" ] || die "cluster '$CLUSTER' is already up ($STATE_DIR); run 'down' first"
    if ip netns list | awk '{print $1}' | grep -qx "$sw"; then die "namespace $sw exists already; run 'down' first"; fi
    # The subnet must not be one the host already uses.
    if ip -4 addr show | grep -q " inet $prefix\."; then die "CLUSTER_SUBNET $net_subnet is in use on this host; choose another"; fi
    local total cores
    total=$(nproc)
    cores=${CORES:-$(( total / n ))}; [ "$cores" -ge 1 ] || cores=1
    mkdir -p "$STATE_DIR"
    [ -z "${CLUSTER_OWNER:-}" ] || echo "$CLUSTER_OWNER" > "$STATE_DIR/owner"
    : > "$STATE_DIR/nodes.partial"

    ip netns add "$sw"
    ip -n "$sw" link set lo up
    ip -n "$sw" link add "$br" type bridge
    ip -n "$sw" link set "$br" up
    for ((i = 0; i < n; i++)); do
        local ns addr first list c
        ns=$(node_ns "$i"); addr=$(node_addr "$i")
        ip netns add "$ns"
        echo "$i $ns $addr n$i" >> "$STATE_DIR/nodes.partial"
        ip -n "$ns" link set lo up
        # The veth pair is made inside the switch namespace, then one end moves into the node.
        ip -n "$sw" link add "p$i" type veth peer name "e$i"
        ip -n "$sw" link set "e$i" netns "$ns"
        ip -n "$ns" link set "e$i" name eth0
        ip -n "$ns" addr add "$addr/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$sw" link set "p$i" master "$br"
        ip -n "$sw" link set "p$i" up
        first=$(( (i * cores) % total )); list=""
        for ((c = 0; c < cores; c++)); do list+="${list:+,}$(( (first + c) % total ))"; done
        echo "$list" > "$STATE_DIR/cores-n$i"
    done
    mv "$STATE_DIR/nodes.partial" "$STATE_DIR/nodes"
    local rate=${RATE:-}
    for ((i = 0; i < n; i++)); do set_rate "$i" "$rate"; done
    echo "${rate:-unlimited}" > "$STATE_DIR/rate"

    # Hostfile: one slot per core of the node.
    : > "$STATE_DIR/hostfile"
    for ((i = 0; i < n; i++)); do echo "$(node_addr "$i") slots=$cores" >> "$STATE_DIR/hostfile"; done
    # The rsh agent: this script's `agent` subcommand with this cluster's settings baked in.
    cat > "$STATE_DIR/agent" <<EOF
#!/bin/sh
# rsh agent of netns cluster '$CLUSTER' (mpirun --mca plm_rsh_agent $STATE_DIR/agent)
CLUSTER='$CLUSTER' CLUSTER_SUBNET='$net_subnet' STATE_DIR='$STATE_DIR' exec '$self' agent "\$@"
EOF
    chmod +x "$STATE_DIR/agent"
    echo "--hostfile $STATE_DIR/hostfile --mca plm_rsh_agent $STATE_DIR/agent --mca btl tcp,self --mca btl_tcp_if_include $net_subnet --mca oob_tcp_if_include $net_subnet --bind-to none" \
        > "$STATE_DIR/mpirun-args"
    echo "cluster '$CLUSTER' up: $n node(s) on $net_subnet, links ${rate:-unlimited}, $cores core(s) per node"
    for ((i = 0; i < n; i++)); do echo "  n$i  $(node_addr "$i")  namespace $(node_ns "$i")  cores $(cat "$STATE_DIR/cores-n$i")"; done
    echo "  hostfile $STATE_DIR/hostfile"
    echo "  agent    $STATE_DIR/agent"
}

# Runs a command in node i's namespace (and its cores), with the cluster's variables exported.
in_node() {
    local i=$1; shift
    export NETNS_CLUSTER=$CLUSTER NETNS_STATE_DIR=$STATE_DIR NETNS_SUBNET=$net_subnet
    export NETNS_HOSTFILE=$STATE_DIR/hostfile NETNS_AGENT=$STATE_DIR/agent NETNS_NODE=n$i
    local pin=() cores
    cores=$(cat "$STATE_DIR/cores-n$i" 2>/dev/null || true)
    # Every process started on the node (mpirun, orted, the ranks they fork) inherits this
    # affinity: the node's cores and no others.
    if [ -n "$cores" ] && command -v taskset >/dev/null; then pin=(taskset -c "$cores"); fi
    exec ip netns exec "$(node_ns "$i")" "${pin[@]}" "$@"
}

cmd_run() {
    need_root
    [ "${1:-}" = "--" ] && shift
    [ $# -ge 1 ] || die "usage: $0 run -- COMMAND [ARGS...]"
    node_index 0 >/dev/null || die "cluster '$CLUSTER' has no node 0"
    in_node 0 "$@"
}

cmd_exec() {
    need_root
    local i; i=$(node_index "${1:-}") || die "no node '${1:-}' in cluster '$CLUSTER'"
    shift; [ "${1:-}" = "--" ] && shift
    [ $# -ge 1 ] || die "usage: $0 exec NODE -- COMMAND [ARGS...]"
    in_node "$i" "$@"
}

# The rsh agent: `agent [-x] HOST COMMAND...` runs COMMAND with sh -c in HOST's namespace, as
# ssh would on that host. Like ssh, it fails with status 255 when the host is unknown or its
# link is down (checked before anything runs), so a launcher learns that at once instead of
# waiting for a daemon that never calls back.
cmd_agent() {
    while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done   # ssh-style options (-x): ignored
    local host=${1:-}; shift || true
    [ -n "$host" ] && [ $# -ge 1 ] || { echo "netns agent: usage: agent HOST COMMAND..." >&2; exit 255; }
    local i
    if ! i=$(node_index "$host" 2>/dev/null); then
        echo "netns agent: $host: no such node in cluster '$CLUSTER' (nodes: $(awk '{printf "%s%s", s, $3; s=" "}' "$STATE_DIR/nodes" 2>/dev/null))" >&2
        exit 255
    fi
    if ! ip -n "$sw" link show "p$i" 2>/dev/null | head -1 | grep -q "[<,]UP[,>]"; then
        echo "netns agent: connect to host $host: Network is unreachable (its link is down)" >&2
        exit 255
    fi
    # When the caller is itself a node (mpirun on the head), the target must be reachable from it.
    local mine; mine=$(ip -4 -o addr show 2>/dev/null | awk '$2 == "eth0" {print $4}' | cut -d/ -f1)
    if [ -n "$mine" ] && [ "$mine" != "$(node_addr "$i")" ]; then
        local me; if me=$(node_index "$mine" 2>/dev/null) && ! ip -n "$sw" link show "p$me" 2>/dev/null | head -1 | grep -q "[<,]UP[,>]"; then
            echo "netns agent: connect to host $host: Network is unreachable (this node's link is down)" >&2
            exit 255
        fi
    fi
    in_node "$i" sh -c "$*"
}

cmd_link() {
    need_root
    local i; i=$(node_index "${1:-}") || die "no node '${1:-}' in cluster '$CLUSTER'"
    case "${2:-}" in
        down) ip -n "$sw" link set "p$i" down; echo "n$i link down";;
        up)
            ip -n "$sw" link set "p$i" up
            # Forget the neighbours that failed to answer while the link was down: a FAILED
            # entry makes connect() fail at once (EHOSTUNREACH), which Open MPI's daemons
            # take for a dead peer, for seconds after the cable is back.
            local ns; while read -r _ ns _; do ip -n "$ns" neigh flush all 2>/dev/null || true; done < "$STATE_DIR/nodes"
            echo "n$i link up";;
        *) die "usage: $0 link NODE down|up";;
    esac
}

cmd_rate() {
    need_root
    local rate=${1:-}; [ -n "$rate" ] || die "usage: $0 rate RATE|none  (e.g. 1gbit)"
    local n i; n=$(nodes_count)
    for ((i = 0; i < n; i++)); do set_rate "$i" "$rate"; done
    [ "$rate" = none ] && rate=unlimited
    echo "$rate" > "$STATE_DIR/rate"; echo "links: $rate"
}

cmd_status() {
    [ -r "$STATE_DIR/nodes" ] || { echo "cluster '$CLUSTER' is not up"; return 0; }
    echo "cluster '$CLUSTER' on $net_subnet, links $(cat "$STATE_DIR/rate" 2>/dev/null)"
    while read -r i ns addr name; do
        local state pids
        state=$(ip -n "$sw" link show "p$i" 2>/dev/null | grep -q "[<,]UP[,>]" && echo up || echo down)
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        echo "  $name $addr ns=$ns cores=$(cat "$STATE_DIR/cores-$name" 2>/dev/null) link=$state pids: ${pids:-none}"
    done < "$STATE_DIR/nodes"
}

# This cluster's namespaces (the switch and the nodes), whether or not `up` finished.
cluster_spaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | while read -r ns; do
        case "$ns" in "$CLUSTER-sw"|"$CLUSTER"-n[0-9]*) echo "$ns";; esac
    done
}

# SIGTERM, then after up to 2 s SIGKILL, to every process in the cluster's namespaces (what a
# cut-off node leaves behind: orted and its ranks). Prints how many there were.
kill_all() {
    local spaces ns pids=() p
    spaces=$(cluster_spaces)
    for ns in $spaces; do pids+=($(ip netns pids "$ns" 2>/dev/null)); done
    [ ${#pids[@]} -gt 0 ] || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.2
    done
    for ns in $spaces; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    done
    echo "killed ${#pids[@]} process(es) in the namespaces of cluster '$CLUSTER'"
}

cmd_kill() { need_root; kill_all; }

# Deletes everything this cluster made, whatever state it is in (also after a half-done `up`):
# every process in its namespaces (kill_all), then the namespaces (their veths and the bridge go
# with them), then the state folder.
cmd_down() {
    need_root
    kill_all
    local spaces ns
    spaces=$(cluster_spaces)
    for ns in $spaces; do
        for _ in 1 2 3 4 5; do ip netns del "$ns" 2>/dev/null && break; sleep 0.2; done
    done
    rm -rf "$STATE_DIR"
    [ -z "$spaces" ] || echo "cluster '$CLUSTER' down: removed" $spaces
    return 0
}

# Clusters whose owner process is gone; those with a SLURM side are slurm-cluster.sh reap's.
cmd_reap() {
    need_root
    local name owner
    while read -r name owner; do
        [ ! -e "/run/resnet-slurm/$name" ] || continue
        echo "netns-cluster: cluster '$name' outlived its owner (pid $owner): taking it down"
        CLUSTER=$name STATE_DIR=/run/resnet-netns/$name "$self" down
    done < <(orphaned_clusters /run/resnet-netns)
}

cmd_with() { need_root; with_cluster cmd_up cmd_down on_node0 "$@"; }
on_node0() { in_node 0 "$@"; }

sub=${1:-}; shift || true
case "$sub" in
    up) cmd_up "$@";;
    down) cmd_down;;
    kill) cmd_kill;;
    run) cmd_run "$@";;
    exec) cmd_exec "$@";;
    agent) cmd_agent "$@";;
    link) cmd_link "$@";;
    rate) cmd_rate "$@";;
    status) cmd_status;;
    with) cmd_with "$@";;
    reap) cmd_reap;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2;;
esac
