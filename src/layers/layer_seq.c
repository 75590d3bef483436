/* layer_seq.c - shape changes between volumes, sequences and vectors, the
 * recurrent and attention layers, and graph wiring:
 *   [flatten]    any -> vector (prod)            as torch.flatten(x, 1)
 *   [sequence]   volume (C, T, H, W) -> sequence (T, C*H*W)
 *   [lstm]       sequence (T, F) -> (T, D*H) (return = all) or (D*H) (last)
 *   [attention]  sequence (T, F) -> vector (F): softmax_t(w.h_t + b) weights
 *   [timemean]   sequence (T, F) -> vector (F)
 *   [add]        same-shape inputs -> their sum (residual connections)
 *   [concat]     inputs joined along channels or time */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers_internal.h"

static const vt_ini_key PLAIN_KEYS[] = {VT_COMMON_LAYER_KEYS};

/* ==== flatten, sequence, timemean ======================================= */

VT_SCHEMA(FLATTEN_SCHEMA, "flatten", PLAIN_KEYS, "flatten to a vector, as torch.flatten(x, 1)");
VT_SCHEMA(SEQUENCE_SCHEMA, "sequence", PLAIN_KEYS,
          "volume (C, T, H, W) to sequence (T, C*H*W): per-frame features");
VT_SCHEMA(TIMEMEAN_SCHEMA, "timemean", PLAIN_KEYS, "mean of a sequence over time");

static int build_flatten(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (vt_layer_need_single(m, l, err, errlen))
        return -1;
    int n = 1;
    for (int d = 0; d < l->in_ndim[0]; d++)
        n *= l->in_shape[0][d];
    l->ndim = 1;
    l->shape[0] = n;
    return 0;
}

static vt_tensor *forward_flatten(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    (void)m;
    (void)l;
    return vt_flatten(c, in[0]);
}

static int build_sequence(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (vt_layer_need_single(m, l, err, errlen) ||
        vt_layer_need_rank(m, l, 0, 4, "a volume (C, T, H, W)", err, errlen))
        return -1;
    const int *s = l->in_shape[0];
    l->ndim = 2;
    l->shape[0] = s[1];
    l->shape[1] = s[0] * s[2] * s[3];
    return 0;
}

static vt_tensor *forward_sequence(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    (void)m;
    vt_tensor *x = in[0];
    x = vt_permute(c, x, (int[]){0, 2, 1, 3, 4}); /* (N, T, C, H, W) */
    return vt_reshape(c, x, 3, (int[]){x->shape[0], l->shape[0], l->shape[1]});
}

static int build_timemean(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (vt_layer_need_single(m, l, err, errlen) ||
        vt_layer_need_rank(m, l, 0, 2, "a sequence (T, F)", err, errlen))
        return -1;
    l->ndim = 1;
    l->shape[0] = l->in_shape[0][1];
    return 0;
}

static vt_tensor *forward_timemean(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    (void)m;
    (void)l;
    return vt_mean(c, in[0], 1);
}

const vt_layer_type vt_layer_flatten = {&FLATTEN_SCHEMA, build_flatten, NULL, forward_flatten};
const vt_layer_type vt_layer_sequence = {&SEQUENCE_SCHEMA, build_sequence, NULL, forward_sequence};
const vt_layer_type vt_layer_timemean = {&TIMEMEAN_SCHEMA, build_timemean, NULL, forward_timemean};

/* ==== lstm ============================================================== */

typedef struct {
    vt_lstm_args a;
    int last;
    int first;        /* store index of weight_ih_l0; the rest follow */
} lstm_st;

static const vt_ini_key LSTM_KEYS[] = {
    {"hidden", VT_INI_INT, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, "hidden units H"},
    {"layers", VT_INI_INT, VT_INI_POSITIVE, NULL, "stacked layers (default 1)"},
    {"bidirectional", VT_INI_BOOL, 0, NULL, "1: forward and reverse directions, outputs concatenated"},
    {"return", VT_INI_STRING, 0, "all|last",
     "all: every step (T, D*H) (default); last: the output at the last step (D*H)"},
    VT_COMMON_LAYER_KEYS,
};
VT_SCHEMA(LSTM_SCHEMA, "lstm", LSTM_KEYS, "LSTM (PyTorch nn.LSTM, batch_first, gates i, f, g, o)");

