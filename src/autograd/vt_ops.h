/* vt_ops.h - differentiable ops. Semantics, shapes and defaults follow the
 * PyTorch namesake so fixtures written by tools/ compare directly.
 *
 * Every op: allocates its output in the context's arena; when
 * vt_needs_grad() holds it saves what backward needs and records one node;
 * in eval/no-grad mode it saves nothing. Each op lives in its own file
 * (op_<name>.c) with forward and backward side by side and is listed once in
 * ops_table.c.
 */
#ifndef VT_OPS_H
#define VT_OPS_H

#include "vt_autograd.h"

/* ==== Dense ============================================================ */

/* y = x W^T + b over the last dim. x (..., F), w (O, F), b (O) or NULL. */
vt_tensor *vt_linear(vt_ctx *c, vt_tensor *x, vt_tensor *w, vt_tensor *b);
/* a (M, K) @ b (K, N), or batched a (B, M, K) @ b (B, K, N). */
vt_tensor *vt_matmul(vt_ctx *c, vt_tensor *a, vt_tensor *b);

/* ==== Convolution ====================================================== */

typedef struct {
    int stride[3];   /* t, h, w */
    int pad[3];
    int dilation[3];
    int groups;
} vt_conv3d_args;

/* x (N, C, T, H, W), w (O, C/groups, kt, kh, kw), b (O) or NULL
 * -> (N, O, To, Ho, Wo). A zero in stride/dilation/groups means 1. */
vt_tensor *vt_conv3d(vt_ctx *c, vt_tensor *x, vt_tensor *w, vt_tensor *b,
                     const vt_conv3d_args *a);
/* vt_relu_inplace(vt_conv3d(...)), the same values and gradients; with no
 * gradient to record (evaluation) the ReLU is applied as the convolution
 * stores its output, saving a pass over it. */
vt_tensor *vt_conv3d_relu(vt_ctx *c, vt_tensor *x, vt_tensor *w, vt_tensor *b,
                          const vt_conv3d_args *a);

typedef struct {
    int stride[2];   /* h, w */
    int pad[2];
    int dilation[2];
    int groups;
} vt_conv2d_args;

/* nn.Conv2d on every frame: x (N, C, T, H, W), w (O, C/groups, kh, kw)
 * -> (N, O, T, Ho, Wo); time is folded into the batch. */
vt_tensor *vt_conv2d_frames(vt_ctx *c, vt_tensor *x, vt_tensor *w,
                            vt_tensor *b, const vt_conv2d_args *a);
/* The same with a ReLU, as vt_conv3d_relu. */
vt_tensor *vt_conv2d_frames_relu(vt_ctx *c, vt_tensor *x, vt_tensor *w,
                                 vt_tensor *b, const vt_conv2d_args *a);

/* Plain reference kernels (direct loops), kept beside the fast path so a
 * test can show they agree. Gradients are accumulated (+=); any of
 * gx/gw/gb may be NULL. */
void vt_conv3d_ref_forward(const vt_tensor *x, const vt_tensor *w,
                           const vt_tensor *b, const vt_conv3d_args *a,
                           vt_tensor *y);
void vt_conv3d_ref_backward(const vt_tensor *x, const vt_tensor *w,
                            const vt_conv3d_args *a, const float *gy,
                            float *gx, float *gw, float *gb);
/* Output extent of one dimension, as PyTorch (floor). */
int vt_conv_out_size(int in, int k, int stride, int pad, int dilation);

/* ==== Pooling ========================================================== */

typedef struct {
    int kernel[3];   /* t, h, w */
    int stride[3];   /* 0 means = kernel */
    int pad[3];
    int ceil_mode;
} vt_pool3d_args;

typedef struct {
    int kernel[2];
    int stride[2];
    int pad[2];
    int ceil_mode;
} vt_pool2d_args;

/* Output extent as PyTorch's pooling_output_shape (ceil_mode: the last
 * window must start inside the input or left padding). */
int vt_pool_out_size(int in, int k, int stride, int pad, int ceil_mode);

/* (N, C, T, H, W) -> (N, C, To, Ho, Wo). Max: padding is -inf; ties send the
 * gradient to the first maximum in scan order. */
vt_tensor *vt_maxpool3d(vt_ctx *c, vt_tensor *x, const vt_pool3d_args *a);
vt_tensor *vt_maxpool2d_frames(vt_ctx *c, vt_tensor *x,
                               const vt_pool2d_args *a);
/* count_include_pad = True, as PyTorch's default. */
vt_tensor *vt_avgpool3d(vt_ctx *c, vt_tensor *x, const vt_pool3d_args *a);
/* nn.AdaptiveAvgPool3d((ot, oh, ow)). Global over time: (1, H, W); over
 * space: (T, 1, 1); both: (1, 1, 1). */
vt_tensor *vt_adaptive_avgpool3d(vt_ctx *c, vt_tensor *x, int ot, int oh,
                                 int ow);

/* ==== Elementwise ====================================================== */

vt_tensor *vt_relu(vt_ctx *c, vt_tensor *x);
/* relu(x) for an x the caller gives up (as vt_release): written over x's
 * data when no recorded backward reads it, else into a new tensor. Same
 * values and gradients as vt_relu; x's data must not be read again. */
