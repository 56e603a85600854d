#!/usr/bin/env bash
# A SLURM cluster on one machine, on top of the netns test cluster (launch/netns-cluster.sh):
# munge (a key of its own), slurmctld in a namespace of its own on the cluster's bridge (the
# "login/controller node"), and one slurmd in each node's namespace, pinned to the node's cores.
# Needs root, iproute2 and Debian's SLURM 22.05 (slurmctld slurmd slurm-client munge; WITH_SLURM=1
# launch/setup.sh installs them).
#
#   CLUSTER defaults to 'slurm' here.
#
#   launch/slurm-cluster.sh up [N]          netns cluster of N nodes (default 2) + munge + slurmctld + slurmd's;
#                                           waits until `sinfo` shows every node idle
#   launch/slurm-cluster.sh run -- CMD ...  CMD on the controller node (sbatch, squeue, sinfo, scancel,
#                                           scontrol reach slurmctld from there), SLURM_CONF exported
#   launch/slurm-cluster.sh link NODE down|up  netns-cluster.sh's `link`, and on `up` the controller's
#                                           neighbour cache flushed too (else slurmctld cannot reach the
#                                           node for seconds and it stays down*)
#   launch/slurm-cluster.sh status          sinfo + squeue
#   launch/slurm-cluster.sh down            stop everything (slurmd's, slurmctld, munged), delete the
#                                           namespaces and the state folder; works on a half-made cluster
#   launch/slurm-cluster.sh with [N] -- CMD up, CMD on the controller node, down (also on failure or a signal)
#   launch/slurm-cluster.sh reap            take down every SLURM (and netns) test cluster whose
#                                           CLUSTER_OWNER process is gone
#
# The netns cluster's own subcommands (link, rate, exec, kill) work on it as usual with the same CLUSTER.
#
# Environment: CLUSTER, CLUSTER_SUBNET, CORES, RATE as for netns-cluster.sh;
#   SLURM_STATE  folder of the SLURM side (default /run/resnet-slurm/$CLUSTER): slurm.conf,
#                munge/ (key, socket, log), ctld/ (StateSaveLocation), spool/<node>/ (SlurmdSpoolDir),
#                log/ (slurmctld.log, slurmd-<node>.log), tmp/<node>/ (the node's /tmp)
#   UP_TIMEOUT   seconds to wait for the nodes to be idle (default 60)
#
# Layout: controller namespace ${CLUSTER}-ctl, address CLUSTER_SUBNET.5, cabled to bridge port pc.
# slurmctld runs there under the host's hostname (SlurmctldHost=<hostname>(<addr>): slurmctld only
# runs on a host whose name is a SlurmctldHost). slurmd's run with -N n<i>, NodeAddr = the node's
# address, CPUs = the node's cores (the netns cluster's CORES). No accounting database;
# ProctrackType=proctrack/linuxproc (several slurmd's on one machine cannot share the cgroup
# tree), TaskPlugin=task/none (the node's processes are already confined to its cores by taskset).
# Each node has a /tmp of its own (jobs there see $SLURM_STATE/tmp/n<i> as /tmp): put run folders
# on a shared path (the repository, /var/tmp, ...), not in /tmp, as on a real cluster.
set -euo pipefail

CLUSTER=${CLUSTER:-slurm}   # not netns-cluster.sh's default (rn): both can be up side by side
export CLUSTER
net_subnet=${CLUSTER_SUBNET:-10.213.0.0/24}
[[ "$net_subnet" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)\.0/24$ ]] || { echo "slurm-cluster: CLUSTER_SUBNET must be A.B.C.0/24" >&2; exit 1; }
prefix=${net_subnet%.0/24}
ctl_addr=$prefix.5
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/common.sh"
netns="$here/netns-cluster.sh"
NETNS_STATE=${STATE_DIR:-/run/resnet-netns/$CLUSTER}
SLURM_STATE=${SLURM_STATE:-/run/resnet-slurm/$CLUSTER}
conf=$SLURM_STATE/slurm.conf
ctl_ns="$CLUSTER-ctl"
sw="$CLUSTER-sw"

