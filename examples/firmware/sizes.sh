#!/bin/sh
# sizes.sh SIZE OUT: the flash/RAM table of OUT/train.elf, from arm-none-eabi-size (SIZE), the
# symbol sizes (nm next to it) and gcc's -fstack-usage file of the kernel (OUT/block.su).
set -eu
SIZE=$1 OUT=$2
NM=$(echo "$SIZE" | sed 's/size$/nm/')

# section SECTION FILE: its size in bytes (0 when absent)
section() { "$SIZE" -A "$2" | awk -v s="$1" '$1 == s { n += $2 } END { print n + 0 }'; }
# symbols FILE NAME...: the sum of those symbols' sizes
symbols() {
  f=$1; shift
  "$NM" -S -t d "$f" | awk -v names=" $* " 'NF == 4 && index(names, " " $4 " ") { n += $2 } END { print n + 0 }'
}
row() { printf '  %-52s %7s\n' "$1" "$2"; }

code=$(section .text "$OUT/block.o")
tables=$(section .rodata "$OUT/block.o")
flash=$(( $(section .text "$OUT/train.elf") + $(section .ARM.exidx "$OUT/train.elf") + $(section .data "$OUT/train.elf") ))
step=$(symbols "$OUT/train.elf" x y y_cot opt param adam saved ws)
task=$(symbols "$OUT/train.elf" teacher target)
ram=$(( $(section .data "$OUT/train.elf") + $(section .bss "$OUT/train.elf") ))
stack=$(awk -F'\t' '$2 > 0 { sub(/.*:/, "", $1); printf "%s%s %s", sep, $1, $2; sep = ", " }' "$OUT/block.su")

echo "flash and RAM of $OUT/train.elf, bytes:"
echo "flash"
row "kernel code: forward_train, train (block.o .text)" "$code"
row "w1, w2 baked by --const (block.o .rodata)" "$tables"
row "the rest: train.c, startup.c, newlib's printf" "$((flash - code - tables))"
row "total (.text, .ARM.exidx, .data's initial values)" "$flash"
echo "RAM"
row "training step: x y y_cot opt param adam saved ws" "$step"
row "the task: teacher, target" "$task"
row "the rest: newlib, SysTick counter, alignment" "$((ram - step - task))"
row "total static (.data, .bss); the stack comes on top" "$ram"
echo "stack frames of the kernels (block.su; helpers without one left out): $stack"
