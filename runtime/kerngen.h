/* kerngen: generate shape-specialized C for neural-network layers, JIT it with libtcc or
 * write it out for ahead-of-time builds.
 *
 * Typical use:
 *     kg_request req = {0};
 *     const char *params[] = {"rows=8", "dim=64"};
 *     req.graph = "layernorm"; req.params = params; req.nparams = 2; req.dtype = "f64";
 *     kg_kernel *k; char *err;
 *     if (kg_generate(&req, &k, &err) || kg_compile(k, &err)) { puts(err); free(err); }
 *     void *args[] = {x, gamma, beta, y, ws};      // kg_arg_at() tells the order and sizes
 *     int domain_failed = kg_call(k, KG_FORWARD, args, 5);
 *     kg_free(k);
 *
 * Every function is safe to call from several threads on different kernels; a compiled kernel
 * may be called concurrently (generated code has no mutable state). Errors come back as a
 * status and a malloc'd message the caller frees. */
#ifndef KERNGEN_H
#define KERNGEN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" { /* the same header serves C++ (C linkage) */
#endif

#define KG_VERSION "0.1.0"

typedef enum {
    KG_OK = 0,
    KG_ECHECK = 1,    /* a numerical check failed (kg_check) */
    KG_EINPUT = 2,    /* bad graph, parameter, option, spec or file: the message says which */
    KG_EINTERNAL = 3, /* a generator or compiler bug: the message has a traceback */
    KG_ENOMEM = 4     /* out of memory; the message may be NULL. Nothing was leaked or half-made */
} kg_status;

/* The functions of a kernel, in the order the generator defines them (gen/pipeline.lua):
 *   forward        outputs from inputs
 *   vjp            reverse mode: the gradient of every input from output cotangents
 *   jvp            forward mode: output tangents from input tangents
 *   forward_train  forward that also writes what vjp_saved reads (the spec's saved values:
 *                  mean and inverse std of a normalization, an FFN's pre-activations)
 *   vjp_saved      vjp reading those instead of recomputing them; same results as vjp
 *   train          a training step (only with kg_request.train): vjp_saved, then the
 *                  optimizer updates each trainable input in place from its gradient */
typedef enum { KG_FORWARD, KG_VJP, KG_JVP, KG_FORWARD_TRAIN, KG_VJP_SAVED, KG_TRAIN, KG_NPASSES } kg_pass;

/* What an argument is to its function. A saved value is KG_ROLE_SAVE in forward_train and
   KG_ROLE_SAVED in vjp_saved and train; KG_ROLE_HYPER is train's `opt` (the optimizer's
   hyperparameters); KG_ROLE_PARAM (a trainable input) and KG_ROLE_STATE (an optimizer state
   tensor) are read and updated in place by train. kg_role_reads/kg_role_writes say which. */
typedef enum {
    KG_ROLE_INPUT, KG_ROLE_COTANGENT, KG_ROLE_TANGENT, KG_ROLE_SAVED, KG_ROLE_HYPER,
    KG_ROLE_OUTPUT, KG_ROLE_GRAD, KG_ROLE_OUTPUT_TANGENT, KG_ROLE_SAVE,
    KG_ROLE_PARAM, KG_ROLE_STATE
} kg_role;
int kg_role_reads(kg_role role);  /* the function reads the argument */
int kg_role_writes(kg_role role); /* the function writes it */

/* "forward", "vjp", ...; NULL for an unknown pass. kg_pass_from_name: -1 for an unknown name. */
const char *kg_pass_name(kg_pass pass);
int kg_pass_from_name(const char *name);

/* An input baked into the generated code (kg_request.consts, kerngen --const NAME=FILE): a
   `static const float|double <name>_<input>[count]` table at file scope of the .c and of the
   JIT unit, read by every function. It is no argument of any pass (kg_nargs/kg_arg_at do not
   list it, the header has no size macro for it), gets no gradient (vjp, vjp_saved) and takes
   no tangent (jvp): a constant, as frozen weights in flash. The values are printed so that
   they round-trip, so JIT and AOT builds compute the same bits. */
typedef struct {
    const char *name;        /* an input of the graph, e.g. "w1"; each at most once */
    const void *data;        /* count elements in C order: float for dtype "f32", double for "f64";
                                finite. Copied by kg_generate (the caller keeps ownership) */
    size_t count;            /* must equal the input's element count */
} kg_const;

