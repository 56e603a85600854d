#!/usr/bin/env bash
# Fuzzes the readers of untrusted input with libFuzzer + AddressSanitizer (docs/fuzzing.md):
#   idx          IDX/gzip reader (Sources/Data/IDXFormat.swift, CompressedFile.swift)
#   cifar        CIFAR-10 binary reader (Sources/Data/CIFAR10Format.swift)
#   safetensors  SafeTensors.decode + load, CheckpointStore.verify
#   config       the YAML config loader (RunConfig.parse, --set overrides)
# The project's modules are compiled straight from Sources/ with swiftc (instrumented), Yams
# from the package checkout, into .build-fuzz/; each target then runs SECONDS (default 60)
# from its seed corpus in Fuzz/corpus/<target>. Any crash, trap, leak, out-of-memory
# (> 2 GB) or slow input (> 10 s) fails the script, printing the input that did it.
# Usage:  launch/fuzz.sh [SECONDS] [TARGET ...]      e.g. launch/fuzz.sh 30 idx config
#         (SECONDS is per target; 0 only builds)
# Replay: SWIFT_BACKTRACE=enable=no .build-fuzz/bin/fuzz-idx CRASH_FILE
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
[ $# -gt 0 ] && shift
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(idx cifar safetensors config)

OUT=.build-fuzz
OBJ=$OUT/obj
BIN=$OUT/bin
mkdir -p "$OBJ" "$BIN"
SWIFTC=$(command -v swiftc)
CLANG=$(dirname "$(readlink -f "$SWIFTC")")/clang
[ -x "$CLANG" ] || CLANG=$(command -v clang)

# Yams' sources: a package checkout of any of the build folders, else resolve one here.
YAMS=
for d in "${YAMS_DIR:-}" $OUT/checkouts/Yams .build/checkouts/Yams .build*/checkouts/Yams; do
  if [ -n "$d" ] && [ -f "$d/Sources/Yams/Parser.swift" ]; then YAMS=$d/Sources; break; fi
done
if [ -z "$YAMS" ]; then
  swift package resolve --scratch-path $OUT >/dev/null
  YAMS=$OUT/checkouts/Yams/Sources
fi

# swift-protobuf's sources (TensorBoard's messages), the same way.
PROTOBUF=
for d in $OUT/checkouts/swift-protobuf .build/checkouts/swift-protobuf .build*/checkouts/swift-protobuf; do
  if [ -f "$d/Sources/SwiftProtobuf/Message.swift" ]; then PROTOBUF=$d; break; fi
done
if [ -z "$PROTOBUF" ]; then
  swift package resolve --scratch-path $OUT >/dev/null
  PROTOBUF=$OUT/checkouts/swift-protobuf
fi

MPI_FLAGS=$(pkg-config --cflags ompi-c | sed 's/-I/-Xcc -I/g')
MPI_LIBS=$(pkg-config --libs ompi-c)
SAN=(-sanitize=fuzzer,address)
FLAGS=("${SAN[@]}" -O -g -wmo -parse-as-library -enable-testing -I "$OBJ" -I Sources/CBLAS -I Sources/CZlib
       -I Sources/CMPI $MPI_FLAGS -I "$YAMS/CYaml/include" -Xcc -DYAML_DECLARE_STATIC -D SWIFT_PACKAGE)

# stale OUTPUT INPUT...: true when OUTPUT is missing or older than an input.
stale() {
  local out=$1; shift
  [ -f "$out" ] || return 0
  [ -n "$(find "$@" -newer "$out" -print -quit)" ]
}

# module NAME "DEPENDENCIES" SOURCES...: one instrumented object + .swiftmodule per module, in
# dependency order; rebuilt when a source or a dependency's object is newer.
module() {
  local name=$1 deps=() d; shift
  for d in $1; do deps+=("$OBJ/$d.o"); done
  shift
  if stale "$OBJ/$name.o" "$@" "${deps[@]}"; then
    echo "== compiling $name"
    swiftc "${FLAGS[@]}" ${MODULE_FLAGS:-} -module-name "$name" -emit-module -emit-module-path "$OBJ/$name.swiftmodule" \
      -c "$@" -o "$OBJ/$name.o.tmp"
    mv "$OBJ/$name.o.tmp" "$OBJ/$name.o"
  fi
}

start=$(date +%s)
for c in "$YAMS"/CYaml/src/*.c; do
  o=$OBJ/CYaml-$(basename "$c" .c).o
  if stale "$o" "$c"; then
    "$CLANG" -fsanitize=fuzzer-no-link,address -O1 -g -DYAML_DECLARE_STATIC -I "$YAMS/CYaml/include" -c "$c" -o "$o"
  fi
done
module Trace "" Sources/Trace/*.swift
module Kernels "" Sources/Kernels/*.swift   # the baseline build only (NN's KernelSet then has no other)
module NN "Trace Kernels" $(find Sources/NN -name '*.swift' | sort)
module Data "NN" Sources/Data/*.swift
module Yams "" "$YAMS"/Yams/*.swift
module Distributed "Trace" Sources/Distributed/*.swift
MODULE_FLAGS="-package-name swift_protobuf" module SwiftProtobuf "" $(find "$PROTOBUF/Sources/SwiftProtobuf" -name '*.swift' | sort)
module TensorBoard "SwiftProtobuf" $(find Sources/TensorBoard -name '*.swift' | sort)
module Coordinator "NN Data Distributed" Sources/Coordinator/*.swift
module Training "NN Data Distributed Coordinator TensorBoard Trace Yams" Sources/Training/*.swift

# target NAME SOURCE OBJECTS...
target() {
  local name=$1 src=$2; shift 2
  if stale "$BIN/fuzz-$name" "$src" Fuzz/Support.swift "$@"; then
    echo "== linking fuzz-$name"
    swiftc "${SAN[@]}" -use-ld=lld -O -g -parse-as-library -I "$OBJ" -I Sources/CBLAS -I Sources/CZlib -I Sources/CMPI $MPI_FLAGS \
      -I "$YAMS/CYaml/include" "$src" Fuzz/Support.swift "$@" -lz -lopenblas $MPI_LIBS -o "$BIN/fuzz-$name"
  fi
}
BASE=("$OBJ/Data.o" "$OBJ/NN.o" "$OBJ/Kernels.o" "$OBJ/Trace.o")
for t in "${TARGETS[@]}"; do
  case $t in
    idx) target idx Fuzz/FuzzIDX.swift "${BASE[@]}" ;;
    cifar) target cifar Fuzz/FuzzCIFAR.swift "${BASE[@]}" ;;
    safetensors) target safetensors Fuzz/FuzzSafeTensors.swift "$OBJ/Coordinator.o" "$OBJ/Distributed.o" "${BASE[@]}" ;;
    config) target config Fuzz/FuzzConfig.swift "$OBJ/Training.o" "$OBJ/Coordinator.o" "$OBJ/Distributed.o" \
              "$OBJ/TensorBoard.o" "$OBJ/SwiftProtobuf.o" \
              "${BASE[@]}" "$OBJ/Yams.o" "$OBJ"/CYaml-*.o ;;
    *) echo "unknown fuzz target '$t' (idx, cifar, safetensors, config)" >&2; exit 2 ;;
  esac
done
echo "== built in $(( $(date +%s) - start )) s"
[ "$SECS" = 0 ] && exit 0   # build only

# Run each target; new interesting inputs go to .build-fuzz/corpus/<target> (the seeds in
# Fuzz/corpus stay as committed), crashing inputs to .build-fuzz/artifacts/<target>/.
failed=()
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:symbolize=1}
# Swift's own crash backtracer (it reads the crashed stack) trips ASan; libFuzzer reports the trap.
export SWIFT_BACKTRACE=enable=no
for t in "${TARGETS[@]}"; do
  work=$OUT/corpus/$t
  art=$OUT/artifacts/$t/
  mkdir -p "$work" "$art"
  opts=(-max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -detect_leaks=1 -print_final_stats=1
        -artifact_prefix="$art")
  [ -f "Fuzz/$t.dict" ] && opts+=(-dict="Fuzz/$t.dict")
  case $t in cifar) opts+=(-max_len=16384) ;; *) opts+=(-max_len=8192) ;; esac
  echo "== fuzzing $t for $SECS s"
  before=$(ls "$art" | wc -l)
  log=$OUT/fuzz-$t.log
  "$BIN/fuzz-$t" "${opts[@]}" "$work" "Fuzz/corpus/$t" >"$log" 2>&1 &
  pid=$!
  rc=0; wait $pid || rc=$?
  rm -rf "/dev/shm/resnet-fuzz-$pid"   # the target's scratch folder (left behind when it crashed)
  if [ $rc -eq 0 ]; then
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" | tr '\n' ' '; echo
  else
    echo "!! fuzz-$t FAILED (log: $log)"
    grep -E 'ERROR: |Fatal error|SUMMARY|==[0-9]+==|Test unit written|Slowest unit' "$log" | head -20
    failed+=("$t")
  fi
  after=$(ls "$art" | wc -l)
  if [ "$after" -gt "$before" ]; then
    echo "   reproduce with: SWIFT_BACKTRACE=enable=no $BIN/fuzz-$t $(ls -t "$art"* | head -1)"
  fi
done
echo "== fuzzing took $(( $(date +%s) - start )) s in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
