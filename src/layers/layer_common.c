/* layer_common.c - shape checks, initialisation, fused batch norm and
 * activations shared by the layer types. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers_internal.h"

enum { INIT_DEFAULT, INIT_NORMAL, INIT_UNIFORM, INIT_XAVIER, INIT_KAIMING, INIT_ZEROS };

int vt_layer_need_rank(vt_model *m, vt_layer *l, int k, int rank, const char *what,
                       char *err, size_t errlen)
{
    if (l->in_ndim[k] == rank)
        return 0;
    char sh[64];
    static const char *const hint[] = {"", " (add a [flatten] layer before it)",
                                       " (add a [sequence] layer before it to turn (C, T, H, W) into (T, C*H*W))",
                                       "", ""};
    return vt_ini_errorf(m->cfg, l->sec, l->n_in > 1 || vt_ini_has(l->sec, "from") ? "from" : NULL,
                         err, errlen, "needs %s input, got %s%s", what,
                         vt_layer_shape_str(l->in_ndim[k], l->in_shape[k], sh, sizeof sh),
                         l->in_ndim[k] == 4 && rank < 4 ? hint[rank] : "");
}

int vt_layer_need_single(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (l->n_in == 1)
        return 0;
    return vt_ini_errorf(m->cfg, l->sec, "from", err, errlen,
                         "takes one input, got %d", l->n_in);
}

int vt_layer_init_spec(vt_model *m, vt_layer *l, vt_init_spec *sp, char *err, size_t errlen)
{
    const char *s = vt_ini_str(l->sec, "init", "default");
    sp->bias = 0;
    sp->a = 0;
    static const struct {
        const char *name;
        int kind, needs_arg;
    } kinds[] = {{"default", INIT_DEFAULT, 0}, {"normal", INIT_NORMAL, 1},
                 {"uniform", INIT_UNIFORM, 1}, {"xavier", INIT_XAVIER, 0},
                 {"kaiming", INIT_KAIMING, 0}, {"zeros", INIT_ZEROS, 0}};
    char word[32];
    int used = 0;
    if (sscanf(s, "%31s%n", word, &used) != 1)
        goto bad;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(word, kinds[i].name))
            continue;
        sp->kind = kinds[i].kind;
        const char *rest = s + used;
        if (kinds[i].needs_arg) {
            char *end;
            double v = strtod(rest, &end);
            while (*end == ' ')
                end++;
            if (end == rest || *end || !(v > 0) || !isfinite(v))
                return vt_ini_errorf(m->cfg, l->sec, "init", err, errlen,
                                     "'%s' needs one positive number, e.g. '%s 0.01'", word, word);
            sp->a = (float)v;
        } else {
            while (*rest == ' ')
                rest++;
            if (*rest)
                return vt_ini_errorf(m->cfg, l->sec, "init", err, errlen,
                                     "'%s' takes no argument", word);
        }
        /* Read only when it applies: a default recorded for the default
         * init would make the serialized config (checkpoints) fail here. */
        if (sp->kind == INIT_DEFAULT && vt_ini_has(l->sec, "bias_init"))
            return vt_ini_errorf(m->cfg, l->sec, "bias_init", err, errlen,
                                 "bias_init needs a non-default init");
        if (sp->kind != INIT_DEFAULT)
            sp->bias = (float)vt_ini_float(l->sec, "bias_init", 0.0);
        return 0;
    }
bad:
    return vt_ini_errorf(m->cfg, l->sec, "init", err, errlen,
                         "unknown init '%s' (default, normal STD, uniform A, xavier, kaiming, zeros)", s);
}

/* One generator stream per tensor, element i from hash(seed, stream, i):
 * the fill is parallel and still a function of the seed alone (C3D's 78 M
 * weights would take seconds one by one). */
void vt_fill_uniform(vt_rng *r, float *x, size_t n, float bound)
{
    uint64_t seed = r->seed, stream = vt_rng_next_stream(r);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        x[i] = (2.0f * vt_hash_uniform(seed, stream, i) - 1.0f) * bound;
}

