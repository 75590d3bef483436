/* optim.c - SGD, Adam, AdamW and global-norm clipping over a vt_store
 * (semantics and state layout in vt_optim.h).
 *
 * Every kernel walks the same list of blocks: at most VT_OPTIM_BLOCK
 * consecutive elements of one trainable param. Updates are element-wise, so
 * any split gives the same bits; the norm sums each block in double and
 * then the blocks in order, which fixes the rounding whatever the threads.
 * The scalar arithmetic mirrors torch 1.13's single-tensor kernels step by
 * step in fp32 (hyperparameters rounded to float as torch's CPU kernels do),
 * so trajectories agree with torch's to a few ulps.
 */
#include "vt_optim.h"

#include <math.h>
#include <string.h>

#include "vt_ini.h"

/* ==== Config ============================================================ */

void vt_optim_config_default(vt_optim_config *cfg, vt_optim_type type)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->type = type;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->weight_decay = type == VT_OPTIM_ADAMW ? 1e-2 : 0.0;
}

int vt_optim_config_check(const vt_optim_config *c, char *err, size_t errlen)
{
    const char *why = NULL;
    if (!(c->weight_decay >= 0))
        why = "weight_decay must be >= 0";
    else if (c->type == VT_OPTIM_SGD) {
        if (!(c->momentum >= 0))
            why = "momentum must be >= 0";
        else if (!(c->dampening >= 0))
            why = "dampening must be >= 0";
        else if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
            why = "nesterov needs momentum > 0 and dampening = 0";
    } else if (c->type == VT_OPTIM_ADAM || c->type == VT_OPTIM_ADAMW) {
        if (!(c->beta1 >= 0 && c->beta1 < 1))
            why = "beta1 must be in [0, 1)";
        else if (!(c->beta2 >= 0 && c->beta2 < 1))
            why = "beta2 must be in [0, 1)";
        else if (!(c->eps >= 0))
            why = "eps must be >= 0";
    } else {
        why = "unknown optimizer type";
    }
    if (!why && !(c->clip_grad_norm >= 0))
        why = "clip_grad_norm must be >= 0";
    if (why) {
        if (err && errlen)
            snprintf(err, errlen, "%s", why);
        return -1;
    }
    return 0;
}

/* ==== Life cycle ======================================================== */

static float *alloc_block(size_t n)
{
    size_t bytes = ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    VT_ASSERT(p, "out of memory allocating %zu bytes of optimizer state", bytes);
    memset(p, 0, bytes);
    return p;
}

void vt_optim_refresh(vt_optim *o)
{
    vt_store *s = o->store;
    int n = 0;
    for (int i = 0; i < s->n; i++)
        if (s->p[i].trainable)
            n += (int)((s->p[i].t.numel + VT_OPTIM_BLOCK - 1) / VT_OPTIM_BLOCK);
    free(o->blk);
    free(o->partial);
    o->blk = malloc((size_t)(n ? n : 1) * sizeof *o->blk);
    o->partial = malloc((size_t)(n ? n : 1) * sizeof *o->partial);
    VT_ASSERT(o->blk && o->partial, "out of memory");
    int k = 0;
    for (int i = 0; i < s->n; i++) {
        const vt_param *p = &s->p[i];
        if (!p->trainable)
            continue;
        for (size_t off = 0; off < p->t.numel; off += VT_OPTIM_BLOCK) {
            size_t len = p->t.numel - off;
            o->blk[k].off = p->offset + off;
            o->blk[k].n = len < VT_OPTIM_BLOCK ? len : VT_OPTIM_BLOCK;
            o->blk[k].lr_mult = p->lr_mult;
            k++;
        }
    }
    o->n_blk = n;
}

int vt_optim_init(vt_optim *o, vt_store *s, const vt_optim_config *cfg,
                  char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    VT_ASSERT(s->data, "vt_optim_init before vt_store_finalize");
    if (vt_optim_config_check(cfg, err, errlen))
        return -1;
    o->cfg = *cfg;
    o->store = s;
    if (cfg->type == VT_OPTIM_SGD)
        o->n_state = cfg->momentum != 0 ? 1 : 0;
    else
        o->n_state = cfg->amsgrad ? 3 : 2;
    for (int k = 0; k < o->n_state; k++)
        o->state[k] = alloc_block(s->total);
    vt_optim_refresh(o);
    return 0;
}

void vt_optim_free(vt_optim *o)
{
    for (int k = 0; k < 3; k++)
        free(o->state[k]);
    free(o->blk);
    free(o->partial);
    memset(o, 0, sizeof *o);
}

