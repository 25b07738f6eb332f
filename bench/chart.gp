# bench/chart.gp: results.tsv as a bar chart (gnuplot; run.sh passes rows, tsv and png).
# One bar per row from 1 to kerngen AOT / fastest peer (log scale: up = kerngen slower), coloured
# by pass; a dot for kerngen AOT / bound.
set terminal pngcairo size (300 + 16 * rows), 760 font ",9" noenhanced
set output png
set datafile separator "\t"
set datafile missing "nan"
set logscale y 2
set format y "%g"
set ytics (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256)
set grid ytics
set xrange [-1:rows]
set xtics rotate by 50 right font ",8" nomirror
set bmargin 14
set key outside top center horizontal
set ylabel "time / time of the fastest peer (log scale; below 1: kerngen faster)"
set title "kerngen AOT vs the fastest of hand -O3, hand -Ofast, oneDNN (one run; see bench.txt)"
color(p) = p eq "fwd" ? 0x4477aa : p eq "bwd" ? 0xcc3311 : p eq "jvp" ? 0x228833 : 0xaa3377
lo(r) = r < 1 ? r : 1
hi(r) = r > 1 ? r : 1
plot tsv skip 1 using 0:(1):($0-0.4):($0+0.4):(lo($13)):(hi($13)):(color(strcol(3))):xtic(1) \
       with boxxyerror fs solid 0.85 noborder lc rgb variable notitle, \
     NaN with boxes fs solid lc rgb "#4477aa" title "fwd", \
     NaN with boxes fs solid lc rgb "#cc3311" title "bwd", \
     NaN with boxes fs solid lc rgb "#228833" title "jvp", \
     NaN with boxes fs solid lc rgb "#aa3377" title "train", \
     tsv skip 1 using 0:14 with points pt 7 ps 0.7 lc rgb "black" title "kerngen AOT / bound", \
     1 with lines lc rgb "#555555" lw 1.5 notitle
