/* vt_autograd.h - fp32 tensors, the per-step arena, the tape, reverse mode.
 *
 * Layout conventions (PyTorch's, so fixtures and state_dicts compare 1:1):
 *   activations  (N, C, T, H, W)   a flatten matches torch.flatten(x, 1)
 *   sequences    (N, T, F)         batch first
 *
 * Memory: every activation, every tape node and whatever an op saves for its
 * backward pass is carved from the context's arena, which vt_ctx_reset()
 * rewinds once per training step. Large tensor data and activation
 * gradients come from the arena's pool instead, so they can go back within
 * the step: the layer runner releases (vt_release) what it will not read
 * again, the pool keeps what a recorded backward still reads (ops say what
 * theirs never reads: vt_node_no_data), and the reverse sweep returns a
 * released tensor's gradient once its producer has consumed it. Tensors
 * nobody releases (an op used directly, a leaf) stay until the reset.
 * Parameters, their gradients and optimizer moments live in a vt_store:
 * one long-lived block each, with named views.
 *
 * Gradients: backward functions ADD into input gradients, never assign.
 * A tensor used twice therefore receives the sum of both contributions, and
 * parameter gradients accumulate across backward calls until whoever owns
 * the step calls vt_store_zero_grad().
 */
#ifndef VT_AUTOGRAD_H
#define VT_AUTOGRAD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define VT_MAX_DIMS 5

/* Internal invariants (programmer errors). User errors never reach these:
 * the config/model builder checks shapes first and reports file and line. */
#define VT_ASSERT(cond, ...)                                                   \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: internal error: ", __FILE__, __LINE__);    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

typedef struct vt_tensor vt_tensor;
typedef struct vt_node vt_node;
typedef struct vt_ctx vt_ctx;

struct vt_tensor {
    int ndim;
    int shape[VT_MAX_DIMS];
    size_t numel;
    float *data;
    /* Same size as data. Parameters: always set (store block). Activations:
     * NULL until backward first reaches the tensor, then zeroed arena memory. */
    float *grad;
    int requires_grad;
    vt_node *node; /* op that produced it; NULL for leaves */
    /* Set by vt_release: the owner reads neither data nor grad again. */
    int released;
};

/* ==== Arena ============================================================= */

/* Chunked bump allocator. Memory stays allocated across resets so a steady
 * training loop stops calling malloc after its first step. */
typedef struct vt_arena_chunk vt_arena_chunk;
typedef struct {
    vt_arena_chunk *head; /* chunk being carved */
    vt_arena_chunk *full; /* chunks already used in this step */
    size_t chunk_size;
    size_t used, peak;    /* bytes handed out since reset, and the max ever */
    /* Buffers of pool_min bytes or more (tensor data, activation
     * gradients) come from a pool instead: a buffer can go back before the
     * step ends (vt_release, the reverse sweep), and the pool plans the
     * next steps' buffers into one region kept across resets (arena.c). */
    struct vt_pool *pool;
    size_t pool_min;
    size_t pool_used, pool_peak; /* block bytes handed out now, and the max ever */
    size_t pool_held;            /* bytes of all blocks, handed out or not */
    int pool_poison;             /* tests: NaN-fill buffers as they go back */
} vt_arena;

/* 64-byte aligned, on huge pages when large; release with free(). */
void *vt_alloc_big(size_t bytes);

void vt_arena_init(vt_arena *a, size_t chunk_size);
void *vt_arena_alloc(vt_arena *a, size_t bytes);  /* 64-byte aligned */
void *vt_arena_calloc(vt_arena *a, size_t bytes);
void vt_arena_reset(vt_arena *a);
void vt_arena_free(vt_arena *a);
/* A block of at least `bytes` (64-byte aligned), owned by the caller until
 * vt_arena_pool_drop. pins: holds from recorded backward passes; a dropped
 * block returns to the pool once it has no pins. vt_arena_reset returns
 * every block. The functions taking a pointer accept any address inside a
 * block and do nothing for memory the pool does not own. */
void *vt_arena_pool_take(vt_arena *a, size_t bytes);
void vt_arena_pool_drop(vt_arena *a, const void *p);
void vt_arena_pool_pin(vt_arena *a, const void *p, int delta);
/* Start of the pool block holding p, or NULL when the pool does not own p. */
const void *vt_arena_pool_base(const vt_arena *a, const void *p);
/* Pins on the block holding p; -1 when the pool does not own p. */
int vt_arena_pool_pins(const vt_arena *a, const void *p);

