/* layer_dense.c - [linear], [dropout], [batchnorm] and the activation
 * layers [relu], [sigmoid], [tanh].
 * linear: vector (F) -> (units), or sequence (T, F) -> (T, units) applied at
 * every time step (the per-frame head of many-to-many models). */
#include <stdlib.h>
#include <string.h>

#include "layers_internal.h"

/* ==== linear ============================================================ */

typedef struct {
    int w, b;
    vt_bn_part bn;
    vt_init_spec init;
    int act;
} linear_st;

static const vt_ini_key LINEAR_KEYS[] = {
    {"units", VT_INI_INT, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, "output features"},
    {"bias", VT_INI_BOOL, 0, NULL, "default 1, or 0 with batch_norm"},
    VT_ACT_KEY, VT_BN_KEYS, VT_INIT_KEYS, VT_COMMON_LAYER_KEYS,
};
VT_SCHEMA(LINEAR_SCHEMA, "linear", LINEAR_KEYS, "fully connected layer y = x W^T + b");

static int build_linear(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (vt_layer_need_single(m, l, err, errlen))
        return -1;
    if (l->in_ndim[0] != 1 && l->in_ndim[0] != 2)
        return vt_layer_need_rank(m, l, 0, 1, "a vector (F) or a sequence (T, F)", err, errlen);
    linear_st *s = calloc(1, sizeof *s);
    l->st = s;
    int units = vt_ini_int(l->sec, "units", 0);
    int f = l->in_shape[0][l->in_ndim[0] - 1];
    l->ndim = l->in_ndim[0];
    memcpy(l->shape, l->in_shape[0], sizeof l->shape);
    l->shape[l->ndim - 1] = units;
    if (vt_layer_read_bn(m, l, &s->bn, units, err, errlen) ||
        vt_layer_init_spec(m, l, &s->init, err, errlen))
        return -1;
    s->act = vt_layer_read_act(l);
    s->w = vt_model_param(m, l, ".weight", 2, (int[]){units, f}, 1);
    s->b = vt_ini_bool(l->sec, "bias", !s->bn.on) ? vt_model_param(m, l, ".bias", 1, &units, 1) : -1;
    l->madds = (double)units * f * (l->ndim == 2 ? l->shape[0] : 1);
    return 0;
}

static void init_linear(vt_model *m, vt_layer *l, vt_rng *r)
{
    linear_st *s = l->st;
    vt_tensor *w = vt_layer_p(m, s->w);
    vt_layer_init_wb(&s->init, r, w, vt_layer_p(m, s->b), w->shape[1], w->shape[0]);
    vt_layer_init_bn(m, &s->bn);
}

static vt_tensor *forward_linear(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    linear_st *s = l->st;
    vt_tensor *y = vt_linear(c, in[0], vt_layer_p(m, s->w), vt_layer_p(m, s->b));
    /* (N, F): channels on axis 1; (N, T, F): channel-last, statistics over
     * N and T as BatchNorm1d on x.reshape(-1, F). */
    return vt_layer_bn_act(m, c, &s->bn, s->act, y, y->ndim - 1);
}

const vt_layer_type vt_layer_linear = {&LINEAR_SCHEMA, build_linear, init_linear, forward_linear};

/* ==== dropout =========================================================== */

static const vt_ini_key DROPOUT_KEYS[] = {
    {"p", VT_INI_FLOAT, VT_INI_REQUIRED | VT_INI_UNIT, NULL, "probability of zeroing an element"},
    VT_COMMON_LAYER_KEYS,
};
VT_SCHEMA(DROPOUT_SCHEMA, "dropout", DROPOUT_KEYS, "inverted dropout (training only)");

static int same_shape(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (vt_layer_need_single(m, l, err, errlen))
        return -1;
    l->ndim = l->in_ndim[0];
    memcpy(l->shape, l->in_shape[0], sizeof l->shape);
    return 0;
}

static int build_dropout(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (same_shape(m, l, err, errlen))
        return -1;
    float *p = malloc(sizeof *p);
    *p = (float)vt_ini_float(l->sec, "p", 0.5);
    l->st = p;
    return 0;
}

static vt_tensor *forward_dropout(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    (void)m;
    return vt_dropout(c, in[0], *(float *)l->st);
}

const vt_layer_type vt_layer_dropout = {&DROPOUT_SCHEMA, build_dropout, NULL, forward_dropout};

