/* layer_pool.c - [maxpool3d], [avgpool3d], [maxpool2d] (every frame) and
 * [globalpool] (average over time, space or both). Volume in, volume out. */
#include <stdlib.h>
#include <string.h>

#include "layers_internal.h"

typedef struct {
    vt_pool3d_args a;
    int kind;          /* 0 max3d, 1 avg3d, 2 max2d */
} pool_st;

static const vt_ini_key POOL3D_KEYS[] = {
    {"size", VT_INI_SHAPE3, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, "window TxHxW or one number"},
    {"stride", VT_INI_SHAPE3, VT_INI_POSITIVE, NULL, "default = size"},
    {"pad", VT_INI_SHAPE3, VT_INI_NONNEG, NULL, "default 0; at most half the window"},
    {"ceil_mode", VT_INI_BOOL, 0, NULL, "1: round the output size up (PyTorch ceil_mode)"},
    VT_COMMON_LAYER_KEYS,
};
static const vt_ini_key POOL2D_KEYS[] = {
    {"size", VT_INI_SHAPE2, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, "window HxW or one number"},
    {"stride", VT_INI_SHAPE2, VT_INI_POSITIVE, NULL, "default = size"},
    {"pad", VT_INI_SHAPE2, VT_INI_NONNEG, NULL, "default 0; at most half the window"},
    {"ceil_mode", VT_INI_BOOL, 0, NULL, "1: round the output size up (PyTorch ceil_mode)"},
    VT_COMMON_LAYER_KEYS,
};
static const vt_ini_key GLOBAL_KEYS[] = {
    {"over", VT_INI_STRING, 0, "all|space|time", "average over all of T, H, W (default), space or time"},
    VT_COMMON_LAYER_KEYS,
};
VT_SCHEMA(MAX3D_SCHEMA, "maxpool3d", POOL3D_KEYS, "3D max pooling");
VT_SCHEMA(AVG3D_SCHEMA, "avgpool3d", POOL3D_KEYS, "3D average pooling (padding counted)");
VT_SCHEMA(MAX2D_SCHEMA, "maxpool2d", POOL2D_KEYS, "2D max pooling of every frame");
VT_SCHEMA(GLOBAL_SCHEMA, "globalpool", GLOBAL_KEYS, "global average pooling");

static int build(vt_model *m, vt_layer *l, int kind, char *err, size_t errlen)
{
    if (vt_layer_need_single(m, l, err, errlen) ||
        vt_layer_need_rank(m, l, 0, 4, "a volume (C, T, H, W)", err, errlen))
        return -1;
    pool_st *s = calloc(1, sizeof *s);
    l->st = s;
    s->kind = kind;
    int k[3], st[3], pd[3];
    static const int zero[3] = {0, 0, 0};
    if (kind != 2) {
        vt_ini_shape3(l->sec, "size", NULL, k);
        vt_ini_shape3(l->sec, "stride", k, st);
        vt_ini_shape3(l->sec, "pad", zero, pd);
    } else {
        k[0] = st[0] = 1;
        pd[0] = 0;
        vt_ini_shape2(l->sec, "size", NULL, k + 1);
        vt_ini_shape2(l->sec, "stride", k + 1, st + 1);
        vt_ini_shape2(l->sec, "pad", zero, pd + 1);
    }
    s->a.ceil_mode = vt_ini_bool(l->sec, "ceil_mode", 0);
    l->ndim = 4;
    l->shape[0] = l->in_shape[0][0];
    static const char *const axis[3] = {"T", "H", "W"};
    for (int d = 0; d < 3; d++) {
        s->a.kernel[d] = k[d];
        s->a.stride[d] = st[d];
        s->a.pad[d] = pd[d];
        if (2 * pd[d] > k[d])
            return vt_ini_errorf(m->cfg, l->sec, "pad", err, errlen,
                                 "padding %d along %s is more than half the window %d", pd[d],
                                 axis[d], k[d]);
        int in = l->in_shape[0][d + 1];
        int o = vt_pool_out_size(in, k[d], st[d], pd[d], s->a.ceil_mode);
        if (o < 1) {
            char sh[64];
            return vt_ini_errorf(m->cfg, l->sec, "size", err, errlen,
                                 "window %dx%dx%d does not fit input %s along %s", k[0], k[1],
                                 k[2], vt_layer_shape_str(4, l->in_shape[0], sh, sizeof sh),
                                 axis[d]);
        }
        l->shape[d + 1] = o;
    }
    return 0;
}

static int build_max3d(vt_model *m, vt_layer *l, char *e, size_t n) { return build(m, l, 0, e, n); }
static int build_avg3d(vt_model *m, vt_layer *l, char *e, size_t n) { return build(m, l, 1, e, n); }
static int build_max2d(vt_model *m, vt_layer *l, char *e, size_t n) { return build(m, l, 2, e, n); }

static vt_tensor *forward(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    (void)m;
    pool_st *s = l->st;
    if (s->kind == 1)
        return vt_avgpool3d(c, in[0], &s->a);
    /* maxpool2d per frame is maxpool3d with a 1-frame window. */
    return vt_maxpool3d(c, in[0], &s->a);
}

const vt_layer_type vt_layer_maxpool3d = {&MAX3D_SCHEMA, build_max3d, NULL, forward};
const vt_layer_type vt_layer_avgpool3d = {&AVG3D_SCHEMA, build_avg3d, NULL, forward};
const vt_layer_type vt_layer_maxpool2d = {&MAX2D_SCHEMA, build_max2d, NULL, forward};

static int build_global(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (vt_layer_need_single(m, l, err, errlen) ||
        vt_layer_need_rank(m, l, 0, 4, "a volume (C, T, H, W)", err, errlen))
        return -1;
    const char *over = vt_ini_str(l->sec, "over", "all");
    int *o = calloc(3, sizeof *o);
    l->st = o;
    const int *in = l->in_shape[0];
    o[0] = strcmp(over, "space") == 0 ? in[1] : 1;
    o[1] = strcmp(over, "time") == 0 ? in[2] : 1;
    o[2] = strcmp(over, "time") == 0 ? in[3] : 1;
    l->ndim = 4;
    l->shape[0] = in[0];
    for (int d = 0; d < 3; d++)
        l->shape[d + 1] = o[d];
    return 0;
}

static vt_tensor *forward_global(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    (void)m;
    const int *o = l->st;
    return vt_adaptive_avgpool3d(c, in[0], o[0], o[1], o[2]);
}

const vt_layer_type vt_layer_globalpool = {&GLOBAL_SCHEMA, build_global, NULL, forward_global};