static int build_lstm(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (vt_layer_need_single(m, l, err, errlen) ||
        vt_layer_need_rank(m, l, 0, 2, "a sequence (T, F)", err, errlen))
        return -1;
    lstm_st *s = calloc(1, sizeof *s);
    l->st = s;
    s->a.input_size = l->in_shape[0][1];
    s->a.hidden = vt_ini_int(l->sec, "hidden", 0);
    s->a.layers = vt_ini_int(l->sec, "layers", 1);
    s->a.bidirectional = vt_ini_bool(l->sec, "bidirectional", 0);
    s->last = strcmp(vt_ini_str(l->sec, "return", "all"), "last") == 0;
    int H = s->a.hidden, D = 1 + s->a.bidirectional, T = l->in_shape[0][0];
    for (int k = 0; k < s->a.layers; k++) {
        int f = k == 0 ? s->a.input_size : D * H;
        for (int d = 0; d < D; d++) {
            char sfx[64];
            const char *rev = d ? "_reverse" : "";
            snprintf(sfx, sizeof sfx, ".weight_ih_l%d%s", k, rev);
            int i0 = vt_model_param(m, l, sfx, 2, (int[]){4 * H, f}, 1);
            if (k == 0 && d == 0)
                s->first = i0;
            snprintf(sfx, sizeof sfx, ".weight_hh_l%d%s", k, rev);
            vt_model_param(m, l, sfx, 2, (int[]){4 * H, H}, 1);
            snprintf(sfx, sizeof sfx, ".bias_ih_l%d%s", k, rev);
            vt_model_param(m, l, sfx, 1, (int[]){4 * H}, 1);
            snprintf(sfx, sizeof sfx, ".bias_hh_l%d%s", k, rev);
            vt_model_param(m, l, sfx, 1, (int[]){4 * H}, 1);
            l->madds += (double)T * 4 * H * (f + H);
        }
    }
    if (s->last) {
        l->ndim = 1;
        l->shape[0] = D * H;
    } else {
        l->ndim = 2;
        l->shape[0] = T;
        l->shape[1] = D * H;
    }
    return 0;
}

/* PyTorch: every LSTM parameter U(-1/sqrt(H), 1/sqrt(H)). */
static void init_lstm(vt_model *m, vt_layer *l, vt_rng *r)
{
    lstm_st *s = l->st;
    float bound = 1.0f / sqrtf((float)s->a.hidden);
    for (int i = 0; i < l->n_params; i++) {
        vt_tensor *t = vt_layer_p(m, l->param[i]);
        vt_fill_uniform(r, t->data, t->numel, bound);
    }
}

static vt_tensor *forward_lstm(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    lstm_st *s = l->st;
    vt_tensor *p[VT_LAYER_MAX_PARAMS];
    for (int i = 0; i < l->n_params; i++)
        p[i] = vt_layer_p(m, l->param[i]);
    vt_tensor *y = vt_lstm(c, in[0], &s->a, p, NULL, NULL, NULL, NULL);
    if (!s->last)
        return y;
    int n = y->shape[0], t = y->shape[1], f = y->shape[2];
    y = vt_narrow(c, y, 1, t - 1, 1);
    return vt_reshape(c, y, 2, (int[]){n, f});
}

const vt_layer_type vt_layer_lstm = {&LSTM_SCHEMA, build_lstm, init_lstm, forward_lstm};

/* ==== attention ========================================================= */

typedef struct {
    int w, b;
    vt_init_spec init;
} att_st;

static const vt_ini_key ATT_KEYS[] = {VT_INIT_KEYS, VT_COMMON_LAYER_KEYS};
VT_SCHEMA(ATT_SCHEMA, "attention", ATT_KEYS,
          "temporal attention pooling: weight (1, F), bias (1) as nn.Linear(F, 1)");

static int build_att(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (vt_layer_need_single(m, l, err, errlen) ||
        vt_layer_need_rank(m, l, 0, 2, "a sequence (T, F)", err, errlen))
        return -1;
    att_st *s = calloc(1, sizeof *s);
    l->st = s;
    if (vt_layer_init_spec(m, l, &s->init, err, errlen))
        return -1;
    int f = l->in_shape[0][1];
    s->w = vt_model_param(m, l, ".weight", 2, (int[]){1, f}, 1);
    s->b = vt_model_param(m, l, ".bias", 1, (int[]){1}, 1);
    l->ndim = 1;
    l->shape[0] = f;
    l->madds = 2.0 * l->in_shape[0][0] * f;
    return 0;
}

