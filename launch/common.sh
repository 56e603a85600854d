# Shared by the launch scripts: find (or build) the release binary.
# RESNET_BIN overrides the binary; otherwise .build/release/resnet is built if missing.
repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }
ensure_binary() {
    local root; root=$(repo_root)
    if [ -n "${RESNET_BIN:-}" ]; then echo "$RESNET_BIN"; return; fi
    if [ ! -x "$root/.build/release/resnet" ]; then
        (cd "$root" && swift build -c release --product resnet >&2) || { echo "build failed" >&2; exit 1; }
    fi
    echo "$root/.build/release/resnet"
}

# `SCRIPT with [N] -- CMD ...` of the test-cluster scripts (netns-cluster.sh, slurm-cluster.sh):
# UP N (default 2), CMD through RUN, DOWN on exit — also when UP or CMD fails or on a signal.
# CMD runs in the background and is waited for, so that a signal to the script runs the traps
# (and the teardown) at once instead of after CMD ends.
with_cluster() {
    local up=$1 down=$2 run=$3; shift 3
    local n=2
    if [ $# -gt 0 ] && [ "$1" != "--" ]; then n=$1; shift; fi
    [ "${1:-}" = "--" ] && shift
    [ $# -ge 1 ] || { echo "usage: $0 with [N] -- COMMAND [ARGS...]" >&2; exit 2; }
    trap "$down >/dev/null 2>&1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    "$up" "$n" || { echo "$(basename "$0"): 'up' failed; tearing down" >&2; exit 1; }
    trap "$down >/dev/null 2>&1" EXIT   # UP may have set an EXIT trap of its own
    local status=0 child
    ( "$run" "$@" ) <&0 & child=$!
    wait "$child" || status=$?
    exit "$status"
}

# "NAME PID" of each test cluster under BASE (/run/resnet-netns, /run/resnet-slurm) whose owner
# process (CLUSTER_OWNER, kept in BASE/NAME/owner) is gone: what `reap` takes down.
orphaned_clusters() {
    local d owner
    for d in "$1"/*/; do
        [ -f "$d/owner" ] || continue
        owner=$(cat "$d/owner")
        if [[ "$owner" =~ ^[0-9]+$ ]] && ! kill -0 "$owner" 2>/dev/null; then echo "$(basename "$d") $owner"; fi
    done
}
