/* op_attention.c - temporal attention pooling (the seed's ConvLSTM head).
 *
 * Shapes: h (N, T, F), w (1, F), b (1) -> out (N, F):
 *   score[n, t] = w . h[n, t] + b;  a[n] = softmax_t(score[n]);
 *   out[n] = sum_t a[n, t] h[n, t].
 * Saved for backward: the attention weights a (N, T); h and w are inputs.
 *
 * b shifts every score of a row equally, so softmax cancels it and its
 * gradient is zero up to rounding; it is still computed from the same
 * dscore as w's, so a bug in dscore would show there too.
 */
#include "vt_ops.h"

#include <math.h>
#include <string.h>

#define PAR_MIN 32768

typedef struct {
    float *a; /* (N, T) */
} attn_saved;

static void attention_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *h = nd->in[0], *w = nd->in[1], *b = nd->in[2];
    vt_tensor *out = nd->out[0];
    const attn_saved *s = nd->saved;
    const int N = h->shape[0], T = h->shape[1], F = h->shape[2];
    const size_t rows = (size_t)N * (size_t)T;
    const float *hv = h->data, *wv = w->data, *go = out->grad, *a = s->a;
    float *gh = h->requires_grad ? vt_grad(c, h) : NULL;
    /* dscore (N, T), kept for the w and b reductions below. */
    float *ds = vt_arena_alloc(&c->arena, rows * sizeof(float));

#pragma omp parallel for schedule(static) if (rows * (size_t)F >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *gon = go + (size_t)n * (size_t)F;
        const float *an = a + (size_t)n * (size_t)T;
        float *dsn = ds + (size_t)n * (size_t)T;
        /* da_t = go . h_t, then the softmax Jacobian:
         * ds_t = a_t (da_t - sum_u a_u da_u). */
        float dot = 0.0f;
        for (int t = 0; t < T; t++) {
            const float *ht = hv + ((size_t)n * (size_t)T + (size_t)t) * (size_t)F;
            float da = 0.0f;
            for (int f = 0; f < F; f++)
                da += gon[f] * ht[f];
            dsn[t] = da;
            dot += an[t] * da;
        }
        for (int t = 0; t < T; t++)
            dsn[t] = an[t] * (dsn[t] - dot);
        if (gh)
            for (int t = 0; t < T; t++) {
                float *g = gh + ((size_t)n * (size_t)T + (size_t)t) * (size_t)F;
                for (int f = 0; f < F; f++)
                    g[f] += an[t] * gon[f] + dsn[t] * wv[f];
            }
    }

    if (w->requires_grad) {
        /* Parallel over blocks of features; each feature sums its N*T rows
         * in row order, whatever the thread count. */
        float *gw = vt_grad(c, w);
        enum { CB = 64 };
        const int nblk = (F + CB - 1) / CB;
#pragma omp parallel for schedule(static) if (rows * (size_t)F >= PAR_MIN)
        for (int blk = 0; blk < nblk; blk++) {
            const int f0 = blk * CB, f1 = f0 + CB < F ? f0 + CB : F;
            float acc[CB] = {0};
            for (size_t r = 0; r < rows; r++)
                for (int f = f0; f < f1; f++)
                    acc[f - f0] += ds[r] * hv[r * (size_t)F + (size_t)f];
            for (int f = f0; f < f1; f++)
                gw[f] += acc[f - f0];
        }
    }
    if (b->requires_grad) {
        float acc = 0.0f;
        for (size_t r = 0; r < rows; r++)
            acc += ds[r];
        vt_grad(c, b)[0] += acc;
    }
}
const vt_op_def vt_op_attention_pool = {"attention_pool", attention_backward};

vt_tensor *vt_attention_pool(vt_ctx *c, vt_tensor *h, vt_tensor *w,
                             vt_tensor *b)
{
    char sh[64], sw[64];
    VT_ASSERT(h->ndim == 3 && h->shape[1] > 0 && w->numel == (size_t)h->shape[2] &&
                  b->numel == 1,
              "attention_pool: h %s, w %s, b must have 1 element",
              vt_shape_str(h, sh, sizeof sh), vt_shape_str(w, sw, sizeof sw));
    const int N = h->shape[0], T = h->shape[1], F = h->shape[2];
    const size_t rows = (size_t)N * (size_t)T;
    vt_tensor *y = vt_empty(c, 2, N, F);
    float *a = vt_arena_alloc(&c->arena, rows * sizeof(float));
    const float *hv = h->data, *wv = w->data;
    const float bias = b->data[0];
    float *yv = y->data;

#pragma omp parallel for schedule(static) if (rows * (size_t)F >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *hn = hv + (size_t)n * (size_t)T * (size_t)F;
        float *an = a + (size_t)n * (size_t)T;
        float mx = -INFINITY;
        for (int t = 0; t < T; t++) {
            const float *ht = hn + (size_t)t * (size_t)F;
            float sc = 0.0f;
            for (int f = 0; f < F; f++)
                sc += wv[f] * ht[f];
            an[t] = sc + bias;
            if (an[t] > mx)
                mx = an[t];
        }
        float sum = 0.0f;
        for (int t = 0; t < T; t++) {
            an[t] = expf(an[t] - mx);
            sum += an[t];
        }
        const float inv = 1.0f / sum;
        for (int t = 0; t < T; t++)
            an[t] *= inv;
        float *yn = yv + (size_t)n * (size_t)F;
        memset(yn, 0, (size_t)F * sizeof(float));
        for (int t = 0; t < T; t++) {
            const float *ht = hn + (size_t)t * (size_t)F;
            for (int f = 0; f < F; f++)
                yn[f] += an[t] * ht[f];
        }
    }

    vt_tensor *in[3] = {h, w, b};
    if (vt_needs_grad(c, 3, in)) {
        attn_saved *s = vt_arena_alloc(&c->arena, sizeof *s);
        s->a = a;
        vt_record(c, &vt_op_attention_pool, 3, in, 1, &y, s);
    }
    return y;
}
