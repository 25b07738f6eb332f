#!/usr/bin/env bash
# build.sh: build kerngen from Debian 12 packages (installing the ones a mode needs), then run.
#
# usage: ./build.sh [MODE] [NAME=VALUE...]
#   build (default)  build build/kerngen and build/libkerngen.a
#   test             build and run the test suite (cmocka; one binary per module)
#   run              build and run the main job: check every graph, print a table
#   install          build, then install into DESTDIR + PREFIX: bin/kerngen, lib/libkerngen.a,
#                    include/kerngen.h and kg_check.h, lib/pkgconfig/kerngen.pc and
#                    lib/cmake/kerngen/ (find_package(kerngen), kerngen_add_kernel)
#   asan             build with AddressSanitizer + UBSan into build-asan/ and run the tests
#   bench            build and run the benchmark (bench/; installs libdnnl-dev and gnuplot-nox
#                    when it can, for the oneDNN column and the chart, and runs without them)
#   firmware         build, then train a pre-norm block on a Cortex-M4F under qemu-system-arm
#                    (examples/firmware): the loss as it falls, the flash/RAM table, and the
#                    same training on the host (AOT and JIT) ending with the same bits
#   fuzz             build with libFuzzer + ASan + UBSan (clang) into build-fuzz/ and fuzz the
#                    .npy reader and the spec loader, FUZZ_SECONDS each (default 60)
#   help, -h, --help this text; installs and builds nothing
#
# NAME=VALUE, as arguments or from the environment:
#   PREFIX (default /usr/local), DESTDIR (staging root for packagers, not recorded in any
#   installed file), BINDIR, LIBDIR, INCLUDEDIR (default PREFIX/bin, PREFIX/lib, PREFIX/include)
#   CC (default gcc; fuzz: clang), CPPFLAGS, CFLAGS, LDFLAGS: added after kerngen's own flags
#   KERNGEN_WERROR=1 turns warnings into errors (CI sets it; a newer compiler may warn)
# A build whose inputs (sources, flags, compiler) did not change since the last one is reused,
# so `sudo ./build.sh install` after `./build.sh` builds nothing as root.
set -euo pipefail
cd "$(dirname "$0")"

usage() { sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; }

# ---- arguments: checked before any work
mode=""
for arg in "$@"; do
  case "$arg" in
    -h|--help|help) usage; exit 0 ;;
    build|test|run|install|asan|bench|firmware|fuzz)
      [ -z "$mode" ] || { echo "build.sh: two modes: $mode and $arg" >&2; usage >&2; exit 2; }
      mode=$arg ;;
    PREFIX=*|DESTDIR=*|BINDIR=*|LIBDIR=*|INCLUDEDIR=*|CC=*|CPPFLAGS=*|CFLAGS=*|LDFLAGS=*|KERNGEN_WERROR=*)
      printf -v "${arg%%=*}" '%s' "${arg#*=}"; export "${arg%%=*}" ;;
    *) echo "build.sh: unknown mode or argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done
