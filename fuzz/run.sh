#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, AddressSanitizer + UndefinedBehaviorSanitizer), seeds them from
# real exports (fuzz/seeds.py) and runs each for a bounded time, one after the other; prints one summary
# line per target (executions, edges covered, crashes) and exits 1 if any target crashed.
#
#   fuzz/run.sh [SECONDS_PER_TARGET (default 60)] [WORK_DIR (default fuzz/build)]
#   FUZZ_TARGETS=fuzz_s8 fuzz/run.sh ...     # some of the targets only
#
# Crashing inputs are kept in WORK_DIR/crashes/<target>/; replay one with WORK_DIR/bin/<target> FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
work="$(realpath -m "${2:-fuzz/build}")"
runtime=firmware/runtime
command -v clang >/dev/null || { echo "fuzz/run.sh: clang not found (./install.sh installs it)" >&2; exit 2; }
mkdir -p "$work/bin"

declare -A sources=(
  [fuzz_reader]="$runtime/src/dqa_reader.c"
  [fuzz_writer]="$runtime/src/dqa_reader.c $runtime/src/dqa_writer.c"
  [fuzz_s8]="$(ls $runtime/src/*_s8.c | tr '\n' ' ')"
)
targets=(${FUZZ_TARGETS:-fuzz_reader fuzz_writer fuzz_s8})
for target in "${targets[@]}"; do
  # shellcheck disable=SC2086 # the source lists are word lists
  clang -std=c99 -g -O1 -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I "$runtime/include" -I "$runtime/src" "fuzz/$target.c" ${sources[$target]} -o "$work/bin/$target"
done

[ -d "$work/seeds/fuzz_s8" ] || python fuzz/seeds.py "$work/seeds"

status=0
for target in "${targets[@]}"; do
  corpus="$work/corpus/$target" crashes="$work/crashes/$target"
  mkdir -p "$corpus" "$crashes"
  cp -n "$work/seeds/$target"/* "$corpus"/
  log="$work/$target.log"
  "$work/bin/$target" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$crashes/" >"$log" 2>&1 || true
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  edges=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  features=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  found=$(find "$crashes" -type f | wc -l)
  echo "$target: ${seconds} s, ${runs:-0} executions, ${edges:-0} edges (${features:-0} features), corpus $(ls "$corpus" | wc -l), crashes $found"
  if [ "$found" -ne 0 ]; then
    status=1
    grep -m 3 -E 'ERROR|runtime error|SUMMARY' "$log" >&2 || true
  fi
done
exit $status
