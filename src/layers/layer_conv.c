/* layer_conv.c - [conv3d NAME] and [conv2d NAME] (2D convolution applied to
 * every frame). Volume in (C, T, H, W), volume out (filters, To, Ho, Wo).
 * Optional fused batch norm (NAME_bn.*) and activation, in that order. */
#include <stdlib.h>

#include "layers_internal.h"

typedef struct {
    vt_conv3d_args a;   /* conv2d: the t entries are 1 / 0 */
    int k[3];
    int w, b;           /* store indexes; b = -1 without bias */
    vt_bn_part bn;
    vt_init_spec init;
    int act;
} conv_st;

static const vt_ini_key CONV3D_KEYS[] = {
    {"filters", VT_INI_INT, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, "output channels"},
    {"size", VT_INI_SHAPE3, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, "kernel TxHxW or one number"},
    {"stride", VT_INI_SHAPE3, VT_INI_POSITIVE, NULL, "default 1"},
    {"pad", VT_INI_SHAPE3, VT_INI_NONNEG, NULL, "zero padding, default 0"},
    {"dilation", VT_INI_SHAPE3, VT_INI_POSITIVE, NULL, "default 1"},
    {"groups", VT_INI_INT, VT_INI_POSITIVE, NULL, "default 1"},
    {"bias", VT_INI_BOOL, 0, NULL, "default 1, or 0 with batch_norm"},
    VT_ACT_KEY, VT_BN_KEYS, VT_INIT_KEYS, VT_COMMON_LAYER_KEYS,
};
static const vt_ini_key CONV2D_KEYS[] = {
    {"filters", VT_INI_INT, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, "output channels"},
    {"size", VT_INI_SHAPE2, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, "kernel HxW or one number"},
    {"stride", VT_INI_SHAPE2, VT_INI_POSITIVE, NULL, "default 1"},
    {"pad", VT_INI_SHAPE2, VT_INI_NONNEG, NULL, "zero padding, default 0"},
    {"dilation", VT_INI_SHAPE2, VT_INI_POSITIVE, NULL, "default 1"},
    {"groups", VT_INI_INT, VT_INI_POSITIVE, NULL, "default 1"},
    {"bias", VT_INI_BOOL, 0, NULL, "default 1, or 0 with batch_norm"},
    VT_ACT_KEY, VT_BN_KEYS, VT_INIT_KEYS, VT_COMMON_LAYER_KEYS,
};
VT_SCHEMA(CONV3D_SCHEMA, "conv3d", CONV3D_KEYS, "3D convolution over (C, T, H, W)");
VT_SCHEMA(CONV2D_SCHEMA, "conv2d", CONV2D_KEYS, "2D convolution applied to every frame");

