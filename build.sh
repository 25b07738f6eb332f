#!/usr/bin/env bash
# build.sh: install what is missing (Debian 12 packages), build, and optionally run.
#   ./build.sh          build build/kerngen and build/libkerngen.a
#   ./build.sh test     build and run the test suite (cmocka; one binary per module)
#   ./build.sh run      build and run the main job: check every graph, print a table
#   ./build.sh asan     build with AddressSanitizer + UBSan into build-asan/ and run the tests
#   ./build.sh bench    build and run the benchmark (bench/)
#   ./build.sh fuzz     build with libFuzzer + ASan + UBSan (clang) into build-fuzz/ and fuzz the
#                       .npy reader and the spec loader, FUZZ_SECONDS each (default 60)
set -euo pipefail
cd "$(dirname "$0")"

mode="${1:-build}"
PACKAGES=(gcc clang make tcc libtcc-dev liblua5.4-dev libcmocka-dev)
# the tests also build firmware for a Cortex-M4F and run it under qemu (tests/test_identity.c)
case "$mode" in
  test|asan) PACKAGES+=(gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm) ;;
  fuzz) PACKAGES+=(libclang-rt-14-dev) ;; # libFuzzer
esac
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "build.sh: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

OUT=build
CFLAGS_EXTRA=()
if [ "$mode" = asan ]; then
  OUT=build-asan
  # -Wno-format-truncation: gcc 12 reports a false "null format string" in instrumented code
  CFLAGS_EXTRA=(-fsanitize=address,undefined -fno-omit-frame-pointer -Wno-format-truncation)
fi
if [ "$mode" = fuzz ]; then
  OUT=build-fuzz
  CC=clang
  CFLAGS_EXTRA=(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
fi
CC=${CC:-gcc}
WARN=(-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpedantic -Werror)
CFLAGS=(-std=c99 -O2 -g "${WARN[@]}" -Iruntime -I/usr/include/lua5.4 -I"$OUT" "${CFLAGS_EXTRA[@]}")
LIBS=(-llua5.4 -lm -lpthread -ldl)

mkdir -p "$OUT"
$CC -std=c99 -O2 "${WARN[@]}" -I/usr/include/lua5.4 -o "$OUT/embed" gen/embed.c -llua5.4 -lm -ldl
"$OUT/embed" "$OUT/kg_embedded.c" --bytecode gen/*.lua --text graphs/*.lua templates/*.in
# compile in parallel, stop at the first failure
wait_all() { local pid rc=0; for pid in "$@"; do wait "$pid" || rc=1; done; return $rc; }
objs=(); pids=()
for src in runtime/*.c "$OUT/kg_embedded.c"; do
  obj="$OUT/$(basename "${src%.c}").o"
  $CC "${CFLAGS[@]}" -c "$src" -o "$obj" & pids+=($!)
  objs+=("$obj")
done
wait_all "${pids[@]}"
# libtcc cannot survive a failed allocation (it calls exit() or crashes in its cleanup): our copy
# of it allocates and exits through kg__tcc_* (runtime/kg_jit.c), so running out of memory
# cannot end the host process. The copy goes into libkerngen.a, so users link no -ltcc.
rm -rf "$OUT/tcc" && mkdir -p "$OUT/tcc"
redefine=()
for f in malloc calloc realloc free exit; do redefine+=(--redefine-sym "$f=kg__tcc_$f"); done
objcopy "${redefine[@]}" "$($CC -print-file-name=libtcc.a)" "$OUT/tcc/libtcc.a"
(cd "$OUT/tcc" && ar x libtcc.a && rm libtcc.a)
rm -f "$OUT/libkerngen.a"
ar rcs "$OUT/libkerngen.a" "${objs[@]}" "$OUT"/tcc/*.o
$CC "${CFLAGS[@]}" -o "$OUT/kerngen" gen/kerngen.c "$OUT/libkerngen.a" "${LIBS[@]}"

run_tests() {
  local t bin log passed=0 failed=0 broken=0
  local pids=()
  for t in tests/test_*.c; do
    $CC "${CFLAGS[@]}" -D_POSIX_C_SOURCE=200809L -o "$OUT/$(basename "${t%.c}")" "$t" "$OUT/libkerngen.a" \
      "${LIBS[@]}" -lcmocka & pids+=($!)
  done
  wait_all "${pids[@]}"
  log="$OUT/test.log"
  : > "$log"
  echo "== examples"
  "$OUT/examples/layernorm_jit" 4 8 && "$OUT/examples/layernorm_aot" || broken=$((broken + 1))
  for t in tests/test_*.c; do
    bin="$OUT/$(basename "${t%.c}")"
    echo "== $bin" | tee -a "$log"
    # cmocka prints its summary on stderr: merge it
    if ! KERNGEN_BIN="$OUT/kerngen" "$bin" 2>&1 | tee -a "$log"; then broken=$((broken + 1)); fi
  done
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s += $1} END {print s + 0}')
  failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s += $1} END {print s + 0}')
  echo "total: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$broken" -eq 0 ]
}

# examples: built (and later run by `test`) so they cannot rot
mkdir -p "$OUT/examples"
$CC "${CFLAGS[@]}" -o "$OUT/examples/layernorm_jit" examples/layernorm_jit.c "$OUT/libkerngen.a" "${LIBS[@]}"
"$OUT/kerngen" emit layernorm rows=4 dim=8 --dtype f32 --out "$OUT/examples" >/dev/null
$CC -std=c99 -O2 "${WARN[@]}" "${CFLAGS_EXTRA[@]}" -I"$OUT/examples" -o "$OUT/examples/layernorm_aot" \
  examples/layernorm_aot.c "$OUT/examples/layernorm_4x8_f32.c" -lm

# Each target runs FUZZ_SECONDS on a corpus in $OUT (seeded from the repository's .npy files and
# specs); a crash, hang, leak or failed oracle stops it with exit 1 and a reproducer file.
run_fuzz() {
  local t secs=${FUZZ_SECONDS:-60}
  for t in npy spec; do
    $CC "${CFLAGS[@]}" -fsanitize=fuzzer -D_POSIX_C_SOURCE=200809L -o "$OUT/fuzz_$t" "tests/fuzz/fuzz_$t.c" \
      "$OUT/libkerngen.a" "${LIBS[@]}"
  done
  mkdir -p "$OUT/corpus_npy" "$OUT/corpus_spec" "$OUT/findings"
  local opts=(-max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -artifact_prefix="$OUT/findings/" -print_final_stats=1)
  echo "== fuzz_npy (${secs} s)"
  "$OUT/fuzz_npy" "${opts[@]}" "$OUT/corpus_npy" tests/golden
  echo "== fuzz_spec (${secs} s)"
  "$OUT/fuzz_spec" "${opts[@]}" -dict=tests/fuzz/spec.dict "$OUT/corpus_spec" graphs tests/specs/ops tests/specs/bad
  echo "fuzz: no finding in ${secs} s per target"
}

case "$mode" in
  build) echo "built $OUT/kerngen and $OUT/libkerngen.a" ;;
  test|asan) run_tests ;;
  run) "$OUT/kerngen" check --all ;;
  bench) bash bench/run.sh "$OUT" ;;
  fuzz) run_fuzz ;;
  *) echo "usage: ./build.sh [build|test|run|asan|bench|fuzz]" >&2; exit 2 ;;
esac
