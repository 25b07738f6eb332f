/* onednn.h: the optional oneDNN baseline (onednn.c, Debian libdnnl-dev 2.6, C API, f32 only),
 * built only with -DHAVE_ONEDNN. oneDNN 2.6 has layer normalization, batch normalization,
 * eltwise GELU (erf and tanh) and inner product; it has no RMSNorm, no group normalization and no
 * forward-mode derivatives, so those rows have no oneDNN column. */
#ifndef BENCH_ONEDNN_H
#define BENCH_ONEDNN_H

#include "hand_call.h"

typedef struct onednn_job onednn_job;

/* The primitives computing c->op in pass c->pass (HAND_FWD: inference; HAND_BWD: backward from
 * statistics or activations saved by one training forward run here, outside the timing;
 * HAND_TRAIN: training forward then backward), bound to c's float buffers (c->save and c->ws
 * are not used: oneDNN keeps its own saved tensors). NULL when oneDNN has no such primitive;
 * NULL with a message on stderr when oneDNN refuses. */
onednn_job *onednn_create(const hand_call *c);
int onednn_run(onednn_job *j);                /* 0 on success */
const char *onednn_impl(const onednn_job *j); /* the implementations oneDNN chose */
void onednn_free(onednn_job *j);
const char *onednn_version(void);             /* e.g. "2.6.3" */

#endif
