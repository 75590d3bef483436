/* layers_internal.h - what the layer files share with model.c. Not public. */
#ifndef VT_LAYERS_INTERNAL_H
#define VT_LAYERS_INTERNAL_H

#include "vt_model.h"
#include "vt_ops.h"

extern const vt_layer_type vt_layer_conv3d, vt_layer_conv2d, vt_layer_maxpool3d,
    vt_layer_maxpool2d, vt_layer_avgpool3d, vt_layer_globalpool, vt_layer_flatten,
    vt_layer_sequence, vt_layer_linear, vt_layer_dropout, vt_layer_batchnorm,
    vt_layer_relu, vt_layer_sigmoid, vt_layer_tanh, vt_layer_lstm, vt_layer_attention,
    vt_layer_timemean, vt_layer_add, vt_layer_concat;
extern const vt_ini_section_schema vt_model_ini_schema;

/* Keys every layer section accepts. */
#define VT_COMMON_LAYER_KEYS                                                            \
    {"from", VT_INI_STRINGS, 0, NULL,                                                   \
     "input layer(s) by name (default: the previous layer; 'input' is the clip)"},      \
    {"frozen", VT_INI_BOOL, 0, NULL, "1: parameters are not trained"},                  \
    {"lr_mult", VT_INI_FLOAT, VT_INI_NONNEG, NULL, "learning-rate multiplier (default 1)"}
#define VT_INIT_KEYS                                                                    \
    {"init", VT_INI_STRING, 0, NULL,                                                    \
     "default | normal STD | uniform A | xavier | kaiming | zeros"},                    \
    {"bias_init", VT_INI_FLOAT, 0, NULL, "bias value with a non-default init (default 0)"}
#define VT_ACT_KEY {"activation", VT_INI_STRING, 0, "none|relu|sigmoid|tanh", "fused activation"}
#define VT_BN_KEYS                                                                      \
    {"batch_norm", VT_INI_BOOL, 0, NULL, "1: batch norm (sibling params NAME_bn.*) before the activation"}, \
    {"bn_momentum", VT_INI_FLOAT, VT_INI_UNIT, NULL, "batch norm momentum (default 0.1)"}, \
    {"bn_eps", VT_INI_FLOAT, VT_INI_POSITIVE, NULL, "batch norm epsilon (default 1e-5)"}

#define VT_SCHEMA(var, type, keys, doc)                                                 \
    static const vt_ini_section_schema var = {type, VT_INI_LAYER, keys,                 \
                                              (int)(sizeof keys / sizeof keys[0]), 0, doc}

char *vt_layer_shape_str(int ndim, const int *shape, char *buf, size_t len);

/* Input checks; on failure an error naming the layer, its input shape and
 * what it needs. */
int vt_layer_need_rank(vt_model *m, vt_layer *l, int k, int rank, const char *what,
                       char *err, size_t errlen);
int vt_layer_need_single(vt_model *m, vt_layer *l, char *err, size_t errlen);

/* Parameter initialisation ("init" / "bias_init" keys). */
typedef struct {
    int kind;        /* INIT_* */
    float a;         /* std, bound or constant */
    float bias;
} vt_init_spec;
int vt_layer_init_spec(vt_model *m, vt_layer *l, vt_init_spec *sp, char *err, size_t errlen);
/* Weight of fan_in / fan_out, then bias (may be NULL): PyTorch defaults
 * (kaiming_uniform a=sqrt(5) -> U(+-1/sqrt(fan_in)), bias the same) unless
 * the spec says otherwise. */
void vt_layer_init_wb(const vt_init_spec *sp, vt_rng *r, vt_tensor *w, vt_tensor *b,
                      int fan_in, int fan_out);
void vt_fill_uniform(vt_rng *r, float *x, size_t n, float bound);

/* Fused batch norm (sibling "<name>_bn.*") and activation of conv/linear. */
typedef struct {
    int on;
    int idx[5];      /* weight, bias, running_mean, running_var, num_batches_tracked */
    float momentum, eps;
} vt_bn_part;
int vt_layer_read_bn(vt_model *m, vt_layer *l, vt_bn_part *bn, int channels, char *err,
                     size_t errlen);
void vt_layer_init_bn(vt_model *m, const vt_bn_part *bn);
vt_tensor *vt_layer_apply_bn(vt_model *m, vt_ctx *c, const vt_bn_part *bn, vt_tensor *x,
                             int axis);
int vt_layer_read_act(vt_layer *l);
vt_tensor *vt_layer_apply_act(vt_ctx *c, int act, vt_tensor *x);
/* Batch norm (if on), then the activation, on y: a conv's or linear's own
 * fresh output, which nothing outside the layer sees. Each intermediate is
 * released (vt_release) once the next op has read it. */
vt_tensor *vt_layer_bn_act(vt_model *m, vt_ctx *c, const vt_bn_part *bn, int act,
                           vt_tensor *y, int axis);

static inline vt_tensor *vt_layer_p(vt_model *m, int idx)
{
    return idx < 0 ? NULL : vt_store_tensor(&m->store, idx);
}

#endif