die() { echo "slurm-cluster: $*" >&2; exit 1; }

need() {
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, daemons)"
    local missing=()
    for b in munged slurmctld slurmd sinfo sbatch srun; do command -v "$b" >/dev/null || missing+=("$b"); done
    [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: install slurmctld slurmd slurm-client munge (WITH_SLURM=1 launch/setup.sh)"
}

in_ctl() { SLURM_CONF=$conf ip netns exec "$ctl_ns" "$@"; }

write_conf() {
    local n=$1 i cores
    {
        echo "# written by launch/slurm-cluster.sh for cluster '$CLUSTER'"
        echo "ClusterName=$CLUSTER"
        echo "SlurmctldHost=$(hostname)($ctl_addr)"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "AuthType=auth/munge"
        echo "CredType=cred/munge"
        echo "AuthInfo=socket=$SLURM_STATE/munge/munge.socket,cred_expire=10"   # cred_expire: a requeued job may start again after cred_expire + 1 s (default 120)
        echo "StateSaveLocation=$SLURM_STATE/ctld"
        echo "SlurmdSpoolDir=$SLURM_STATE/spool/%n"
        echo "SlurmctldPidFile=$SLURM_STATE/slurmctld.pid"
        echo "SlurmdPidFile=$SLURM_STATE/slurmd-%n.pid"
        echo "SlurmctldLogFile=$SLURM_STATE/log/slurmctld.log"
        echo "SlurmdLogFile=$SLURM_STATE/log/slurmd-%n.log"
        echo "SlurmctldPort=6817"
        echo "SlurmdPort=6818"
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "AccountingStorageType=accounting_storage/none"
        echo "JobCompType=jobcomp/none"
        echo "SchedulerType=sched/backfill"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core"
        echo "MpiDefault=none"
        echo "ReturnToService=2"
        echo "SlurmdParameters=config_overrides"
        echo "SlurmctldTimeout=30"
        echo "SlurmdTimeout=30"
        echo "InactiveLimit=0"
        echo "KillWait=30"
        echo "MinJobAge=600"
        echo "JobRequeue=0"   # only jobs submitted with --requeue are requeueable
        for ((i = 0; i < n; i++)); do
            cores=$(tr ',' '\n' < "$NETNS_STATE/cores-n$i" | wc -l)
            echo "NodeName=n$i NodeAddr=$prefix.$((10 + i)) CPUs=$cores Boards=1 SocketsPerBoard=1 CoresPerSocket=$cores ThreadsPerCore=1 RealMemory=1 State=UNKNOWN"
        done
        echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
    } > "$conf"
}

