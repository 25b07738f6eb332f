#!/usr/bin/env bash
# bench/run.sh: build and run the kerngen benchmark, print its tables.
#   bash bench/run.sh [BUILD_DIR]     (default build; ./build.sh bench runs it)
# Needs BUILD_DIR/kerngen and BUILD_DIR/libkerngen.a (./build.sh), gcc and tcc. Adds a oneDNN
# baseline when <oneapi/dnnl/dnnl.h> exists (apt-get install libdnnl-dev) unless BENCH_NO_ONEDNN
# is set; runs without it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" 2>/dev/null && pwd) ||
  { echo "bench: no build directory ${1:-$ROOT/build}: run ./build.sh first" >&2; exit 2; }
cd "$ROOT"
for f in "$BUILD/kerngen" "$BUILD/libkerngen.a"; do
  [ -e "$f" ] || { echo "bench: $f is missing: run ./build.sh first" >&2; exit 2; }
done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# the kernels bench.c includes (eps and gelu given explicitly, not taken from the defaults)
emit() { "$BUILD/kerngen" emit "$@" --out "$TMP/gen" >/dev/null; }
emit layernorm rows=8 dim=64 eps=1e-6
emit layernorm rows=64 dim=768 eps=1e-6
emit layernorm rows=256 dim=1024 eps=1e-6
emit layernorm rows=64 dim=768 eps=1e-6 --dtype f64
emit layernorm rows=64 dim=768 eps=1e-6 --vjp closed --name layernorm_64x768_f32_closed
emit rmsnorm rows=64 dim=768 eps=1e-6
emit ffn dmodel=256 dff=1024 gelu=tanh
emit ffn dmodel=256 dff=1024 gelu=erf --name ffn_256x1024_f32_erf
for approx in erf tanh; do
  emit bench/gelu.lua rows=8 dim=256 approx=$approx --name gelu_${approx}_8x256_f32
  emit bench/gelu.lua rows=64 dim=3072 approx=$approx --name gelu_${approx}_64x3072_f32
done
# the same kernels unrolled as the JIT does (--unroll auto; rows "... unrolled"); emit defaults to loops
emit layernorm rows=8 dim=64 eps=1e-6 --unroll auto --name layernorm_8x64_f32_unrolled
emit ffn dmodel=256 dff=1024 gelu=tanh --unroll auto --name ffn_256x1024_f32_unrolled

# the kernels and bench.c (with the hand loops) as an AOT user would build them: no fast-math
STRICT=(-std=c99 -O3 -march=native -ffp-contract=off -Wall -Wextra)
FAST=(-std=c99 -O3 -march=native -ffast-math -Wall -Wextra)
objs=() pids=()
compile() { local out=$1; shift; "$@" -o "$out" & pids+=($!); objs+=("$out"); }
for c in "$TMP"/gen/*.c; do
  compile "${c%.c}.o" gcc "${STRICT[@]}" -c "$c"
done
compile "$TMP/hand_fast.o" gcc "${FAST[@]}" -c bench/hand_fast.c
compile "$TMP/hand_tcc.o" tcc -DHAND_TCC -c bench/hand_fast.c
DNNL_CFLAGS=() DNNL_LIBS=()
if [ -z "${BENCH_NO_ONEDNN:-}" ] && [ -e /usr/include/oneapi/dnnl/dnnl.h ]; then
  compile "$TMP/onednn.o" gcc "${STRICT[@]}" -c bench/onednn.c
  DNNL_CFLAGS=(-DHAVE_ONEDNN) DNNL_LIBS=(-ldnnl)
else
  echo "bench: no oneDNN column (needs /usr/include/oneapi/dnnl/dnnl.h: apt-get install libdnnl-dev)"
fi
compile "$TMP/bench.o" gcc "${STRICT[@]}" "${DNNL_CFLAGS[@]}" -Iruntime -I"$TMP/gen" \
  -c bench/bench.c
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ $rc -eq 0 ] || { echo "bench: compilation failed" >&2; exit 1; }
# -z noexecstack: tcc's object has no .note.GNU-stack section
gcc -o "$TMP/bench" "${objs[@]}" "$BUILD/libkerngen.a" -llua5.4 -ltcc -lm -lpthread -ldl \
  "${DNNL_LIBS[@]}" -Wl,-z,noexecstack

echo "kerngen benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
  "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "gcc $(gcc -dumpfullversion), $(tcc -v 2>&1 | head -1)"
# single-threaded comparison: oneDNN would otherwise use every core through OpenMP
OMP_NUM_THREADS=1 "$TMP/bench"
