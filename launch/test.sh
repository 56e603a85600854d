#!/usr/bin/env bash
# The test suite: installs/checks the packages (with PyTorch for the parity tests), builds the
# release binary the multi-rank tests launch under mpirun, then runs every test target.
# Example:  launch/test.sh            (extra arguments go to `swift test`, e.g. --filter NNTests)
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_TORCH=1 launch/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export RESNET_BIN="$PWD/.build/release/resnet"
swift build --build-tests 2>&1 | tail -1
swift test --skip-build "$@"
