#!/usr/bin/env bash
# The test suite: installs/checks the packages (with PyTorch for the parity tests, SLURM and munge
# for SlurmTests), builds the release binary the multi-rank tests launch under mpirun, then runs
# every test target, and the
# layer tests (NNTests) a second time under another OpenBLAS kernel, so a tolerance that holds
# only for one kernel's summation order fails on every machine, not only on the one whose CPU
# OpenBLAS happens to map to that kernel.
# Example:  launch/test.sh            (extra arguments go to `swift test`, e.g. --filter NNTests)
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_TORCH=1 WITH_TENSORBOARD=1 WITH_SLURM=1 launch/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export RESNET_BIN="$PWD/.build/release/resnet"
swift build -c release --product single-process-example 2>&1 | tail -1   # run by CommandLineTests/ExampleTests
swift build --build-tests 2>&1 | tail -1
swift test --skip-build "$@"

# The second kernel: Prescott (plain SSE3, the fallback Debian's OpenBLAS 0.3.21 uses for CPUs
# it does not know) unless that is the kernel already in use, then Haswell (AVX2) where the CPU
# has AVX2. A user-set OPENBLAS_CORETYPE is the first run's kernel.
if [ $# -eq 0 ]; then
  first=$(OPENBLAS_VERBOSE=2 "$RESNET_BIN" --help 2>&1 | sed -n 's/^Core: //p' | head -1)
  second=Prescott
  if [ "$first" = Prescott ]; then
    if grep -qw avx2 /proc/cpuinfo; then second=Haswell; else second=; fi
  fi
  if [ -n "$second" ]; then
    echo "== layer tests again under OPENBLAS_CORETYPE=$second (first run: ${first:-unknown})"
    OPENBLAS_CORETYPE=$second swift test --skip-build --filter NNTests
  else
    echo "== no second OpenBLAS kernel on this CPU (first run: ${first:-unknown}; no AVX2): layer tests ran once"
  fi
fi

# Fuzzing and ThreadSanitizer (docs/fuzzing.md): every fuzz target for FUZZ_SECONDS (60) from
# its seed corpus, then the threaded tests under TSan; about 7.5 minutes together on 2 cores.
if [ $# -eq 0 ]; then
  launch/fuzz.sh "${FUZZ_SECONDS:-60}"
  launch/tsan.sh
fi
