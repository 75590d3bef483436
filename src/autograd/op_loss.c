/* op_loss.c - cross entropy with integer labels and label smoothing, and
 * the row softmax helper.
 *
 * Shapes: logits (N, K) with labels[N], or (N, T, K) with labels[N*T]
 * (a loss at every time step); either way R rows of K classes. The loss is
 * a scalar (1): the mean over the R rows of
 *   -(1 - ls) * log p[label] - (ls / K) * sum_k log p[k].
 * Saved for backward: the softmax p (R, K) and a copy of the labels (the
 * caller's array need not outlive the step).
 */
#include "vt_ops.h"

#include <math.h>
#include <string.h>

/* Elements (rows * K) below which a parallel region costs more than the
 * work it shares. */
#define PAR_MIN 32768

void vt_softmax_rows(const float *in, float *out, int rows, int k)
{
    size_t work = (size_t)rows * (size_t)k;
#pragma omp parallel for schedule(static) if (work > PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *a = in + (size_t)r * k;
        float *b = out + (size_t)r * k;
        float mx = a[0];
        for (int j = 1; j < k; j++)
            mx = a[j] > mx ? a[j] : mx;
        double s = 0;
        for (int j = 0; j < k; j++) {
            b[j] = expf(a[j] - mx);
            s += b[j];
        }
        const float inv = (float)(1.0 / s);
        for (int j = 0; j < k; j++)
            b[j] *= inv;
    }
}

typedef struct {
    float *prob;  /* (R, K) */
    int *labels;  /* (R) */
    int rows, k;
    float ls;
} ce_saved;

static void ce_backward(vt_ctx *c, vt_node *nd)
{
    vt_tensor *z = nd->in[0], *y = nd->out[0];
    const ce_saved *s = nd->saved;
    if (!z->requires_grad)
        return;
    float *gz = vt_grad(c, z);
    const float g = y->grad[0] / (float)s->rows;
    const float off = s->ls / (float)s->k, on = 1.0f - s->ls;
    const int k = s->k;
    size_t work = (size_t)s->rows * (size_t)k;
#pragma omp parallel for schedule(static) if (work > PAR_MIN)
    for (int r = 0; r < s->rows; r++) {
        const float *p = s->prob + (size_t)r * k;
        float *gr = gz + (size_t)r * k;
        for (int j = 0; j < k; j++)
            gr[j] += g * (p[j] - off);
        gr[s->labels[r]] -= g * on;
    }
}
const vt_op_def vt_op_cross_entropy = {"cross_entropy", ce_backward};

vt_tensor *vt_cross_entropy(vt_ctx *c, vt_tensor *logits, const int *labels,
                            float label_smoothing)
{
    char sb[64];
    VT_ASSERT(logits->ndim == 2 || logits->ndim == 3,
              "cross_entropy: logits %s are not (N, K) or (N, T, K)",
              vt_shape_str(logits, sb, sizeof sb));
    VT_ASSERT(label_smoothing >= 0.0f && label_smoothing <= 1.0f,
              "cross_entropy: label_smoothing %g not in [0, 1]", label_smoothing);
    const int k = logits->shape[logits->ndim - 1];
    const int rows = (int)(logits->numel / (size_t)(k ? k : 1));
    VT_ASSERT(k >= 1 && rows >= 1, "cross_entropy: empty logits %s",
              vt_shape_str(logits, sb, sizeof sb));
    for (int r = 0; r < rows; r++)
        VT_ASSERT(labels[r] >= 0 && labels[r] < k,
                  "cross_entropy: label %d of row %d not in [0, %d)", labels[r], r, k);

    const int record = vt_needs_grad(c, 1, &logits);
    float *prob = record ? vt_arena_alloc(&c->arena, logits->numel * sizeof(float)) : NULL;
    /* Per-row losses, summed afterwards in row order so the result does not
     * depend on the thread count. */
    double *row_loss = vt_arena_alloc(&c->arena, (size_t)rows * sizeof *row_loss);
    const float ls = label_smoothing;
    size_t work = logits->numel;
#pragma omp parallel for schedule(static) if (work > PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *z = logits->data + (size_t)r * k;
        float mx = z[0];
        for (int j = 1; j < k; j++)
            mx = z[j] > mx ? z[j] : mx;
        double se = 0, sz = 0;
        for (int j = 0; j < k; j++) {
            se += exp((double)z[j] - mx);
            sz += z[j];
        }
        const double lse = mx + log(se);
        /* -log p[j] = lse - z[j]; the smoothing term averages it over j. */
        row_loss[r] = (1.0 - ls) * (lse - z[labels[r]]) + ls * (lse - sz / k);
        if (prob) {
            float *p = prob + (size_t)r * k;
            for (int j = 0; j < k; j++)
                p[j] = (float)exp((double)z[j] - lse);
        }
    }
    double total = 0;
    for (int r = 0; r < rows; r++)
        total += row_loss[r];
    vt_tensor *y = vt_empty(c, 1, 1);
    y->data[0] = (float)(total / rows);
    if (record) {
        ce_saved *s = vt_arena_alloc(&c->arena, sizeof *s);
        s->prob = prob;
        s->labels = vt_arena_alloc(&c->arena, (size_t)rows * sizeof *s->labels);
        memcpy(s->labels, labels, (size_t)rows * sizeof *s->labels);
        s->rows = rows;
        s->k = k;
        s->ls = ls;
        vt_record(c, &vt_op_cross_entropy, 1, &logits, 1, &y, s);
    }
    return y;
}
