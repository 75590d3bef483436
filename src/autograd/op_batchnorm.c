/* op_batchnorm.c - batch normalisation over one channel axis.
 *
 * Shapes: x viewed as (outer, C, inner) around the channel axis:
 *   axis 1 of (N, C, T, H, W) or (N, C)   -> outer N,     inner T*H*W (or 1)
 *   axis 2 of a sequence (N, T, F)        -> outer N*T,   inner 1
 * gamma, beta, running_mean, running_var: (C). y has x's shape.
 * Saved for backward: per channel the mean and 1/sqrt(var + eps) used by the
 * forward (batch statistics in training, running ones in eval) and whether
 * they were batch statistics; x-hat is recomputed from x.
 *
 * Every loop runs over channels with a fixed order inside a channel, so the
 * statistics and the gamma/beta gradients are bit-identical whatever the
 * thread count. Sums are accumulated in double (acc_* below).
 */
#include "vt_ops.h"

#include <math.h>

/* Below this many elements a parallel region costs more than the work. */
#define PAR_MIN 32768

typedef struct {
    size_t outer, inner;
    int C;
} bn_view;

typedef struct {
    bn_view v;
    float *mean, *invstd; /* (C) */
    int batch_stats;      /* backward goes through the batch statistics */
    vt_tensor *gamma, *beta;
} bn_saved;

static bn_view make_view(const vt_tensor *x, int axis)
{
    char sb[64];
    VT_ASSERT(x->ndim >= 2 && (axis == 1 || axis == x->ndim - 1),
              "batchnorm: channel axis %d of %s (need 1 or ndim - 1)", axis,
              vt_shape_str(x, sb, sizeof sb));
    bn_view v = {1, 1, x->shape[axis]};
    for (int d = 0; d < axis; d++)
        v.outer *= (size_t)x->shape[d];
    for (int d = axis + 1; d < x->ndim; d++)
        v.inner *= (size_t)x->shape[d];
    return v;
}

/* Sums in double over a channel's values, in BN_LANES interleaved partial
 * sums added up in a fixed order at the end: a single running sum is a
 * chain of dependent double adds (4 cycles an element), these vectorise.
 * The order depends only on the shape, never on threads or the CPU. */
#define BN_LANES 8
typedef struct {
    double a[BN_LANES];
} bn_acc;

static double acc_total(const bn_acc *s)
{
    double h[4];
    for (int l = 0; l < 4; l++)
        h[l] = s->a[l] + s->a[l + 4];
    return (h[0] + h[2]) + (h[1] + h[3]);
}

static void acc_sum(bn_acc *s, const float *p, size_t n)
{
    size_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES)
        for (int l = 0; l < BN_LANES; l++)
            s->a[l] += p[i + l];
    for (int l = 0; i < n; i++, l++)
        s->a[l] += p[i];
}

static void acc_sqdev(bn_acc *s, const float *p, size_t n, double mu)
{
    size_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES)
        for (int l = 0; l < BN_LANES; l++) {
            double d = p[i + l] - mu;
            s->a[l] += d * d;
        }
    for (int l = 0; i < n; i++, l++) {
        double d = p[i] - mu;
        s->a[l] += d * d;
    }
}

/* sum(g) into sg, sum(g * xhat) into sgx, xhat = (x - mu) * is in float */
static void acc_grad(bn_acc *sg, bn_acc *sgx, const float *g, const float *x, size_t n,
                     float mu, float is)
{
    size_t i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES)
        for (int l = 0; l < BN_LANES; l++) {
            double gv = g[i + l];
            sg->a[l] += gv;
            sgx->a[l] += gv * (double)((x[i + l] - mu) * is);
        }
    for (int l = 0; i < n; i++, l++) {
        double gv = g[i];
        sg->a[l] += gv;
        sgx->a[l] += gv * (double)((x[i] - mu) * is);
    }
}

/* Element j of channel ch's (outer * inner) values. */
#define BN_AT(p, v, ch, o, i) ((p)[((o) * (size_t)(v).C + (size_t)(ch)) * (v).inner + (i)])

static void check_param(const vt_tensor *t, int C, const char *what)
{
    if (t)
        VT_ASSERT(t->numel == (size_t)C, "batchnorm: %s has %zu elements, %d channels",
                  what, t->numel, C);
}

