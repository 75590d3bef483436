/* tensor.c - tensors in the arena, the tape, and the reverse sweep. */
#include "vt_autograd.h"

#include <stdarg.h>
#include <string.h>

/* ==== Context ========================================================== */

void vt_ctx_init(vt_ctx *c, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    vt_arena_init(&c->arena, 0);
    c->training = 1;
    c->grad_enabled = 1;
    c->rng.seed = seed;
}

void vt_ctx_free(vt_ctx *c)
{
    vt_arena_free(&c->arena);
    free(c->tape);
    memset(c, 0, sizeof *c);
}

void vt_ctx_reset(vt_ctx *c)
{
    vt_arena_reset(&c->arena);
    c->n_nodes = 0;
}

/* ==== Tensors ========================================================== */

size_t vt_shape_numel(int ndim, const int *shape)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    return n;
}

int vt_same_shape(const vt_tensor *a, const vt_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

char *vt_shape_str(const vt_tensor *t, char *buf, size_t len)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len > o ? len - o : 0, "(");
    for (int i = 0; i < t->ndim; i++)
        o += (size_t)snprintf(buf + o, len > o ? len - o : 0, "%s%d",
                              i ? ", " : "", t->shape[i]);
    snprintf(buf + o, len > o ? len - o : 0, ")");
    return buf;
}

static vt_tensor *header_new(vt_ctx *c, int ndim, const int *shape)
{
    VT_ASSERT(ndim >= 1 && ndim <= VT_MAX_DIMS, "bad ndim %d", ndim);
    vt_tensor *t = vt_arena_calloc(&c->arena, sizeof *t);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        VT_ASSERT(shape[i] >= 0, "negative extent %d in dim %d", shape[i], i);
        t->shape[i] = shape[i];
    }
    t->numel = vt_shape_numel(ndim, shape);
    return t;
}

/* Large buffers from the pool (they can go back early), small ones from
 * the bump arena. */
static float *buffer_new(vt_ctx *c, size_t numel)
{
    size_t bytes = numel * sizeof(float);
    if (bytes >= c->arena.pool_min)
        return vt_arena_pool_take(&c->arena, bytes);
    return vt_arena_alloc(&c->arena, bytes);
}

vt_tensor *vt_tensor_new(vt_ctx *c, int ndim, const int *shape)
{
    vt_tensor *t = header_new(c, ndim, shape);
    t->data = buffer_new(c, t->numel);
    return t;
}

vt_tensor *vt_tensor_zeros(vt_ctx *c, int ndim, const int *shape)
{
    vt_tensor *t = header_new(c, ndim, shape);
    t->data = buffer_new(c, t->numel);
    memset(t->data, 0, t->numel * sizeof(float));
    return t;
}

vt_tensor *vt_tensor_like(vt_ctx *c, const vt_tensor *t)
{
    return vt_tensor_new(c, t->ndim, t->shape);
}

vt_tensor *vt_empty(vt_ctx *c, int ndim, ...)
{
    int shape[VT_MAX_DIMS];
    VT_ASSERT(ndim >= 1 && ndim <= VT_MAX_DIMS, "bad ndim %d", ndim);
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim; i++)
        shape[i] = va_arg(ap, int);
    va_end(ap);
    return vt_tensor_new(c, ndim, shape);
}

vt_tensor *vt_leaf(vt_ctx *c, int ndim, const int *shape, int requires_grad)
{
    vt_tensor *t = vt_tensor_zeros(c, ndim, shape);
    if (requires_grad) {
        t->requires_grad = 1;
        t->grad = vt_arena_calloc(&c->arena, t->numel * sizeof(float));
    }
    return t;
}

vt_tensor *vt_tensor_wrap(vt_ctx *c, float *data, int ndim, const int *shape)
{
    vt_tensor *t = header_new(c, ndim, shape);
    t->data = data;
    return t;
}

/* ==== Tape ============================================================= */

int vt_needs_grad(const vt_ctx *c, int n_in, vt_tensor *const *in)
{
    if (!c->grad_enabled)
        return 0;
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->requires_grad)
            return 1;
    return 0;
}

/* The pool blocks whose data n's backward reads stay taken until it has
 * run (delta 1 at record time, -1 after the node's turn in the sweep). */
static void pin_data(vt_ctx *c, const vt_node *n, int delta)
{
    if (!(n->no_data & VT_BWD_NO_IN_DATA))
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i])
                vt_arena_pool_pin(&c->arena, n->in[i]->data, delta);
    if (!(n->no_data & VT_BWD_NO_OUT_DATA))
        for (int i = 0; i < n->n_out; i++)
            vt_arena_pool_pin(&c->arena, n->out[i]->data, delta);
}

vt_node *vt_record(vt_ctx *c, const vt_op_def *op, int n_in,
                   vt_tensor *const *in, int n_out, vt_tensor *const *out,
                   void *saved)
{
    VT_ASSERT(op && op->backward, "op without backward");
    if (c->n_nodes == c->cap_nodes) {
        size_t cap = c->cap_nodes ? 2 * c->cap_nodes : 256;
        vt_node **t = realloc(c->tape, cap * sizeof *t);
        VT_ASSERT(t, "out of memory growing the tape");
        c->tape = t;
        c->cap_nodes = cap;
    }
    vt_node *n = vt_arena_alloc(&c->arena, sizeof *n);
    n->op = op;
    n->n_in = n_in;
    n->n_out = n_out;
    n->in = vt_arena_alloc(&c->arena, (size_t)(n_in ? n_in : 1) * sizeof *n->in);
    n->out = vt_arena_alloc(&c->arena, (size_t)n_out * sizeof *n->out);
    for (int i = 0; i < n_in; i++)
        n->in[i] = in[i];
    for (int i = 0; i < n_out; i++) {
        n->out[i] = out[i];
        out[i]->requires_grad = 1;
        out[i]->node = n;
    }
    n->saved = saved;
    n->no_data = 0;
    c->tape[c->n_nodes++] = n;
    pin_data(c, n, 1);
    return n;
}