static void init_att(vt_model *m, vt_layer *l, vt_rng *r)
{
    att_st *s = l->st;
    vt_tensor *w = vt_layer_p(m, s->w);
    vt_layer_init_wb(&s->init, r, w, vt_layer_p(m, s->b), w->shape[1], 1);
}

static vt_tensor *forward_att(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    att_st *s = l->st;
    return vt_attention_pool(c, in[0], vt_layer_p(m, s->w), vt_layer_p(m, s->b));
}

const vt_layer_type vt_layer_attention = {&ATT_SCHEMA, build_att, init_att, forward_att};

/* ==== add, concat ======================================================= */

VT_SCHEMA(ADD_SCHEMA, "add", PLAIN_KEYS, "sum of the layers named in from (same shapes)");
static const vt_ini_key CONCAT_KEYS[] = {
    {"axis", VT_INI_STRING, 0, "channels|time",
     "channels (default): C of volumes, F of sequences and vectors; time: T"},
    VT_COMMON_LAYER_KEYS,
};
VT_SCHEMA(CONCAT_SCHEMA, "concat", CONCAT_KEYS, "the layers named in from, joined along an axis");

static int need_two(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (l->n_in >= 2 && vt_ini_has(l->sec, "from"))
        return 0;
    return vt_ini_errorf(m->cfg, l->sec, "from", err, errlen,
                         "needs at least two inputs: from = layer_a, layer_b");
}

static int build_add(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (need_two(m, l, err, errlen))
        return -1;
    for (int k = 1; k < l->n_in; k++)
        if (l->in_ndim[k] != l->in_ndim[0] ||
            memcmp(l->in_shape[k], l->in_shape[0], (size_t)l->in_ndim[0] * sizeof(int))) {
            char a[64], b[64];
            return vt_ini_errorf(m->cfg, l->sec, "from", err, errlen,
                                 "inputs must have the same shape: input 1 is %s, input %d is %s",
                                 vt_layer_shape_str(l->in_ndim[0], l->in_shape[0], a, sizeof a),
                                 k + 1, vt_layer_shape_str(l->in_ndim[k], l->in_shape[k], b, sizeof b));
        }
    l->ndim = l->in_ndim[0];
    memcpy(l->shape, l->in_shape[0], sizeof l->shape);
    return 0;
}

static vt_tensor *forward_add(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    (void)m;
    vt_tensor *y = in[0];
    for (int k = 1; k < l->n_in; k++)
        y = vt_add(c, y, in[k]);
    return y;
}

static int build_concat(vt_model *m, vt_layer *l, char *err, size_t errlen)
{
    if (need_two(m, l, err, errlen))
        return -1;
    int time = strcmp(vt_ini_str(l->sec, "axis", "channels"), "time") == 0;
    int nd = l->in_ndim[0];
    if (time && nd == 1)
        return vt_ini_errorf(m->cfg, l->sec, "axis", err, errlen,
                             "vectors have no time axis");
    /* Per-sample axis: volumes C=0, T=1; sequences T=0, F=1; vectors F=0. */
    int ax = nd == 4 ? time : nd == 2 ? !time : 0;
    int *st = malloc(sizeof *st);
    *st = ax + 1; /* with the batch dimension */
    l->st = st;
    l->ndim = nd;
    memcpy(l->shape, l->in_shape[0], sizeof l->shape);
    l->shape[ax] = 0;
    for (int k = 0; k < l->n_in; k++) {
        int ok = l->in_ndim[k] == nd;
        for (int d = 0; ok && d < nd; d++)
            ok = d == ax || l->in_shape[k][d] == l->in_shape[0][d];
        if (!ok) {
            char a[64], b[64];
            return vt_ini_errorf(m->cfg, l->sec, "from", err, errlen,
                                 "inputs must match except along the concat axis: input 1 is "
                                 "%s, input %d is %s",
                                 vt_layer_shape_str(nd, l->in_shape[0], a, sizeof a), k + 1,
                                 vt_layer_shape_str(l->in_ndim[k], l->in_shape[k], b, sizeof b));
        }
        l->shape[ax] += l->in_shape[k][ax];
    }
    return 0;
}

static vt_tensor *forward_concat(vt_model *m, vt_layer *l, vt_ctx *c, vt_tensor *const *in)
{
    (void)m;
    return vt_concat(c, l->n_in, in, *(int *)l->st);
}

const vt_layer_type vt_layer_add = {&ADD_SCHEMA, build_add, NULL, forward_add};
const vt_layer_type vt_layer_concat = {&CONCAT_SCHEMA, build_concat, NULL, forward_concat};