static int build(vt_model *m, vt_layer *l, int is3d, char *err, size_t errlen)
{
    if (vt_layer_need_single(m, l, err, errlen) ||
        vt_layer_need_rank(m, l, 0, 4, "a volume (C, T, H, W)", err, errlen))
        return -1;
    conv_st *s = calloc(1, sizeof *s);
    l->st = s;
    int filters = vt_ini_int(l->sec, "filters", 0);
    static const int one[3] = {1, 1, 1}, zero[3] = {0, 0, 0};
    int st[3], pd[3], dl[3];
    if (is3d) {
        vt_ini_shape3(l->sec, "size", NULL, s->k);
        vt_ini_shape3(l->sec, "stride", one, st);
        vt_ini_shape3(l->sec, "pad", zero, pd);
        vt_ini_shape3(l->sec, "dilation", one, dl);
    } else {
        s->k[0] = st[0] = dl[0] = 1;
        pd[0] = 0;
        vt_ini_shape2(l->sec, "size", NULL, s->k + 1);
        vt_ini_shape2(l->sec, "stride", one, st + 1);
        vt_ini_shape2(l->sec, "pad", zero, pd + 1);
        vt_ini_shape2(l->sec, "dilation", one, dl + 1);
    }
    int groups = vt_ini_int(l->sec, "groups", 1);
    int cin = l->in_shape[0][0];
    if (cin % groups || filters % groups)
        return vt_ini_errorf(m->cfg, l->sec, "groups", err, errlen,
                             "groups = %d must divide the input channels (%d) and filters (%d)",
                             groups, cin, filters);
    for (int d = 0; d < 3; d++) {
        s->a.stride[d] = st[d];
        s->a.pad[d] = pd[d];
        s->a.dilation[d] = dl[d];
    }
    s->a.groups = groups;
    l->ndim = 4;
    l->shape[0] = filters;
    static const char *const axis[3] = {"T", "H", "W"};
    for (int d = 0; d < 3; d++) {
        int in = l->in_shape[0][d + 1];
        int o = vt_conv_out_size(in, s->k[d], st[d], pd[d], dl[d]);
        if (o < 1) {
            char sh[64];
            return vt_ini_errorf(m->cfg, l->sec, "size", err, errlen,
                                 "kernel %dx%dx%d does not fit input %s along %s "
                                 "(extent %d, padding %d)", s->k[0], s->k[1], s->k[2],
                                 vt_layer_shape_str(4, l->in_shape[0], sh, sizeof sh), axis[d],
                                 in, pd[d]);
        }
        l->shape[d + 1] = o;
    }
    if (vt_layer_read_bn(m, l, &s->bn, filters, err, errlen) ||
        vt_layer_init_spec(m, l, &s->init, err, errlen))
        return -1;
    s->act = vt_layer_read_act(l);
    int has_bias = vt_ini_bool(l->sec, "bias", !s->bn.on);
    int cg = cin / groups;
    if (is3d)
        s->w = vt_model_param(m, l, ".weight", 5, (int[]){filters, cg, s->k[0], s->k[1], s->k[2]}, 1);
    else
        s->w = vt_model_param(m, l, ".weight", 4, (int[]){filters, cg, s->k[1], s->k[2]}, 1);
    s->b = has_bias ? vt_model_param(m, l, ".bias", 1, &filters, 1) : -1;
    l->madds = (double)filters * l->shape[1] * l->shape[2] * l->shape[3] * cg * s->k[0] *
               s->k[1] * s->k[2];
    return 0;
}

static int build3d(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    return build(m, l, 1, err, errlen);
}
static int build2d(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    return build(m, l, 0, err, errlen);
}

static void init(vt_model *m, vt_layer *l, vt_rng *r)
{
    conv_st *s = l->st;
    vt_tensor *w = vt_layer_p(m, s->w);
    int rf = s->k[0] * s->k[1] * s->k[2];
    vt_layer_init_wb(&s->init, r, w, vt_layer_p(m, s->b), w->shape[1] * rf, w->shape[0] * rf / s->a.groups);
    vt_layer_init_bn(m, &s->bn);
}

static vt_tensor *forward(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in, int is3d)
{
    conv_st *s = l->st;
    vt_tensor *y;
    /* a ReLU straight after the conv is fused into it */
    const int relu = !s->bn.on && s->act == VT_ACT_RELU;
    if (is3d) {
        y = (relu ? vt_conv3d_relu : vt_conv3d)(c, in[0], vt_layer_p(m, s->w),
                                                vt_layer_p(m, s->b), &s->a);
    } else {
        vt_conv2d_args a = {{s->a.stride[1], s->a.stride[2]}, {s->a.pad[1], s->a.pad[2]},
                            {s->a.dilation[1], s->a.dilation[2]}, s->a.groups};
        y = (relu ? vt_conv2d_frames_relu : vt_conv2d_frames)(c, in[0], vt_layer_p(m, s->w),
                                                              vt_layer_p(m, s->b), &a);
    }
    return relu ? y : vt_layer_bn_act(m, c, &s->bn, s->act, y, 1);
}

static vt_tensor *fwd3d(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    return forward(m, l, c, in, 1);
}
static vt_tensor *fwd2d(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    return forward(m, l, c, in, 0);
}

const vt_layer_type vt_layer_conv3d = {&CONV3D_SCHEMA, build3d, init, fwd3d};
const vt_layer_type vt_layer_conv2d = {&CONV2D_SCHEMA, build2d, init, fwd2d};