typedef struct {
    const char *graph;       /* graph name (kg_list) or path to a spec file */
    const char *const *params; /* "NAME=VALUE" dims and attrs; missing ones take defaults */
    int nparams;
    const char *dtype;       /* "f32" (default) or "f64" */
    const char *semantics;   /* "torchlean" (default) or "pytorch": attr defaults */
    const char *unroll;      /* "auto" (default: best under the tcc JIT), "full" or "none"
                                (loops: best for gcc/clang AOT builds); results are identical */
    const char *vjp_form;    /* "derived" (default, the tape) or "closed" (spec's closed form) */
    const char *jvp_form;    /* likewise */
    const char *name;        /* C name prefix; NULL: <graph>_<dims>_<dtype> */
    const char *dump_ir;     /* NULL or forward|vjp|jvp|simplify (graph IR) or lower|fuse (loop
                                IR): the IR after that pass, see KG_TEXT_IR */
    const char *fuse;        /* "auto" (default) or "none": loop fusion off, for diagnosis
                                (results are identical) */
    const char *fma;         /* "off" (default) or "on": a*b + c written as fma/fmaf (one
                                rounding; different results, in the name as _fma). Fast where
                                the build has hardware FMA (x86-64 -mfma or -march=x86-64-v3,
                                AArch64, Cortex-M4F/M7 in f32), a libm call elsewhere; needs a
                                correctly rounded fma: newlib's double fma is not (README,
                                "Fused multiply-add") */
    unsigned passes;         /* bit mask of (1u << KG_FORWARD), ... to generate; 0: all of them.
                                Fewer passes generate faster; kg_call on a missing one gives
                                KG_CALL_NO_PASS */
    int check_ir;            /* run the IR checker between passes */
    const char *wrt;         /* NULL, or comma-separated input names: vjp, vjp_saved and train
                                output only these gradients (frozen inputs get no code) */
    const char *train;       /* NULL, or comma-separated trainable inputs: adds the train pass */
    const char *optimizer;   /* train's update: "sgd" (default), "momentum", "adam", "adamw"
                                (PyTorch's formulas; README "Training") */
    const char *jit;         /* the tier kg_compile builds (results are bit-identical in all):
                                "tcc" (default): libtcc in memory, ready in milliseconds;
                                "cc": the system C compiler ($CC, default cc; -O3 -march=native
                                -ffp-contract=off) into a shared object, through an on-disk
                                cache; unroll defaults to "none" (loops, which gcc vectorizes);
                                "auto": tcc at once, cc built in a background thread, and
                                kg_call switches to it when it is ready. When cc cannot work,
                                tcc runs and kg_tier_note says why */
    const kg_const *consts;  /* inputs baked into the code as static const tables (above); a bad
                                name, count or value is KG_EINPUT naming the input */
    int nconsts;
    const char *target;      /* the processor the loops are shaped for (results are identical):
                                "simd" (default; x86-64, AArch64: jammed products, rows side by
                                side, the lanes' sums as vector loops; with unroll "auto", tcc's
                                schedule, nothing is jammed) or "scalar" (cores without
                                vector registers, Cortex-M: none of these, the sums written out;
                                the firmware example's training step 2.5x fewer instructions) */
} kg_request;

typedef struct {
    const char *cname;  /* C parameter name, e.g. "x_grad" */
    const char *name;   /* tensor name, e.g. "x" */
    const char *file;   /* name used for .npy files, e.g. "x.grad" */
    const char *init;   /* test-data hint: "normal" or "positive" (spec; optimizer state) */
    kg_role role;
    int ndim;
    size_t shape[8];
    size_t count;       /* elements */
} kg_arg;

typedef enum {
    KG_TEXT_NAME, KG_TEXT_HEADER, KG_TEXT_SOURCE, KG_TEXT_JIT_SOURCE, KG_TEXT_HEADER_FILE,
    KG_TEXT_SOURCE_FILE, KG_TEXT_PARAMS, KG_TEXT_IR
} kg_text_kind;

typedef struct kg_kernel kg_kernel;

/* Generates C for the requested passes (all by default). On success *out owns everything; free
   with kg_free. */
kg_status kg_generate(const kg_request *req, kg_kernel **out, char **err);

/* JIT-compiles the kernel in the tier kg_request.jit chose: libtcc in memory (serialized by a
 * process-wide mutex), or the system C compiler through the cache (kg_tier_note); under "auto"
 * it returns once tcc is done and the cc tier follows in the background. A cc tier that cannot
 * be built is not an error: tcc runs instead. Compiling twice does nothing. */
kg_status kg_compile(kg_kernel *k, char **err);

