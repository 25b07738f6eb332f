/* hand_fast.c: the loops of hand.h in a translation unit of their own, so that run.sh can
 * compile exactly the same source with other flags than bench.c:
 *   gcc -O3 -march=native -ffast-math   -> fast_* ("what a fast-math compiler would do")
 *   tcc -DHAND_TCC                      -> tcc_*  (the hand loops under tcc, for the JIT) */
#ifdef HAND_TCC
#define HAND(name) tcc_##name
#else
#define HAND(name) fast_##name
#endif
#include "hand.h"