/* ==== batchnorm ========================================================= */

typedef struct {
    int idx[5];       /* weight, bias (-1 without affine), mean, var, count */
    float momentum, eps;
    int axis_last;    /* sequences: channel-last */
} bn_st;

static const vt_ini_key BN_KEYS[] = {
    {"momentum", VT_INI_FLOAT, VT_INI_UNIT, NULL, "running statistics momentum (default 0.1)"},
    {"eps", VT_INI_FLOAT, VT_INI_POSITIVE, NULL, "default 1e-5"},
    {"affine", VT_INI_BOOL, 0, NULL, "learnable scale and shift (default 1)"},
    VT_COMMON_LAYER_KEYS,
};
VT_SCHEMA(BN_SCHEMA, "batchnorm", BN_KEYS,
          "batch norm over channels: C of a volume, F of a vector or of every step of a sequence");

static int build_bn(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (same_shape(m, l, err, errlen))
        return -1;
    bn_st *s = calloc(1, sizeof *s);
    l->st = s;
    s->momentum = (float)vt_ini_float(l->sec, "momentum", 0.1);
    s->eps = (float)vt_ini_float(l->sec, "eps", 1e-5);
    int affine = vt_ini_bool(l->sec, "affine", 1);
    s->axis_last = l->ndim == 2;
    int ch = s->axis_last ? l->shape[1] : l->shape[0], one = 1;
    s->idx[0] = affine ? vt_model_param(m, l, ".weight", 1, &ch, 1) : -1;
    s->idx[1] = affine ? vt_model_param(m, l, ".bias", 1, &ch, 1) : -1;
    s->idx[2] = vt_model_param(m, l, ".running_mean", 1, &ch, 0);
    s->idx[3] = vt_model_param(m, l, ".running_var", 1, &ch, 0);
    s->idx[4] = vt_model_param(m, l, ".num_batches_tracked", 1, &one, 0);
    return 0;
}

static void init_bn(vt_model *m, vt_layer *l, vt_rng *r)
{
    (void)r;
    bn_st *s = l->st;
    if (s->idx[0] >= 0) {
        vt_tensor *w = vt_layer_p(m, s->idx[0]);
        for (size_t i = 0; i < w->numel; i++)
            w->data[i] = 1.0f;
    }
    vt_tensor *v = vt_layer_p(m, s->idx[3]);
    for (size_t i = 0; i < v->numel; i++)
        v->data[i] = 1.0f;
}

static vt_tensor *forward_bn(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    bn_st *s = l->st;
    if (c->training)
        vt_layer_p(m, s->idx[4])->data[0] += 1.0f;
    return vt_batchnorm(c, in[0], s->axis_last ? 2 : 1, vt_layer_p(m, s->idx[0]),
                        vt_layer_p(m, s->idx[1]), vt_layer_p(m, s->idx[2]),
                        vt_layer_p(m, s->idx[3]), s->momentum, s->eps);
}

const vt_layer_type vt_layer_batchnorm = {&BN_SCHEMA, build_bn, init_bn, forward_bn};

/* ==== activations ======================================================= */

static const vt_ini_key ACT_KEYS[] = {VT_COMMON_LAYER_KEYS};
VT_SCHEMA(RELU_SCHEMA, "relu", ACT_KEYS, "max(x, 0)");
VT_SCHEMA(SIGMOID_SCHEMA, "sigmoid", ACT_KEYS, "1 / (1 + exp(-x))");
VT_SCHEMA(TANH_SCHEMA, "tanh", ACT_KEYS, "tanh(x)");

static vt_tensor *fw_relu(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    (void)m;
    (void)l;
    return vt_relu(c, in[0]);
}
static vt_tensor *fw_sigmoid(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    (void)m;
    (void)l;
    return vt_sigmoid(c, in[0]);
}
static vt_tensor *fw_tanh(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    (void)m;
    (void)l;
    return vt_tanh(c, in[0]);
}

const vt_layer_type vt_layer_relu = {&RELU_SCHEMA, same_shape, NULL, fw_relu};
const vt_layer_type vt_layer_sigmoid = {&SIGMOID_SCHEMA, same_shape, NULL, fw_sigmoid};
const vt_layer_type vt_layer_tanh = {&TANH_SCHEMA, same_shape, NULL, fw_tanh};