/* The tier kg_call runs now: "tcc", "cc", or "none" before kg_compile. Under "auto" it turns
 * from "tcc" to "cc" once, while other threads may be calling the kernel: calls in flight finish
 * in the old code, which lives until kg_free. */
const char *kg_tier(const kg_kernel *k);

/* Waits until a background compile ("auto") has finished, well or not, and returns kg_tier(k);
 * at once for the other tiers. kg_free does not wait: it cancels the compile. */
const char *kg_wait(const kg_kernel *k);

/* How the cc tier went, or NULL (tcc requested, or a background compile still running): on
 * success the cache hit or the compile ("cc tier: cache hit, <file>"); when tcc runs instead,
 * why ("cc tier unavailable, running tcc: no C compiler 'cc' on PATH (set CC)"). The library
 * prints nothing: show it to your user. The text lives as long as the kernel. */
const char *kg_tier_note(const kg_kernel *k);

/* Whether the cc tier can work here, compiling nothing: KG_OK and *note naming the compiler and
 * the cache directory, or KG_EINPUT and *note saying why not (no compiler, a compiler that does
 * not run, a cache directory refused or not creatable). *note is malloc'd. The cache directory
 * is $KERNGEN_CACHE_DIR, else $XDG_CACHE_HOME/kerngen, else $HOME/.cache/kerngen; it must be
 * yours and writable by nobody else. $KERNGEN_CACHE_MAX bounds its size (default 256M). */
kg_status kg_cc_status(char **note);

/* Arguments of a pass in call order; the workspace follows them. */
int kg_nargs(const kg_kernel *k, kg_pass pass);
const kg_arg *kg_arg_at(const kg_kernel *k, kg_pass pass, int i);
size_t kg_ws_size(const kg_kernel *k, kg_pass pass);   /* elements */
size_t kg_elem_size(const kg_kernel *k);                /* 4 or 8 */
int kg_has_closed_form(const kg_kernel *k, kg_pass pass);
int kg_has_pass(const kg_kernel *k, kg_pass pass);     /* the pass was generated */

/* Position of an argument in kg_call's array: by its name as in kerngen run's files ("x",
 * "y.cotangent", "x.grad", "mean.saved"), by its C name ("x_grad"), or "ws" (the workspace,
 * last); -1 when the pass has no such argument. The one way to bind arguments by name:
 *     args[kg_arg_index(k, KG_VJP, "x.grad")] = dx; */
int kg_arg_index(const kg_kernel *k, kg_pass pass, const char *name);

/* Calls a compiled pass. args[0..n-1] as kg_arg_at says and args[n] the workspace, so nargs =
 * kg_nargs(k, pass) + 1. Every argument of at least one element needs a buffer, and so does
 * the workspace when kg_ws_size > 0 (NULL otherwise is fine). Returns 0; 1 when a domain
 * hypothesis failed (a standard deviation or norm not > 0 and finite: the outputs are not
 * meaningful); KG_CALL_NO_PASS (-1) when the pass was not generated or not compiled;
 * KG_CALL_BAD_ARGS (-2) when nargs is wrong or a needed buffer is NULL (nothing is run). */
enum { KG_CALL_NO_PASS = -1, KG_CALL_BAD_ARGS = -2 };
int kg_call(const kg_kernel *k, kg_pass pass, void *const *args, int nargs);

const char *kg_text(const kg_kernel *k, kg_text_kind which);
void kg_stats(const kg_kernel *k, size_t *statements, size_t *bytes);
size_t kg_table_bytes(const kg_kernel *k);  /* bytes of the static const tables (kg_request.consts) */

/* Writes <dir>/<name>.h and <dir>/<name>.c as one set: new temporary files (never following a
 * planted link), renamed into place under a lock on the directory, so concurrent writers of the
 * same names leave one writer's pair, never a mix. A default name (kg_request.name NULL) says
 * graph, dims, preset, non-default attrs, forms and dtype; files of that name made for another
 * request (other passes, say) are not replaced: KG_EINPUT, unless the name was given. */
kg_status kg_write_files(const kg_kernel *k, const char *dir, char **err);

void kg_free(kg_kernel *k);

/* The graph catalogue as text; the graph names one per line (aliases left out); Graphviz of
 * a pass ("forward", "vjp" or "jvp"). */
kg_status kg_list(char **text, char **err);
kg_status kg_graphs(char **text, char **err);
kg_status kg_dot(const kg_request *req, const char *pass, char **text, char **err);

#ifdef __cplusplus
}
#endif

#endif