static void bn_backward(vt_ctx *c, vt_node *nd)
{
    const bn_saved *s = nd->saved;
    vt_tensor *x = nd->in[0], *y = nd->out[0];
    vt_tensor *gamma = s->gamma, *beta = s->beta;
    const bn_view v = s->v;
    const float *xv = x->data, *gy = y->grad;
    float *gx = x->requires_grad ? vt_grad(c, x) : NULL;
    float *gg = gamma && gamma->requires_grad ? vt_grad(c, gamma) : NULL;
    float *gb = beta && beta->requires_grad ? vt_grad(c, beta) : NULL;
    double m = (double)(v.outer * v.inner);
#pragma omp parallel for schedule(static) if (x->numel > PAR_MIN)
    for (int ch = 0; ch < v.C; ch++) {
        const float mu = s->mean[ch], is = s->invstd[ch];
        /* sum(gy) and sum(gy * xhat): gradients of beta and gamma, and the
         * two projections the training-mode x gradient removes. */
        bn_acc ag = {{0}}, agx = {{0}};
        for (size_t o = 0; o < v.outer; o++)
            acc_grad(&ag, &agx, &BN_AT(gy, v, ch, o, 0), &BN_AT(xv, v, ch, o, 0), v.inner,
                     mu, is);
        const double sg = acc_total(&ag), sgx = acc_total(&agx);
        if (gb)
            gb[ch] += (float)sg;
        if (gg)
            gg[ch] += (float)sgx;
        if (!gx)
            continue;
        const float scale = (gamma ? gamma->data[ch] : 1.0f) * is;
        if (s->batch_stats) {
            const float mg = (float)(sg / m), mgx = (float)(sgx / m);
            for (size_t o = 0; o < v.outer; o++)
                for (size_t i = 0; i < v.inner; i++) {
                    float xh = (BN_AT(xv, v, ch, o, i) - mu) * is;
                    BN_AT(gx, v, ch, o, i) += scale * (BN_AT(gy, v, ch, o, i) - mg - xh * mgx);
                }
        } else {
            for (size_t o = 0; o < v.outer; o++)
                for (size_t i = 0; i < v.inner; i++)
                    BN_AT(gx, v, ch, o, i) += scale * BN_AT(gy, v, ch, o, i);
        }
    }
}
const vt_op_def vt_op_batchnorm = {"batchnorm", bn_backward};

vt_tensor *vt_batchnorm(vt_ctx *c, vt_tensor *x, int axis, vt_tensor *gamma,
                        vt_tensor *beta, vt_tensor *running_mean,
                        vt_tensor *running_var, float momentum, float eps)
{
    const bn_view v = make_view(x, axis);
    check_param(gamma, v.C, "gamma");
    check_param(beta, v.C, "beta");
    check_param(running_mean, v.C, "running_mean");
    check_param(running_var, v.C, "running_var");
    VT_ASSERT((running_mean == NULL) == (running_var == NULL),
              "batchnorm: running_mean and running_var must come together");
    /* Without running statistics (track_running_stats = False) PyTorch
     * normalises with the batch's even in eval. */
    const int batch_stats = c->training || !running_mean;
    const size_t m = v.outer * v.inner;
    VT_ASSERT(!batch_stats || m > 1,
              "batchnorm: batch statistics need more than 1 value per channel");

    vt_tensor *in[3] = {x, gamma, beta};
    const int record = vt_needs_grad(c, 3, in);
    vt_tensor *y = vt_tensor_like(c, x);
    float *mean = NULL, *invstd = NULL;
    if (record) {
        mean = vt_arena_alloc(&c->arena, (size_t)v.C * sizeof *mean);
        invstd = vt_arena_alloc(&c->arena, (size_t)v.C * sizeof *invstd);
    }
    const float *xv = x->data;
    float *yv = y->data;
#pragma omp parallel for schedule(static) if (x->numel > PAR_MIN)
    for (int ch = 0; ch < v.C; ch++) {
        float mu, is;
        if (batch_stats) {
            bn_acc as = {{0}}, ass = {{0}};
            for (size_t o = 0; o < v.outer; o++)
                acc_sum(&as, &BN_AT(xv, v, ch, o, 0), v.inner);
            const double dmu = acc_total(&as) / (double)m;
            /* Two passes: the one-pass E[x^2] - E[x]^2 cancels badly when
             * |mean| >> std. */
            for (size_t o = 0; o < v.outer; o++)
                acc_sqdev(&ass, &BN_AT(xv, v, ch, o, 0), v.inner, dmu);
            const double ss = acc_total(&ass);
            mu = (float)dmu;
            is = (float)(1.0 / sqrt(ss / (double)m + eps));
            if (running_mean && c->training) {
                float *rm = running_mean->data, *rv = running_var->data;
                rm[ch] = (1.0f - momentum) * rm[ch] + momentum * mu;
                rv[ch] = (1.0f - momentum) * rv[ch] +
                         momentum * (float)(ss / (double)(m - 1));
            }
        } else {
            mu = running_mean->data[ch];
            is = (float)(1.0 / sqrt((double)running_var->data[ch] + eps));
        }
        if (record) {
            mean[ch] = mu;
            invstd[ch] = is;
        }
        const float g = gamma ? gamma->data[ch] : 1.0f;
        const float b = beta ? beta->data[ch] : 0.0f;
        const float scale = g * is;
        for (size_t o = 0; o < v.outer; o++)
            for (size_t i = 0; i < v.inner; i++)
                BN_AT(yv, v, ch, o, i) = (BN_AT(xv, v, ch, o, i) - mu) * scale + b;
    }
    if (record) {
        bn_saved *s = vt_arena_alloc(&c->arena, sizeof *s);
        *s = (bn_saved){v, mean, invstd, batch_stats, gamma, beta};
        /* Only the tensors that exist go on the node, so tape walkers never
         * meet a NULL input; backward reads gamma/beta from saved. */
        vt_tensor *ins[3];
        int n_in = 0;
        for (int k = 0; k < 3; k++)
            if (in[k])
                ins[n_in++] = in[k];
        vt_node_no_data(c, vt_record(c, &vt_op_batchnorm, n_in, ins, 1, &y, s), VT_BWD_NO_OUT_DATA);
    }
    return y;
}