const char *vt_optim_state_name(const vt_optim *o, int k)
{
    static const char *const sgd[] = {"momentum_buffer"};
    static const char *const adam[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    VT_ASSERT(k >= 0 && k < o->n_state, "optimizer state %d of %d", k, o->n_state);
    return o->cfg.type == VT_OPTIM_SGD ? sgd[k] : adam[k];
}

float *vt_optim_param_state(vt_optim *o, int k, int idx)
{
    VT_ASSERT(k >= 0 && k < o->n_state, "optimizer state %d of %d", k, o->n_state);
    VT_ASSERT(idx >= 0 && idx < o->store->n, "param %d of %d", idx, o->store->n);
    return o->state[k] + o->store->p[idx].offset;
}

/* ==== Kernels =========================================================== */

static void sgd_block(const vt_optim_config *c, float *restrict p,
                      const float *restrict g, float *restrict buf, size_t n,
                      double lr, int first)
{
    const float wd = (float)c->weight_decay;
    const float mom = (float)c->momentum;
    const float keep = (float)(1.0 - c->dampening);
    const float nlr = (float)-lr;
    const int use_wd = c->weight_decay != 0, use_mom = c->momentum != 0;
    const int nesterov = c->nesterov;
    for (size_t i = 0; i < n; i++) {
        float d = g[i];
        if (use_wd)
            d = d + wd * p[i];
        if (use_mom) {
            float b;
            if (first) {
                b = d; /* torch clones the first gradient: no dampening */
            } else {
                b = buf[i] * mom;
                b = b + keep * d;
            }
            buf[i] = b;
            d = nesterov ? d + mom * b : b;
        }
        p[i] = p[i] + nlr * d;
    }
}

typedef struct {
    float b1, c1, b2, c2, eps, l2, decay, nstep, bc2s;
    int amsgrad;
} adam_consts;

static void adam_block(const adam_consts *k, float *restrict p,
                       const float *restrict g, float *restrict m,
                       float *restrict v, float *restrict vmax, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float pi = p[i];
        gi = gi + k->l2 * pi;   /* l2 = 0 unless Adam with weight decay */
        pi = pi * k->decay;     /* decay = 1 unless AdamW */
        float mi = m[i] * k->b1;
        mi = mi + k->c1 * gi;
        float vi = v[i] * k->b2;
        vi = vi + k->c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        if (k->amsgrad) {
            vi = vmax[i] > vi ? vmax[i] : vi;
            vmax[i] = vi;
        }
        float den = sqrtf(vi) / k->bc2s + k->eps;
        p[i] = pi + k->nstep * mi / den;
    }
}

void vt_optim_step(vt_optim *o, double lr)
{
    const vt_optim_config *c = &o->cfg;
    float *data = o->store->data, *grad = o->store->grad;
    int first = o->step == 0;
    o->step++;
    if (c->type == VT_OPTIM_SGD) {
        float *buf = o->state[0];
#pragma omp parallel for schedule(static)
        for (int b = 0; b < o->n_blk; b++) {
            const vt_optim_block *k = &o->blk[b];
            sgd_block(c, data + k->off, grad + k->off, buf ? buf + k->off : NULL,
                      k->n, lr * k->lr_mult, first);
        }
        return;
    }
    /* Bias corrections in double, as torch computes them in Python. */
    double t = (double)o->step;
    double bc1 = 1.0 - pow(c->beta1, t);
    double bc2s = sqrt(1.0 - pow(c->beta2, t));
    int adamw = c->type == VT_OPTIM_ADAMW;
    float *m = o->state[0], *v = o->state[1], *vmax = o->state[2];
#pragma omp parallel for schedule(static)
    for (int b = 0; b < o->n_blk; b++) {
        const vt_optim_block *blk = &o->blk[b];
        double lr_p = lr * blk->lr_mult;
        adam_consts k = {
            .b1 = (float)c->beta1,
            .c1 = (float)(1.0 - c->beta1),
            .b2 = (float)c->beta2,
            .c2 = (float)(1.0 - c->beta2),
            .eps = (float)c->eps,
            .l2 = adamw ? 0.0f : (float)c->weight_decay,
            .decay = adamw ? (float)(1.0 - lr_p * c->weight_decay) : 1.0f,
            .nstep = (float)-(lr_p / bc1),
            .bc2s = (float)bc2s,
            .amsgrad = c->amsgrad,
        };
        size_t off = blk->off;
        adam_block(&k, data + off, grad + off, m + off, v + off,
                   vmax ? vmax + off : NULL, blk->n);
    }
}

/* ==== Gradient norm ===================================================== */

/* Sum of squares in double. Eight interleaved accumulators break the add
 * latency chain (and let the compiler vectorise) while keeping one fixed
 * summation order. */