vt_tensor *vt_relu_inplace(vt_ctx *c, vt_tensor *x);
vt_tensor *vt_sigmoid(vt_ctx *c, vt_tensor *x);
vt_tensor *vt_tanh(vt_ctx *c, vt_tensor *x);
/* Inverted dropout: kept elements scaled by 1/(1-p). Identity when
 * !c->training or p == 0. The mask comes from c->rng (one stream per call),
 * so it is a function of the seed alone. */
vt_tensor *vt_dropout(vt_ctx *c, vt_tensor *x, float p);
vt_tensor *vt_add(vt_ctx *c, vt_tensor *a, vt_tensor *b); /* same shape */
vt_tensor *vt_mul(vt_ctx *c, vt_tensor *a, vt_tensor *b); /* same shape */

/* ==== Normalisation ==================================================== */

/* Batch norm over channel axis `axis` of x (1 for (N, C, ...) activations:
 * BatchNorm1d on (N, F), BatchNorm2d per frame and BatchNorm3d all give the
 * same statistics over every other axis; ndim-1 for channel-last sequences
 * (N, T, F), i.e. BatchNorm1d applied to x.reshape(-1, F)).
 * Training (c->training): normalise with the biased batch variance and
 * update running_mean/var in place with the unbiased one:
 *   running = (1 - momentum) * running + momentum * batch.
 * Eval: normalise with the running statistics. gamma/beta may be NULL
 * (affine = False). running_* are buffers (no gradient). */
vt_tensor *vt_batchnorm(vt_ctx *c, vt_tensor *x, int axis, vt_tensor *gamma,
                        vt_tensor *beta, vt_tensor *running_mean,
                        vt_tensor *running_var, float momentum, float eps);

/* ==== Shape ============================================================ */

/* Same data, new shape (numel must match). One dim may be -1. */
vt_tensor *vt_reshape(vt_ctx *c, vt_tensor *x, int ndim, const int *shape);
/* (N, ...) -> (N, prod(...)), as torch.flatten(x, 1). */
vt_tensor *vt_flatten(vt_ctx *c, vt_tensor *x);
/* out.shape[i] = x.shape[perm[i]], as x.permute(perm).contiguous(). */
vt_tensor *vt_permute(vt_ctx *c, vt_tensor *x, const int *perm);
/* torch.cat(xs, axis): shapes equal except along axis. */
vt_tensor *vt_concat(vt_ctx *c, int n, vt_tensor *const *xs, int axis);
/* x.narrow(axis, start, length): a copy of the window, axis kept. */
vt_tensor *vt_narrow(vt_ctx *c, vt_tensor *x, int axis, int start, int length);
/* x.mean(axis) with the axis removed. For (N, T, F) and axis 1: mean over
 * time. */
vt_tensor *vt_mean(vt_ctx *c, vt_tensor *x, int axis);

/* ==== Losses =========================================================== */

/* F.cross_entropy(logits, labels, label_smoothing=ls), mean over rows.
 * logits (N, K) with labels[N], or (N, T, K) with labels[N*T] for a loss at
 * every time step (mean over N*T). Returns a scalar (ndim 1, shape (1)). */
vt_tensor *vt_cross_entropy(vt_ctx *c, vt_tensor *logits, const int *labels,
                            float label_smoothing);

/* ==== Recurrent and attention ========================================= */

typedef struct {
    int input_size;
    int hidden;
    int layers;
    int bidirectional;
} vt_lstm_args;

/* nn.LSTM(batch_first=True). x (N, T, F). params: for each layer l and
 * direction d (forward, then reverse) four tensors in state_dict order:
 *   weight_ih_l{l}[_reverse] (4H, F_l), weight_hh (4H, H),
 *   bias_ih (4H), bias_hh (4H)          gate order i, f, g, o
 * where F_0 = input_size and F_l = H * (1 + bidirectional) for l > 0.
 * h0/c0 (L*D, N, H) or NULL for zeros. Returns every hidden state of the
 * last layer (N, T, D*H); *h_n and *c_n (L*D, N, H) if not NULL. */
vt_tensor *vt_lstm(vt_ctx *c, vt_tensor *x, const vt_lstm_args *a,
                   vt_tensor *const *params, vt_tensor *h0, vt_tensor *c0,
                   vt_tensor **h_n, vt_tensor **c_n);
/* Plain reference of one layer and direction (loops, no BLAS) for tests:
 * x (N, T, F), h0/c0 (N, H) or NULL; y (N, T, H), hn/cn (N, H). */
void vt_lstm_ref_forward(const vt_tensor *x, const vt_tensor *w_ih,
                         const vt_tensor *w_hh, const vt_tensor *b_ih,
                         const vt_tensor *b_hh, const float *h0,
                         const float *c0, int reverse, float *y, float *hn,
                         float *cn);

/* The seed's ConvLSTM temporal attention: h (N, T, F), w (1, F), b (1):
 *   score_t = w . h_t + b;  a = softmax_t(score);  out = sum_t a_t h_t
 * -> (N, F). */
vt_tensor *vt_attention_pool(vt_ctx *c, vt_tensor *h, vt_tensor *w,
                             vt_tensor *b);

/* ==== Helpers (no autograd) ========================================== */

/* Row-wise softmax of (rows, k) into out (may alias in). */
void vt_softmax_rows(const float *in, float *out, int rows, int k);

#endif
