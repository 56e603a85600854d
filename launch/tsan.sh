#!/usr/bin/env bash
# Runs the tests that exercise threads under ThreadSanitizer (docs/fuzzing.md):
#   NNTests.ParallelTests     every threaded layer (Conv2D's batch split and per-worker weight
#                             gradients, BatchNorm, pooling, ReLU, a whole ResNet step) with
#                             Parallel.workers > 1 (Sources/NN/Core/Parallel.swift)
#   NNTests.Conv2DTests       Conv2D's worker plans (image grouping, accumulation)
#   NNTests.WinogradTests, WinogradWeightGradientTests /testConcurrentWorkers
#                             both Winograd forms' passes on concurrent workers, each with its own scratch
#   DistributedTests.ShimTests/testBucket*, /testLocalCommunicator*
#                             GradientBuckets (Sources/Distributed/GradientBuckets.swift) over
#                             LocalCommunicator and a simulated world of 3 ranks
#   TrainingTests.TrainingRunTests/testLossGoesDownAndOutputsAreWritten
#                             a short training run: threaded backward marking gradient buckets
#                             over LocalCommunicator, checkpoints, evaluation
# Builds into .build-tsan. Fails on any TSan report (halt_on_error) or test failure.
# Usage:  launch/tsan.sh [extra swift test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
FILTER='NNTests\.ParallelTests|NNTests\.Conv2DTests|NNTests\.Winograd(WeightGradient)?Tests/testConcurrentWorkers|DistributedTests\.ShimTests/testBucket|DistributedTests\.ShimTests/testLocalCommunicator|TrainingTests\.TrainingRunTests/testLossGoesDownAndOutputsAreWritten'
start=$(date +%s)
echo "== building the tests with -sanitize=thread (.build-tsan)"
swift build --build-tests --sanitize=thread --scratch-path .build-tsan 2>&1 | grep -E 'error|warning: .*data race|Compiling|Build' | grep -v '^\[' | tail -5
echo "== built in $(( $(date +%s) - start )) s"
log=.build-tsan/tsan.log
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
set +e
swift test --skip-build --sanitize=thread --scratch-path .build-tsan --filter "$FILTER" "$@" >"$log" 2>&1
rc=$?
set -e
grep -E 'Executed [0-9]+ tests' "$log" | tail -1
if grep -q 'WARNING: ThreadSanitizer' "$log"; then
  echo "!! ThreadSanitizer reported a problem (full log: $log):"
  grep -A30 'WARNING: ThreadSanitizer' "$log" | head -60
  exit 1
fi
if [ $rc -ne 0 ]; then
  echo "!! the tests failed under TSan (exit $rc; full log: $log)"
  grep -E 'error|failed|Fatal' "$log" | head -20
  exit 1
fi
echo "== TSan: no reports; $(( $(date +%s) - start )) s in all"