static void fill_normal(vt_rng *r, float *x, size_t n, float std)
{
    uint64_t seed = r->seed, stream = vt_rng_next_stream(r);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        /* Box-Muller on two hashes of the element index. */
        double u1 = ((double)(vt_hash64(seed, stream, 2 * i) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
        double u2 = (double)(vt_hash64(seed, stream, 2 * i + 1) >> 11) * (1.0 / 9007199254740992.0);
        x[i] = std * (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

void vt_layer_init_wb(const vt_init_spec *sp, vt_rng *r, vt_tensor *w, vt_tensor *b,
                      int fan_in, int fan_out)
{
    float bound = 1.0f / sqrtf((float)fan_in);
    switch (sp->kind) {
    case INIT_DEFAULT:
        vt_fill_uniform(r, w->data, w->numel, bound);
        if (b)
            vt_fill_uniform(r, b->data, b->numel, bound);
        return;
    case INIT_NORMAL:
        fill_normal(r, w->data, w->numel, sp->a);
        break;
    case INIT_UNIFORM:
        vt_fill_uniform(r, w->data, w->numel, sp->a);
        break;
    case INIT_XAVIER:
        vt_fill_uniform(r, w->data, w->numel, sqrtf(6.0f / (float)(fan_in + fan_out)));
        break;
    case INIT_KAIMING:
        fill_normal(r, w->data, w->numel, sqrtf(2.0f / (float)fan_in));
        break;
    case INIT_ZEROS:
        memset(w->data, 0, w->numel * sizeof(float));
        break;
    }
    if (b)
        for (size_t i = 0; i < b->numel; i++)
            b->data[i] = sp->bias;
}

int vt_layer_read_bn(vt_model *m, vt_layer *l, vt_bn_part *bn, int channels, char *err,
                     size_t errlen)
{
    (void)err;
    (void)errlen;
    bn->on = vt_ini_bool(l->sec, "batch_norm", 0);
    if (!bn->on)
        return 0;
    bn->momentum = (float)vt_ini_float(l->sec, "bn_momentum", 0.1);
    bn->eps = (float)vt_ini_float(l->sec, "bn_eps", 1e-5);
    static const char *const sfx[5] = {"_bn.weight", "_bn.bias", "_bn.running_mean",
                                       "_bn.running_var", "_bn.num_batches_tracked"};
    int one = 1;
    for (int i = 0; i < 5; i++)
        bn->idx[i] = vt_model_param(m, l, sfx[i], 1, i < 4 ? &channels : &one, i < 2);
    return 0;
}

void vt_layer_init_bn(vt_model *m, const vt_bn_part *bn)
{
    if (!bn->on)
        return;
    vt_tensor *w = vt_layer_p(m, bn->idx[0]), *var = vt_layer_p(m, bn->idx[3]);
    for (size_t i = 0; i < w->numel; i++)
        w->data[i] = 1.0f;
    for (size_t i = 0; i < var->numel; i++)
        var->data[i] = 1.0f;
    /* bias, running_mean and the counter start at zero (store is zeroed). */
}

vt_tensor *vt_layer_apply_bn(vt_model *m, vt_ctx *c, const vt_bn_part *bn, vt_tensor *x,
                             int axis)
{
    if (!bn->on)
        return x;
    if (c->training)
        vt_layer_p(m, bn->idx[4])->data[0] += 1.0f;
    return vt_batchnorm(c, x, axis, vt_layer_p(m, bn->idx[0]), vt_layer_p(m, bn->idx[1]),
                        vt_layer_p(m, bn->idx[2]), vt_layer_p(m, bn->idx[3]), bn->momentum,
                        bn->eps);
}

vt_tensor *vt_layer_bn_act(vt_model *m, vt_ctx *c, const vt_bn_part *bn, int act,
                           vt_tensor *y, int axis)
{
    vt_tensor *z = vt_layer_apply_bn(m, c, bn, y, axis);
    if (z != y)
        vt_release(c, y);
    if (act == VT_ACT_RELU)
        return vt_relu_inplace(c, z);
    vt_tensor *a = vt_layer_apply_act(c, act, z);
    if (a != z)
        vt_release(c, z);
    return a;
}

int vt_layer_read_act(vt_layer *l)
{
    const char *a = vt_ini_str(l->sec, "activation", "none");
    if (!strcmp(a, "relu"))
        return VT_ACT_RELU;
    if (!strcmp(a, "sigmoid"))
        return VT_ACT_SIGMOID;
    if (!strcmp(a, "tanh"))
        return VT_ACT_TANH;
    return VT_ACT_NONE;
}

vt_tensor *vt_layer_apply_act(vt_ctx *c, int act, vt_tensor *x)
{
    switch (act) {
    case VT_ACT_RELU:
        return vt_relu(c, x);
    case VT_ACT_SIGMOID:
        return vt_sigmoid(c, x);
    case VT_ACT_TANH:
        return vt_tanh(c, x);
    default:
        return x;
    }
}