mode=${mode:-build}
PREFIX=${PREFIX:-/usr/local}
[ "$PREFIX" = / ] || PREFIX=${PREFIX%/}
BINDIR=${BINDIR:-$PREFIX/bin} LIBDIR=${LIBDIR:-$PREFIX/lib} INCLUDEDIR=${INCLUDEDIR:-$PREFIX/include}
DESTDIR=${DESTDIR:-}
for d in PREFIX BINDIR LIBDIR INCLUDEDIR; do
  case "${!d}" in
    /*[[:space:]]*) echo "build.sh: $d=${!d}: white space in install paths breaks pkg-config" >&2; exit 2 ;;
    /*) ;;
    *) echo "build.sh: $d=${!d}: must be an absolute path" >&2; exit 2 ;;
  esac
done

# ---- Debian packages: what this mode needs, nothing more
PACKAGES=(gcc libtcc-dev liblua5.4-dev)
case "$mode" in
  # the tests compile generated code with clang, g++ and for a Cortex-M4F (run under qemu),
  # build CMake and pkg-config projects against an installed tree, and render dot output
  test|asan) PACKAGES+=(libcmocka-dev clang g++ make cmake ninja-build pkg-config gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm graphviz) ;;
  bench) PACKAGES+=(tcc) ;;
  firmware) PACKAGES+=(make gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm) ;;
  fuzz) PACKAGES+=(clang libclang-rt-14-dev) ;; # libFuzzer
esac
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "build.sh: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# optional for the benchmark: oneDNN (its column) and gnuplot (the chart); it runs without them
if [ "$mode" = bench ]; then
  optional=()
  dpkg-query -W -f='${Status}' libdnnl-dev 2>/dev/null | grep -q "install ok installed" || optional+=(libdnnl-dev)
  command -v gnuplot >/dev/null || optional+=(gnuplot-nox)
  if [ ${#optional[@]} -gt 0 ]; then
    echo "build.sh: installing ${optional[*]} (optional for the benchmark)"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${optional[@]}" >/dev/null; } ||
      echo "build.sh: could not install ${optional[*]}; the benchmark runs without them"
  fi
fi

# ---- flags: ours, then the user's (so theirs win)
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
read -ra USER_CFLAGS <<< "${CPPFLAGS:-} ${CFLAGS:-}"
read -ra USER_LDFLAGS <<< "${LDFLAGS:-}"
WARN=(-Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpedantic)
[ "${KERNGEN_WERROR:-0}" = 1 ] && WARN+=(-Werror)
KG_CFLAGS=(-std=c99 -O2 -g "${WARN[@]}" -Iruntime -I/usr/include/lua5.4 -I"$OUT" "${CFLAGS_EXTRA[@]}" "${USER_CFLAGS[@]}")
LIBS=(-llua5.4 -lm -lpthread -ldl)
cc_link() { $CC "${KG_CFLAGS[@]}" "${USER_LDFLAGS[@]}" "$@"; }
# compile in parallel, stop at the first failure
wait_all() { local pid rc=0; for pid in "$@"; do wait "$pid" || rc=1; done; return $rc; }

# What the build reads: when none of it changed, the last build stands.
fingerprint() {
  printf '%s\n' "$CC" "${KG_CFLAGS[@]}" -- "${USER_LDFLAGS[@]}"
  $CC --version 2>&1 | sed -n 1p
  find build.sh gen runtime graphs templates examples "$($CC -print-file-name=libtcc.a)" -type f \
    -printf '%p %s %T@\n' | LC_ALL=C sort
}

build() {
  rm -f "$OUT/.fingerprint"
  mkdir -p "$OUT"
  $CC -std=c99 -O2 "${WARN[@]}" "${USER_CFLAGS[@]}" "${USER_LDFLAGS[@]}" -I/usr/include/lua5.4 -o "$OUT/embed" \
    gen/embed.c -llua5.4 -lm -ldl
  "$OUT/embed" "$OUT/kg_embedded.c" --bytecode gen/*.lua --spec graphs/*.lua --text templates/*.in
  "$OUT/embed" --lua gen/mathlib.lua "$OUT/kg_vm_plain.c" "$OUT/kg_vm_fma.c"
  local objs=() pids=() src obj vm=(-O3)
  # the JIT's array math functions (gen/mathlib.lua), vectorized for AVX2 and FMA on x86-64
  # (the JIT calls them only on processors that have both)
  case "$($CC -dumpmachine 2>/dev/null)" in x86_64*) vm+=(-mavx2 -mfma) ;; esac
  for src in runtime/*.c "$OUT/kg_embedded.c" "$OUT/kg_vm_plain.c" "$OUT/kg_vm_fma.c"; do
    obj="$OUT/$(basename "${src%.c}").o"
    case "$src" in */kg_vm_*) $CC "${KG_CFLAGS[@]}" "${vm[@]}" -c "$src" -o "$obj" & ;;
      *) $CC "${KG_CFLAGS[@]}" -c "$src" -o "$obj" & ;; esac
    pids+=($!)
    objs+=("$obj")
  done
  wait_all "${pids[@]}"
  # libtcc cannot survive a failed allocation (it calls exit() or crashes in its cleanup): our
  # copy of it allocates and exits through kg__tcc_* (runtime/kg_jit.c), so running out of memory
  # cannot end the host process. The copy goes into libkerngen.a, so users link no -ltcc.
  rm -rf "$OUT/tcc" && mkdir -p "$OUT/tcc"
  local redefine=() f
  for f in malloc calloc realloc free exit; do redefine+=(--redefine-sym "$f=kg__tcc_$f"); done
  objcopy "${redefine[@]}" "$($CC -print-file-name=libtcc.a)" "$OUT/tcc/libtcc.a"
  (cd "$OUT/tcc" && ar x libtcc.a && rm libtcc.a)
  # One relocatable object in which only kg_* names stay global: libtcc's globals (tok, file,
  # expect, tcc_new, ...) cannot collide with a program's own names or with its own -ltcc.
  $CC -r -nostdlib -o "$OUT/kerngen_all.o" "${objs[@]}" "$OUT"/tcc/*.o
  objcopy --wildcard --keep-global-symbol='kg_*' "$OUT/kerngen_all.o"
  rm -f "$OUT/libkerngen.a"
  ar rcs "$OUT/libkerngen.a" "$OUT/kerngen_all.o"
  cc_link -o "$OUT/kerngen" gen/kerngen.c "$OUT/libkerngen.a" "${LIBS[@]}"

  # examples: built (and later run by `test`) so they cannot rot
  mkdir -p "$OUT/examples"
  cc_link -o "$OUT/examples/layernorm_jit" examples/layernorm_jit.c "$OUT/libkerngen.a" "${LIBS[@]}"
  "$OUT/kerngen" emit layernorm rows=4 dim=8 --dtype f32 --name layernorm_4x8_f32 --out "$OUT/examples" >/dev/null
  $CC -std=c99 -O2 "${WARN[@]}" "${CFLAGS_EXTRA[@]}" "${USER_CFLAGS[@]}" "${USER_LDFLAGS[@]}" \
    -I"$OUT/examples" -o "$OUT/examples/layernorm_aot" examples/layernorm_aot.c "$OUT/examples/layernorm_4x8_f32.c" -lm
  fingerprint > "$OUT/.fingerprint"
}

run_tests() {
  local t bin log passed=0 failed=0 broken=0
  local pids=()
  for t in tests/test_*.c; do
    cc_link -D_POSIX_C_SOURCE=200809L -o "$OUT/$(basename "${t%.c}")" "$t" "$OUT/libkerngen.a" \
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

# Installed files name PREFIX, never DESTDIR. A directory under PREFIX is written relative to
# it (${prefix}/lib in kerngen.pc; the CMake package finds its prefix from its own location, so
# an installed tree can be moved), any other as the absolute path it is.
under_prefix() { case "$1" in "$PREFIX") printf '%s' "$2" ;; "$PREFIX"/*) printf '%s/%s' "$2" "${1#"$PREFIX"/}" ;; *) printf '%s' "$1" ;; esac; }
fill() {
  local text
  text=$(<"$1")
  text=${text//@VERSION@/"$version"}
  text=${text//@PREFIX@/"$PREFIX"}
  text=${text//@SIZEOF_VOID_P@/"$($CC -dM -E - < /dev/null | sed -n 's/^#define __SIZEOF_POINTER__ //p')"}
  text=${text//@PC_LIBDIR@/"$(under_prefix "$LIBDIR" '${prefix}')"}
  text=${text//@PC_INCLUDEDIR@/"$(under_prefix "$INCLUDEDIR" '${prefix}')"}
  text=${text//@CMAKE_PREFIX@/"$cmake_prefix"}
  text=${text//@CMAKE_BINDIR@/"$(under_prefix "$BINDIR" '${_kerngen_prefix}')"}
  text=${text//@CMAKE_LIBDIR@/"$(under_prefix "$LIBDIR" '${_kerngen_prefix}')"}
  text=${text//@CMAKE_INCLUDEDIR@/"$(under_prefix "$INCLUDEDIR" '${_kerngen_prefix}')"}
  printf '%s\n' "$text" > "$2"
  chmod 644 "$2"
}
install_tree() {
  local d=$DESTDIR version cmakedir=$LIBDIR/cmake/kerngen cmake_prefix=$PREFIX rel
  version=$(sed -n 's/^#define KG_VERSION "\(.*\)"$/\1/p' runtime/kerngen.h)
  case "$cmakedir" in "$PREFIX"/*)
    rel=${cmakedir#"$PREFIX"/}
    cmake_prefix='${CMAKE_CURRENT_LIST_DIR}'
    while [ -n "$rel" ]; do cmake_prefix+=/..; case "$rel" in */*) rel=${rel#*/} ;; *) rel= ;; esac; done ;;
  esac
  install -d "$d$BINDIR" "$d$LIBDIR" "$d$INCLUDEDIR" "$d$LIBDIR/pkgconfig" "$d$cmakedir"
  install -m 755 "$OUT/kerngen" "$d$BINDIR/kerngen"
  install -m 644 "$OUT/libkerngen.a" "$d$LIBDIR/libkerngen.a"
  install -m 644 runtime/kerngen.h runtime/kg_check.h "$d$INCLUDEDIR/"
  fill packaging/kerngen.pc.in "$d$LIBDIR/pkgconfig/kerngen.pc"
  fill packaging/kerngen-config.cmake.in "$d$cmakedir/kerngen-config.cmake"
  fill packaging/kerngen-config-version.cmake.in "$d$cmakedir/kerngen-config-version.cmake"
  echo "installed kerngen $version into $d$PREFIX"
}

