#!/usr/bin/env bash
# Builds the libFuzzer targets (clang++, ASan + UBSan, in build-fuzz/) and runs each for a bounded time,
# starting from the committed seed corpus (tests/fuzz/seeds/<target>/) plus the kept crash inputs
# (tests/fuzz/regressions/<target>/). New crash, hang (-timeout) or out-of-memory (-rss_limit_mb) inputs
# are written to build-fuzz/findings/<target>/; once the reader is fixed, copy each into
# tests/fuzz/regressions/<target>/, where test_fuzz_regressions replays it in the normal build.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]   (default 60 seconds each, every target)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(safetensors npz model_config sae_cfg tokenizer explanations)
BUILD=build-fuzz
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DSAETRAJ_FUZZ=ON -DSAETRAJ_TESTS=OFF > /dev/null
cmake --build "$BUILD" -j"$(nproc)" --target "${TARGETS[@]/#/fuzz_}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for target in "${TARGETS[@]}"; do
  corpus="$BUILD/corpus/$target" findings="$BUILD/findings/$target"
  mkdir -p "$corpus" "$findings"
  seeds=(tests/fuzz/seeds/"$target")
  [ -d "tests/fuzz/regressions/$target" ] && seeds+=("tests/fuzz/regressions/$target")
  echo "== fuzz_$target for ${SECONDS_EACH} s"
  if ! "$BUILD/tests/fuzz/fuzz_$target" "$corpus" "${seeds[@]}" -max_total_time="$SECONDS_EACH" -timeout=10 \
       -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 -artifact_prefix="$findings/" \
       > "$BUILD/fuzz_$target.log" 2>&1; then
    status=1
    echo "fuzz_$target FAILED: see $BUILD/fuzz_$target.log and $findings/"
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^Done " "$BUILD/fuzz_$target.log" || true
  tail -n 1 "$BUILD/fuzz_$target.log"
done
exit "$status"