void vt_node_no_data(vt_ctx *c, vt_node *n, unsigned flags)
{
    pin_data(c, n, -1);
    n->no_data = flags;
    pin_data(c, n, 1);
}

float *vt_grad(vt_ctx *c, vt_tensor *t)
{
    VT_ASSERT(t->requires_grad, "gradient requested for a tensor that does not require one");
    if (!t->grad) {
        /* A leaf's gradient is the caller's to read after the sweep; an
         * activation's may go back to the pool during it. */
        if (t->node) {
            t->grad = buffer_new(c, t->numel);
            memset(t->grad, 0, t->numel * sizeof(float));
        } else {
            t->grad = vt_arena_calloc(&c->arena, t->numel * sizeof(float));
        }
    }
    return t->grad;
}

void vt_release(vt_ctx *c, vt_tensor *t)
{
    if (c->keep_all || t->released)
        return;
    t->released = 1;
    vt_arena_pool_drop(&c->arena, t->data);
}

/* ==== Gradient-ready notifications (on_grad_ready) ===================== */

/* Remaining uses of each leaf on the tape, in an open-addressing table
 * keyed by the tensor's address (arena memory, built once per sweep). */
typedef struct {
    vt_tensor *t;
    int uses;
} leaf_use;

typedef struct {
    leaf_use *tab;
    size_t mask;
} leaf_table;

static int is_leaf(const vt_tensor *t) { return t && t->requires_grad && !t->node; }

static leaf_use *leaf_slot(const leaf_table *lt, const vt_tensor *t)
{
    size_t i = (size_t)(((uintptr_t)t >> 4) * 0x9E3779B97F4A7C15ull >> 17) & lt->mask;
    while (lt->tab[i].t && lt->tab[i].t != t)
        i = (i + 1) & lt->mask;
    return &lt->tab[i];
}

static void leaf_table_build(vt_ctx *c, leaf_table *lt)
{
    size_t slots = 0, cap = 16;
    for (size_t k = 0; k < c->n_nodes; k++)
        slots += (size_t)c->tape[k]->n_in;
    while (cap < 2 * slots + 1)
        cap *= 2;
    lt->tab = vt_arena_calloc(&c->arena, cap * sizeof *lt->tab);
    lt->mask = cap - 1;
    for (size_t k = 0; k < c->n_nodes; k++) {
        vt_node *n = c->tape[k];
        for (int i = 0; i < n->n_in; i++)
            if (is_leaf(n->in[i])) {
                leaf_use *u = leaf_slot(lt, n->in[i]);
                u->t = n->in[i];
                u->uses++;
            }
    }
}

/* After node n's turn in the sweep (run or skipped): a leaf none of whose
 * remaining uses is still ahead gets its final gradient announced. */
static void leaf_table_visit(vt_ctx *c, const leaf_table *lt, vt_node *n)
{
    for (int i = 0; i < n->n_in; i++)
        if (is_leaf(n->in[i])) {
            leaf_use *u = leaf_slot(lt, n->in[i]);
            if (--u->uses == 0)
                c->on_grad_ready(c->on_grad_ud, n->in[i]);
        }
    c->on_grad_ready(c->on_grad_ud, NULL);
}

/* ==== Reverse sweep ==================================================== */

/* Nodes are replayed newest first: a node runs only once every later node
 * has added into its outputs' gradients, which the recording order
 * guarantees (an output is always recorded before its consumers). A node
 * none of whose outputs received a gradient is off the loss's path. */
void vt_backward_seed(vt_ctx *c, vt_tensor *out, const float *seed)
{
    VT_ASSERT(out->requires_grad, "backward from a tensor that requires no gradient");
    float *g = vt_grad(c, out);
    for (size_t i = 0; i < out->numel; i++)
        g[i] += seed[i];
    leaf_table lt = {NULL, 0};
    if (c->on_grad_ready)
        leaf_table_build(c, &lt);
    for (size_t k = c->n_nodes; k-- > 0;) {
        vt_node *n = c->tape[k];
        int live = 0;
        for (int i = 0; i < n->n_out; i++)
            live |= n->out[i]->grad != NULL;
        if (live)
            n->op->backward(c, n);
        /* Only n reads its outputs' gradients, so once it has run those of
         * released outputs are garbage; so is data no other node needs. */
        for (int i = 0; i < n->n_out; i++) {
            vt_tensor *o = n->out[i];
            if (o->released && o->grad) {
                vt_arena_pool_drop(&c->arena, o->grad);
                o->grad = NULL;
            }
        }
        pin_data(c, n, -1);
        if (c->on_grad_ready)
            leaf_table_visit(c, &lt, n);
    }
}

void vt_backward(vt_ctx *c, vt_tensor *loss)
{
    VT_ASSERT(loss->numel == 1, "backward needs a scalar loss, got %zu elements",
              loss->numel);
    const float one = 1.0f;
    vt_backward_seed(c, loss, &one);
}
