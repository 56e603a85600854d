#!/usr/bin/env bash
# Regenerates Sources/TensorBoard/Generated/*.pb.swift from proto/*.proto with protoc and
# swift-protobuf's protoc-gen-swift (the version Package.swift pins). Builds do not run this:
# the generated code is committed. Needs Debian's protobuf-compiler.
# Example:  launch/generate-proto.sh
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/.*swift-protobuf.*exact: "\([0-9.]*\)".*/\1/p' Package.swift)
command -v protoc >/dev/null || { echo "protoc not found: apt-get install -y protobuf-compiler" >&2; exit 1; }
work=${PROTOC_GEN_SWIFT_DIR:-/tmp/swift-protobuf-$version}
if [ ! -x "$work/.build/release/protoc-gen-swift" ]; then
    [ -d "$work" ] || git clone -q --branch "$version" https://github.com/apple/swift-protobuf "$work"
    (cd "$work" && swift build -c release --product protoc-gen-swift)
fi
protoc --plugin="$work/.build/release/protoc-gen-swift" --swift_out=Sources/TensorBoard/Generated \
    --swift_opt=Visibility=Internal -I proto proto/*.proto
echo "generated: $(ls Sources/TensorBoard/Generated)"