static double sum_squares(const float *g, size_t n)
{
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += (double)g[i + j] * (double)g[i + j];
    for (; i < n; i++)
        acc[0] += (double)g[i] * (double)g[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
           ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

double vt_optim_grad_norm(vt_optim *o)
{
    const float *grad = o->store->grad;
    double *part = o->partial;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < o->n_blk; b++)
        part[b] = sum_squares(grad + o->blk[b].off, o->blk[b].n);
    double total = 0;
    for (int b = 0; b < o->n_blk; b++)
        total += part[b];
    return sqrt(total);
}

double vt_optim_clip_grad_norm(vt_optim *o, double max_norm)
{
    double norm = vt_optim_grad_norm(o);
    double coef = max_norm / (norm + 1e-6);
    if (!(coef < 1.0) && !isnan(coef))
        return norm; /* torch multiplies by the clamped 1.0: a no-op */
    float f = (float)coef;
    float *grad = o->store->grad;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < o->n_blk; b++) {
        float *g = grad + o->blk[b].off;
        for (size_t i = 0; i < o->blk[b].n; i++)
            g[i] *= f;
    }
    return norm;
}

/* ==== [optim] =========================================================== */

static const vt_ini_key optim_keys[] = {
    {"type", VT_INI_STRING, VT_INI_REQUIRED, "sgd|adam|adamw", "optimizer"},
    {"momentum", VT_INI_FLOAT, VT_INI_NONNEG, NULL, "sgd: momentum factor"},
    {"dampening", VT_INI_FLOAT, VT_INI_NONNEG, NULL, "sgd: momentum dampening"},
    {"nesterov", VT_INI_BOOL, 0, NULL, "sgd: Nesterov momentum"},
    {"weight_decay", VT_INI_FLOAT, VT_INI_NONNEG, NULL,
     "L2 (sgd, adam) or decoupled (adamw) weight decay"},
    {"beta1", VT_INI_FLOAT, VT_INI_UNIT, NULL, "adam/adamw: first moment decay"},
    {"beta2", VT_INI_FLOAT, VT_INI_UNIT, NULL, "adam/adamw: second moment decay"},
    {"eps", VT_INI_FLOAT, VT_INI_NONNEG, NULL, "adam/adamw: denominator epsilon"},
    {"amsgrad", VT_INI_BOOL, 0, NULL, "adam/adamw: AMSGrad variant"},
    {"clip_grad_norm", VT_INI_FLOAT, VT_INI_NONNEG, NULL,
     "clip the global gradient L2 norm to this (0 = off)"},
};

const vt_ini_section_schema vt_optim_ini_schema = {
    .type = "optim",
    .kind = VT_INI_RUN,
    .keys = optim_keys,
    .n_keys = (int)(sizeof optim_keys / sizeof optim_keys[0]),
    .required = 0, /* absent: the trainer's default (plain SGD) */
    .doc = "optimizer (torch.optim.SGD / Adam / AdamW semantics)",
};

int vt_optim_config_from_ini(const vt_ini *c, vt_ini_section *s,
                             vt_optim_config *cfg, char *err, size_t errlen)
{
    VT_ASSERT(s, "vt_optim_config_from_ini without an [optim] section");
    const char *type = vt_ini_str(s, "type", NULL);
    VT_ASSERT(type, "[optim] type unset (validate first)");
    vt_optim_type t = strcmp(type, "sgd") == 0    ? VT_OPTIM_SGD
                      : strcmp(type, "adam") == 0 ? VT_OPTIM_ADAM
                                                  : VT_OPTIM_ADAMW;
    static const char *const sgd_only[] = {"momentum", "dampening", "nesterov"};
    static const char *const adam_only[] = {"beta1", "beta2", "eps", "amsgrad"};
    const char *const *wrong = t == VT_OPTIM_SGD ? adam_only : sgd_only;
    int n_wrong = t == VT_OPTIM_SGD ? 4 : 3;
    for (int i = 0; i < n_wrong; i++)
        if (vt_ini_has(s, wrong[i]))
            return vt_ini_errorf(c, s, wrong[i], err, errlen,
                                 "key '%s' does not apply to type = %s (remove "
                                 "it; on the command line: --set optim.%s=)",
                                 wrong[i], type, wrong[i]);
    vt_optim_config_default(cfg, t);
    cfg->weight_decay = vt_ini_float(s, "weight_decay", cfg->weight_decay);
    cfg->clip_grad_norm = vt_ini_float(s, "clip_grad_norm", 0.0);
    if (t == VT_OPTIM_SGD) {
        cfg->momentum = vt_ini_float(s, "momentum", 0.0);
        cfg->dampening = vt_ini_float(s, "dampening", 0.0);
        cfg->nesterov = vt_ini_bool(s, "nesterov", 0);
    } else {
        cfg->beta1 = vt_ini_float(s, "beta1", cfg->beta1);
        cfg->beta2 = vt_ini_float(s, "beta2", cfg->beta2);
        cfg->eps = vt_ini_float(s, "eps", cfg->eps);
        cfg->amsgrad = vt_ini_bool(s, "amsgrad", 0);
    }
    char why[256];
    if (vt_optim_config_check(cfg, why, sizeof why))
        return vt_ini_errorf(c, s, cfg->nesterov ? "nesterov" : NULL, err, errlen,
                             "%s", why);
    return 0;
}
