/* vt_model.h - layers and models built from INI configs.
 *
 * A model is the [model] section plus the layer sections of a config, in
 * order. Each layer reads the output of the layer before it, or of the
 * layers named in `from = a, b`; the model input is called `input`.
 * Shapes below are per sample (the batch dimension N is implicit):
 *   volume    (C, T, H, W)   activations of 3D/2D convolutional layers
 *   sequence  (T, F)         per-frame features, LSTM input/output
 *   vector    (F)            clip features, logits
 * The model's output is (classes) logits per clip, or (T, classes) logits
 * per frame (single-frame and many-to-many models; trained with the loss
 * at every frame and evaluated by averaging the frame probabilities).
 *
 * Parameter names are PyTorch state_dict names: "<layer>.weight",
 * "<layer>.bias"; a conv/linear layer with batch_norm = 1 adds a sibling
 * "<layer>_bn.{weight,bias,running_mean,running_var,num_batches_tracked}"
 * (num_batches_tracked is kept as a float buffer, stored as int64 in
 * checkpoints); LSTM parameters are "<layer>.weight_ih_l0" etc.
 * docs/config.md is the reference of every section and key.
 */
#ifndef VT_MODEL_H
#define VT_MODEL_H

#include <stdio.h>

#include "vt_autograd.h"
#include "vt_ini.h"

#define VT_MAX_FROM 8
#define VT_LAYER_MAX_PARAMS 40

typedef struct vt_model vt_model;
typedef struct vt_layer vt_layer;

/* One per section type; the table lives in model.c. */
typedef struct {
    const vt_ini_section_schema *schema;
    /* Read keys, check input shapes (l->in_shape), set the output shape
     * and register parameters with vt_model_param(). Errors through
     * vt_ini_errorf (FILE:LINE: layer 'NAME': ...). */
    int (*build)(vt_model *m, vt_layer *l, char *err, size_t errlen);
    /* Initialise parameters from the model's init RNG. NULL: none. */
    void (*init)(vt_model *m, vt_layer *l, vt_rng *r);
    vt_tensor *(*forward)(vt_model *m, vt_layer *l, vt_ctx *c,
                          vt_tensor *const *in);
} vt_layer_type;

struct vt_layer {
    const vt_layer_type *type;
    const char *name;           /* the section's NAME */
    vt_ini_section *sec;
    int n_in;
    int in[VT_MAX_FROM];        /* layer indexes; -1 = the model input */
    int in_ndim[VT_MAX_FROM];   /* per-sample input shapes */
    int in_shape[VT_MAX_FROM][4];
    int ndim;                   /* per-sample output shape */
    int shape[4];
    int n_params;
    int param[VT_LAYER_MAX_PARAMS]; /* store indexes */
    double madds;               /* multiply-adds per clip */
    int frozen;
    float lr_mult;
    void *st;                   /* per-type settings, malloc'd by build */
};

enum { VT_ACT_NONE, VT_ACT_RELU, VT_ACT_SIGMOID, VT_ACT_TANH };

struct vt_model {
    vt_ini *cfg;                /* borrowed; outlives the model */
    char name[64];
    int in_shape[4];            /* C, T, H, W */
    int classes;
    uint64_t seed;              /* init seed */
    vt_store store;
    vt_layer *layers;
    int n;
    int per_frame;              /* output is (T, classes) */
};

/* A schema and the storage its section list points into. */
#define VT_MODEL_MAX_SECTIONS 48
typedef struct {
    const vt_ini_section_schema *storage[VT_MODEL_MAX_SECTIONS];
    vt_ini_schema ini;
} vt_schema_buf;

/* The schema of every section a run config may hold: [model], each layer
 * type, and extra run sections given by the caller (train, data, optim,
 * schedule). Use &out->ini. */
void vt_model_schema(vt_schema_buf *out,
                     const vt_ini_section_schema *const *extra, int n_extra);

/* Builds the model from cfg's [model] and layer sections: shapes checked,
 * parameters registered and initialised from [model] seed. The caller
 * runs vt_ini_check_used() once every other section has been read too. */
int vt_model_build(vt_model *m, vt_ini *cfg, char *err, size_t errlen);
void vt_model_free(vt_model *m);

/* x (N, C, T, H, W) -> logits (N, classes) or (N, T, classes). Honours
 * c->training (dropout, batch norm) and c->grad_enabled. */
vt_tensor *vt_model_forward(vt_model *m, vt_ctx *c, vt_tensor *x);

/* Registers a parameter (trainable) or buffer of layer l as
 * "<l->name><suffix>", e.g. suffix ".weight". Returns the store index. */
int vt_model_param(vt_model *m, vt_layer *l, const char *suffix, int ndim,
                   const int *shape, int trainable);

/* The table printed by vtrain --dry-run: layer, type, output shape,
 * parameters, multiply-adds per clip; then totals. */
void vt_model_print(const vt_model *m, FILE *f);
size_t vt_model_param_count(const vt_model *m); /* trainable + frozen weights,
                                                   without BN buffers */
double vt_model_madds(const vt_model *m);

/* Loss of a batch: cross entropy of logits against labels (N), repeated
 * at every frame for per-frame outputs. */
vt_tensor *vt_model_loss(vt_model *m, vt_ctx *c, vt_tensor *logits,
                         const int *labels, float label_smoothing);
/* Class probabilities per clip (N, classes): softmax of the logits,
 * averaged over frames for per-frame outputs. */
void vt_model_probs(const vt_model *m, const vt_tensor *logits, float *probs);

#endif