/* ==== Random numbers ==================================================== */

/* Counter-based: element i of draw k is hash(seed, k, i), so a parallel loop
 * produces the same numbers whatever the thread count, and the whole state
 * is two integers a checkpoint can save. */
typedef struct {
    uint64_t seed;
    uint64_t counter;
} vt_rng;

uint64_t vt_hash64(uint64_t seed, uint64_t stream, uint64_t i);
/* Uniform in [0, 1) with 24 random bits, from one hash. */
static inline float vt_hash_uniform(uint64_t seed, uint64_t stream, uint64_t i)
{
    return (float)(vt_hash64(seed, stream, i) >> 40) * (1.0f / 16777216.0f);
}
/* Reserve the next stream of the generator (one per random op call). */
static inline uint64_t vt_rng_next_stream(vt_rng *r) { return r->counter++; }
/* Sequential convenience draws (init, shuffles): advance the counter. */
float vt_rng_uniform(vt_rng *r);
float vt_rng_normal(vt_rng *r);
uint32_t vt_rng_below(vt_rng *r, uint32_t n); /* uniform integer in [0, n) */

/* ==== Context, tape and backward ======================================= */

typedef void (*vt_backward_fn)(vt_ctx *c, vt_node *n);

/* One per op, defined in the op's own file and listed in ops_table.c. */
typedef struct {
    const char *name;
    vt_backward_fn backward;
} vt_op_def;

struct vt_node {
    const vt_op_def *op;
    int n_in, n_out;
    vt_tensor **in;  /* arena arrays */
    vt_tensor **out;
    void *saved;     /* op-specific state in the arena */
    unsigned no_data; /* VT_BWD_* (vt_node_no_data) */
};

struct vt_ctx {
    vt_arena arena;
    vt_node **tape;
    size_t n_nodes, cap_nodes;
    int training;     /* dropout active, batch norm uses batch statistics */
    int grad_enabled; /* record the tape; off = eval/no-grad: nothing saved */
    vt_rng rng;       /* dropout */
    /* Data-parallel training (src/dist). Both are 0 / NULL otherwise.
     * shard_offset: samples of the global batch that come before this
     * process's share, so dropout draws the mask elements a one-process
     * run would draw for the same samples. */
    size_t shard_offset;
    /* Called by the reverse sweep with each leaf (parameter) whose gradient
     * is complete, i.e. after the last node that uses it has run, and with
     * NULL after every node so the caller can poll pending communication.
     * Leaves reach it in the same order on every run. */
    void (*on_grad_ready)(void *ud, vt_tensor *leaf);
    void *on_grad_ud;
    /* 1: vt_release does nothing, so every activation and gradient stays
     * until the step ends (tests compare against this). */
    int keep_all;
};

void vt_ctx_init(vt_ctx *c, uint64_t seed);
void vt_ctx_free(vt_ctx *c);
/* Start a new step: drop the tape and every activation. */
void vt_ctx_reset(vt_ctx *c);

/* Tensors in the arena. Data is uninitialised unless stated. */
vt_tensor *vt_tensor_new(vt_ctx *c, int ndim, const int *shape);
vt_tensor *vt_tensor_zeros(vt_ctx *c, int ndim, const int *shape);
vt_tensor *vt_tensor_like(vt_ctx *c, const vt_tensor *t);
/* vt_empty(c, 3, N, T, F): variadic shape, data uninitialised. */
vt_tensor *vt_empty(vt_ctx *c, int ndim, ...);
/* A leaf that wants a gradient (tests, inputs): grad zeroed in the arena. */
vt_tensor *vt_leaf(vt_ctx *c, int ndim, const int *shape, int requires_grad);
/* Wrap caller-owned memory as a leaf (no grad). */
vt_tensor *vt_tensor_wrap(vt_ctx *c, float *data, int ndim, const int *shape);

size_t vt_shape_numel(int ndim, const int *shape);
int vt_same_shape(const vt_tensor *a, const vt_tensor *b);
/* "(2, 3, 16, 112, 112)" into buf; returns buf. */
char *vt_shape_str(const vt_tensor *t, char *buf, size_t len);

/* True when an op with these inputs must record a node (grad mode on and at
 * least one input requires a gradient). Ops that return false skip saving
 * anything for backward. */
int vt_needs_grad(const vt_ctx *c, int n_in, vt_tensor *const *in);