cmd_up() {
    need
    local n=${1:-2} i
    [ ! -e "$SLURM_STATE" ] || die "cluster '$CLUSTER' is already up ($SLURM_STATE); run 'down' first"
    # From here on, a failed `up` leaves nothing behind.
    trap 'rc=$?; if [ $rc -ne 0 ]; then echo "slurm-cluster: up failed; tearing down" >&2; cmd_down >/dev/null 2>&1; fi' EXIT
    mkdir -p "$SLURM_STATE"/{munge,ctld,log,spool}
    [ -z "${CLUSTER_OWNER:-}" ] || echo "$CLUSTER_OWNER" > "$SLURM_STATE/owner"
    "$netns" up "$n"
    chmod 700 "$SLURM_STATE/munge"
    # The controller node: a namespace on the bridge.
    ip netns add "$ctl_ns"
    ip -n "$ctl_ns" link set lo up
    ip -n "$sw" link add pc type veth peer name ec
    ip -n "$sw" link set ec netns "$ctl_ns"
    ip -n "$ctl_ns" link set ec name eth0
    ip -n "$ctl_ns" addr add "$ctl_addr/24" dev eth0
    ip -n "$ctl_ns" link set eth0 up
    ip -n "$sw" link set pc master br0
    ip -n "$sw" link set pc up

    # munge with a key of its own (the unix socket is reached from every namespace).
    dd if=/dev/urandom bs=1 count=1024 of="$SLURM_STATE/munge/munge.key" status=none
    chmod 400 "$SLURM_STATE/munge/munge.key"
    daemon "$SLURM_STATE/log/start.log" munged --force --key-file="$SLURM_STATE/munge/munge.key" --socket="$SLURM_STATE/munge/munge.socket" \
        --pid-file="$SLURM_STATE/munge/munged.pid" --log-file="$SLURM_STATE/munge/munged.log" \
        --seed-file="$SLURM_STATE/munge/munged.seed" \
        || die "munged did not start: $(tail -3 "$SLURM_STATE/munge/munged.log" 2>/dev/null)"

    write_conf "$n"
    for ((i = 0; i < n; i++)); do mkdir -p "$SLURM_STATE/spool/n$i"; done
    # slurmctld in the controller namespace (-c: a clean state, -i: ignore an old state file).
    daemon "$SLURM_STATE/log/start.log" env SLURM_CONF="$conf" ip netns exec "$ctl_ns" slurmctld -c -f "$conf" || die "slurmctld did not start: $(tail -5 "$SLURM_STATE/log/slurmctld.log" 2>/dev/null)"
    for ((i = 0; i < n; i++)); do
        # `ip netns exec` remounts /sys for the namespace, without /sys/fs/cgroup; slurmd 22.05
        # refuses to start without a file system there even when no cgroup plugin is used (there
        # is no CgroupPlugin=disabled before 23.02). An empty tmpfs, in the private mount
        # namespace of this slurmd only, is enough for it (it is then taken for cgroup v1).
        # /tmp: each node has one of its own ($SLURM_STATE/tmp/n<i>, bound over /tmp for slurmd
        # and everything it starts), as real nodes do: SLURM's PMIx plugin makes
        # /tmp/spmix_appdir_<uid>_<job>.<step> on every node of a step and fails when it exists
        # (a shared /tmp), and Open MPI's session folders are per node too.
        # Folders under /tmp that every node must see (the repository and the binary when they
        # live there, as in a fresh clone in /tmp, plus SLURM_SHARED_TMP) are bound through: staged
        # outside /tmp, then moved onto the same path inside the node's own /tmp.
        mkdir -p "$SLURM_STATE/tmp/n$i"; chmod 1777 "$SLURM_STATE/tmp/n$i"
        local shared=() p
        for p in "$repo" "$(dirname "${RESNET_BIN:-/nonexistent/x}")" ${SLURM_SHARED_TMP:-}; do
            case "$p" in "$repo"/*) continue ;; /tmp/?*) [ -d "$p" ] && shared+=("$p") ;; esac
        done
        daemon "$SLURM_STATE/log/start.log" "$netns" exec "n$i" -- sh -c '
            stage=$0; node_tmp=$1; n=$2; shift 2
            mount -t tmpfs -o size=64k,mode=755 slurm-nocgroup /sys/fs/cgroup && mkdir /sys/fs/cgroup/systemd &&
            mount -t cgroup -o none,name=systemd slurm-nocgroup /sys/fs/cgroup/systemd || exit 1
            i=0; for p in "$@"; do [ $i -lt $n ] || break; mkdir -p "$stage/$i" && mount --bind "$p" "$stage/$i" || exit 1; i=$((i + 1)); done
            mount --bind "$node_tmp" /tmp || exit 1
            i=0; for p in "$@"; do [ $i -lt $n ] || break; mkdir -p "$p" && mount --move "$stage/$i" "$p" || exit 1; i=$((i + 1)); done
            shift $n; exec "$@"' "$SLURM_STATE/share/n$i" "$SLURM_STATE/tmp/n$i" "${#shared[@]}" "${shared[@]}" \
            slurmd -f "$conf" -N "n$i" \
            || die "slurmd on n$i did not start: $(tail -5 "$SLURM_STATE/log/slurmd-n$i.log" 2>/dev/null)"
    done
    touch "$SLURM_STATE/up"
    # Wait for every node to be idle.
    local deadline=$(( SECONDS + ${UP_TIMEOUT:-60} )) idle=0 states=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        states=$(in_ctl sinfo -h -N -o '%N %t' 2>&1 || true)
        idle=$(awk '$2 == "idle" {c++} END {print c + 0}' <<<"$states")
        [ "$idle" -eq "$n" ] && break
        sleep 1
    done
    [ "$idle" -eq "$n" ] || die "nodes not idle after ${UP_TIMEOUT:-60} s: $(tr '\n' ' ' <<<"$states"); slurmctld.log ends: $(tail -2 "$SLURM_STATE/log/slurmctld.log" 2>/dev/null | tr '\n' ' ')"
    echo "slurm cluster '$CLUSTER' up: controller $(hostname) at $ctl_addr (namespace $ctl_ns), $n node(s) idle"
    echo "  SLURM_CONF=$conf   (clients: launch/slurm-cluster.sh run -- sbatch ...)"
}

# Runs a daemon with no file descriptor of ours but 0-2, and those on /dev/null and a log file: a
# caller that waits for our output to end (or, like Foundation's Process, for a descriptor it
# gave us to close) must not wait for the daemons.
daemon() {
    local log=$1; shift
    (
        for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done 2>/dev/null
        exec "$@" </dev/null >>"$log" 2>&1
    )
}

pid_of() { [ -r "$1" ] && cat "$1" 2>/dev/null || true; }

stop_pid() {   # SIGTERM, up to 5 s, SIGKILL
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 25); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
}

cmd_down() {
    [ "$(id -u)" -eq 0 ] || die "needs root"
    local p
    # The nodes' processes (slurmd, slurmstepd, the ranks) go with the netns cluster.
    "$netns" down >/dev/null 2>&1 || true
    # slurmctld: everything in the controller namespace.
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ctl_ns"; then
        for p in $(ip netns pids "$ctl_ns" 2>/dev/null); do kill -TERM "$p" 2>/dev/null || true; done
        sleep 0.5
        for p in $(ip netns pids "$ctl_ns" 2>/dev/null); do stop_pid "$p"; done
        ip netns del "$ctl_ns" 2>/dev/null || true
    fi
    stop_pid "$(pid_of "$SLURM_STATE/slurmctld.pid")"
    stop_pid "$(pid_of "$SLURM_STATE/munge/munged.pid")"
    rm -rf "$SLURM_STATE"
    return 0
}

cmd_run() {
    [ "${1:-}" = "--" ] && shift
    [ $# -ge 1 ] || die "usage: $0 run -- COMMAND [ARGS...]"
    [ -e "$SLURM_STATE/up" ] || die "cluster '$CLUSTER' is not up"
    export NETNS_CLUSTER=$CLUSTER NETNS_STATE_DIR=$NETNS_STATE NETNS_SUBNET=$net_subnet
    export SLURM_CONF=$conf
    exec ip netns exec "$ctl_ns" "$@"
}

cmd_link() {
    "$netns" link "$@"
    [ "${2:-}" = up ] && ip -n "$ctl_ns" neigh flush all 2>/dev/null || true
}

cmd_status() {
    [ -e "$SLURM_STATE/up" ] || { echo "slurm cluster '$CLUSTER' is not up"; return 0; }
    in_ctl sinfo -N -l || true
    in_ctl squeue || true
}

cmd_reap() {
    [ "$(id -u)" -eq 0 ] || die "needs root"
    local name owner
    while read -r name owner; do
        echo "slurm-cluster: cluster '$name' outlived its owner (pid $owner): taking it down"
        CLUSTER=$name SLURM_STATE=/run/resnet-slurm/$name "$here/slurm-cluster.sh" down
    done < <(orphaned_clusters /run/resnet-slurm)
    "$netns" reap
}

cmd_with() { with_cluster cmd_up cmd_down cmd_run "$@"; }

sub=${1:-}; shift || true
case "$sub" in
    up) cmd_up "$@"; trap - EXIT;;
    down) cmd_down;;
    run) cmd_run "$@";;
    status) cmd_status;;
    link) cmd_link "$@";;
    with) cmd_with "$@";;
    reap) cmd_reap;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2;;
esac