# The firmware example (examples/firmware/Makefile), built from scratch in $OUT/firmware: the
# emit report, the run on the emulated Cortex-M4F, the size table, then the same train.c on the
# host with the emitted kernel (AOT) and through the JIT, whose digests must be the device's.
run_firmware() {
  local dir="$PWD/$OUT/firmware" v
  local mk=(make -s -C examples/firmware OUT="$dir" KERNGEN="$PWD/$OUT/kerngen"
            LIBKERNGEN="$PWD/$OUT/libkerngen.a" KERNGEN_INCLUDE="$PWD/runtime" FIRMWARE="$PWD/firmware")
  rm -rf "$dir"
  echo "== kerngen emit (examples/firmware/Makefile)"
  "${mk[@]}" all
  echo "== training on the Cortex-M4F (qemu-system-arm -M mps2-an386 -icount shift=0)"
  timeout 120 "${mk[@]}" run | tee "$dir/device.log"
  echo "== sizes"
  "${mk[@]}" sizes
  echo "== the same train.c on the host"
  same() { grep -E '^(step|digest) ' "$1"; } # the losses and the digest of the final bits
  for v in host jit; do
    timeout 120 "${mk[@]}" "run-$v" > "$dir/$v.log"
    if [ "$(same "$dir/$v.log")" != "$(same "$dir/device.log")" ]; then
      echo "build.sh: the $v run differs from the Cortex-M4F's:" >&2
      diff "$dir/device.log" "$dir/$v.log" >&2 || true
      return 1
    fi
  done
  echo "host AOT (gcc) and host JIT (libkerngen): the same losses and the same $(grep '^digest' "$dir/device.log")"
}

# Each target runs FUZZ_SECONDS on a corpus in $OUT (seeded from the repository's .npy files and
# specs); a crash, hang, leak or failed oracle stops it with exit 1 and a reproducer file.
run_fuzz() {
  local t secs=${FUZZ_SECONDS:-60}
  for t in npy spec; do
    cc_link -fsanitize=fuzzer -D_POSIX_C_SOURCE=200809L -o "$OUT/fuzz_$t" "tests/fuzz/fuzz_$t.c" \
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

if [ -f "$OUT/.fingerprint" ] && [ "$(fingerprint)" = "$(cat "$OUT/.fingerprint")" ]; then
  echo "build.sh: $OUT is up to date"
else
  build
fi

case "$mode" in
  build) echo "built $OUT/kerngen and $OUT/libkerngen.a" ;;
  install) install_tree ;;
  test|asan) run_tests ;;
  run) "$OUT/kerngen" check --all ;;
  bench) bash bench/run.sh "$OUT" ;;
  firmware) run_firmware ;;
  fuzz) run_fuzz ;;
esac