/* Record a node. Marks every output requires_grad and sets out->node.
 * The caller passes the inputs and outputs; saved may be NULL. */
vt_node *vt_record(vt_ctx *c, const vt_op_def *op, int n_in,
                   vt_tensor *const *in, int n_out, vt_tensor *const *out,
                   void *saved);

/* What a node's backward never reads: that data may go back to the pool
 * (vt_release) before the node's backward runs. Without this call the
 * node keeps the data of all its inputs and outputs. */
#define VT_BWD_NO_IN_DATA 1u  /* the inputs' data */
#define VT_BWD_NO_OUT_DATA 2u /* the outputs' data */
void vt_node_no_data(vt_ctx *c, vt_node *n, unsigned flags);

/* The gradient buffer of t, allocated zeroed on first use. Only for tensors
 * with requires_grad; backward functions call it before adding. */
float *vt_grad(vt_ctx *c, vt_tensor *t);

/* The caller (the layer runner) will not read t's data or gradient again.
 * Data the pool owns goes back to it now, or after the last recorded
 * backward that reads it; the gradient of a released tensor goes back once
 * its producer's backward has consumed it. The caller must not release a
 * tensor whose data another live tensor shares (a reshape view). */
void vt_release(vt_ctx *c, vt_tensor *t);

/* Reverse sweep from a scalar loss (seed gradient 1). */
void vt_backward(vt_ctx *c, vt_tensor *loss);
/* Reverse sweep from any tensor with a given seed gradient (same numel). */
void vt_backward_seed(vt_ctx *c, vt_tensor *out, const float *seed);

/* ==== Parameter store =================================================== */

/* Named parameters and buffers in one data block and one grad block, so an
 * optimizer is a flat loop and a checkpoint a list of named views.
 * Register with vt_store_add(), then vt_store_finalize() allocates. */
typedef struct {
    char *name;        /* "conv1a.weight" (PyTorch state_dict name) */
    vt_tensor t;       /* data/grad point into the store's blocks */
    size_t offset;     /* element offset in the blocks */
    int trainable;     /* 0 for buffers (running stats) and frozen layers */
    float lr_mult;
} vt_param;

typedef struct {
    vt_param *p;
    int n, cap;
    size_t total;      /* elements in each block */
    float *data, *grad;
    void *grad_mem;    /* grad's allocation (calloc: an evaluation that
                        * never touches the gradients holds no memory for them) */
} vt_store;

void vt_store_init(vt_store *s);
void vt_store_free(vt_store *s);
/* Returns the index; shape is copied. Pointers are valid after finalize. */
int vt_store_add(vt_store *s, const char *name, int ndim, const int *shape,
                 int trainable);
void vt_store_finalize(vt_store *s);
vt_tensor *vt_store_tensor(vt_store *s, int idx);
vt_param *vt_store_find(vt_store *s, const char *name);
void vt_store_zero_grad(vt_store *s);
size_t vt_store_trainable_count(const vt_store *s);

/* ==== GEMM ============================================================= */

/* Row-major C = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T. */
void vt_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta,
              float *c, int ldc);
/* C (m x n) = A (m x k) . op(B) (+ C when beta), for a few rows (an LSTM
 * step's batch, a batch of clips into a linear layer): A not transposed,
 * op(B) = B (k x n) or, with trans_b, B^T (B n x k). Reads B once, in
 * place. Each element's sum does not depend on m, n or the threads:
 * outside a parallel region a large product splits its columns over the
 * threads, inside one it runs on the calling thread, and a caller may
 * split the columns itself with bit-identical results. Falls back to
 * vt_sgemm above VT_SGEMM_SMALL_MAX_M rows or without AVX2+FMA. */
void vt_sgemm_small(int trans_b, int m, int n, int k, const float *a, int lda,
                    const float *b, int ldb, int beta, float *c, int ldc);
#define VT_SGEMM_SMALL_MAX_M 32
/* Threads for the process: OpenMP and OpenBLAS alike. */
void vt_set_threads(int n);
int vt_get_threads(void);
/* Whether this CPU runs AVX2 and FMA, which the hand-vectorised kernels
 * (conv3d forward, max pooling) need; without them the portable loops run.
 * VT_NO_AVX2=1 in the environment answers no, to test those loops. */
int vt_cpu_avx2(void);

/* ==== Op registry ====================================================== */

/* Every op's definition, for diagnostics (tape dumps, coverage checks). */
extern const vt_op_def *const vt_op_table[];
extern const int vt_op_table_len;

#endif
