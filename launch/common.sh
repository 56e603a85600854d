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
