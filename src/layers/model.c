/* model.c - the INI-driven model builder: section table, wiring by name,
 * parameter registration and initialisation, forward, the dry-run table. */
#include "vt_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers_internal.h"
#include "vt_ops.h"

/* ==== Section table ===================================================== */

static const vt_layer_type *const LAYER_TYPES[] = {
    &vt_layer_conv3d, &vt_layer_conv2d, &vt_layer_maxpool3d, &vt_layer_maxpool2d,
    &vt_layer_avgpool3d, &vt_layer_globalpool, &vt_layer_flatten, &vt_layer_sequence,
    &vt_layer_linear, &vt_layer_dropout, &vt_layer_batchnorm, &vt_layer_relu,
    &vt_layer_sigmoid, &vt_layer_tanh, &vt_layer_lstm, &vt_layer_attention,
    &vt_layer_timemean, &vt_layer_add, &vt_layer_concat,
};
#define N_LAYER_TYPES ((int)(sizeof LAYER_TYPES / sizeof LAYER_TYPES[0]))

static const vt_ini_key MODEL_KEYS[] = {
    {"name", VT_INI_STRING, 0, NULL, "a label for logs and checkpoints"},
    {"input", VT_INI_DIMS, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL,
     "clip shape CxTxHxW, e.g. 3x16x112x112"},
    {"classes", VT_INI_INT, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, "number of classes"},
    {"seed", VT_INI_INT, VT_INI_NONNEG, NULL, "parameter initialisation seed (default 1)"},
};
const vt_ini_section_schema vt_model_ini_schema = {
    "model", VT_INI_RUN, MODEL_KEYS, (int)(sizeof MODEL_KEYS / sizeof MODEL_KEYS[0]), 1,
    "the model's input, classes and init seed; layers follow as [TYPE NAME] sections"};

void vt_model_schema(vt_schema_buf *out, const vt_ini_section_schema *const *extra,
                     int n_extra)
{
    VT_ASSERT(n_extra + 1 + N_LAYER_TYPES <= VT_MODEL_MAX_SECTIONS, "too many sections");
    int n = 0;
    out->storage[n++] = &vt_model_ini_schema;
    for (int i = 0; i < n_extra; i++)
        out->storage[n++] = extra[i];
    for (int i = 0; i < N_LAYER_TYPES; i++)
        out->storage[n++] = LAYER_TYPES[i]->schema;
    out->ini.sections = out->storage;
    out->ini.n_sections = n;
}

static const vt_layer_type *type_of(const vt_ini_section *s)
{
    for (int i = 0; i < N_LAYER_TYPES; i++)
        if (LAYER_TYPES[i]->schema == s->schema)
            return LAYER_TYPES[i];
    return NULL;
}

/* ==== Building ========================================================== */

int vt_model_param(vt_model *m, vt_layer *l, const char *suffix, int ndim,
                   const int *shape, int trainable)
{
    char name[256];
    snprintf(name, sizeof name, "%s%s", l->name, suffix);
    VT_ASSERT(l->n_params < VT_LAYER_MAX_PARAMS, "layer %s: too many parameters", l->name);
    int idx = vt_store_add(&m->store, name, ndim, shape, trainable && !l->frozen);
    m->store.p[idx].lr_mult = l->lr_mult;
    l->param[l->n_params++] = idx;
    return idx;
}

/* A batch norm fused into layer A registers "A_bn.*", so a layer named
 * "A_bn" would register the same names; checkpoints address parameters by
 * name, so the second one is an error. */
static int check_unique_params(vt_model *m, char *err, size_t errlen)
{
    for (int i = 0; i < m->n; i++)
        for (int a = 0; a < m->layers[i].n_params; a++) {
            const char *name = m->store.p[m->layers[i].param[a]].name;
            for (int j = 0; j <= i; j++)
                for (int b = 0; b < (j < i ? m->layers[j].n_params : a); b++)
                    if (strcmp(name, m->store.p[m->layers[j].param[b]].name) == 0)
                        return vt_ini_errorf(m->cfg, m->layers[i].sec, NULL, err, errlen,
                                             "parameter '%s' is already registered by layer "
                                             "'%s' (a layer's fused batch norm is NAME_bn): "
                                             "rename one of them", name, m->layers[j].name);
        }
    return 0;
}

static int find_layer(const vt_model *m, int upto, const char *name)
{
    for (int i = upto - 1; i >= 0; i--)
        if (strcmp(m->layers[i].name, name) == 0)
            return i;
    return -2;
}

/* from = a, b: names of earlier layers (or "input"). */
static int wire(vt_model *m, int li, char *err, size_t errlen)
{
    vt_layer *l = &m->layers[li];
    int n;
    const char *const *from = vt_ini_strs(l->sec, "from", &n);
    if (!from) {
        l->n_in = 1;
        l->in[0] = li - 1;
    } else {
        if (n > VT_MAX_FROM)
            return vt_ini_errorf(m->cfg, l->sec, "from", err, errlen,
                                 "at most %d inputs, got %d", VT_MAX_FROM, n);
        l->n_in = n;
        for (int k = 0; k < n; k++) {
            int j = strcmp(from[k], "input") == 0 ? -1 : find_layer(m, li, from[k]);
            if (j == -2) {
                const char *cands[256];
                int nc = 0;
                for (int q = 0; q < li && nc < 255; q++)
                    cands[nc++] = m->layers[q].name;
                cands[nc++] = "input";
                const char *sug = vt_ini_suggest(from[k], cands, nc);
                int later = 0;
                for (int q = li + 1; q < m->n; q++)
                    later |= strcmp(m->layers[q].name, from[k]) == 0;
                return vt_ini_errorf(m->cfg, l->sec, "from", err, errlen,
                                     "'%s' is not an earlier layer%s%s%s%s", from[k],
                                     later ? " (it comes later: layers may only read earlier ones)" : "",
                                     sug ? " (did you mean '" : "", sug ? sug : "",
                                     sug ? "'?)" : "");
            }
            l->in[k] = j;
        }
    }
    for (int k = 0; k < l->n_in; k++) {
        int j = l->in[k];
        if (j < 0) {
            l->in_ndim[k] = 4;
            memcpy(l->in_shape[k], m->in_shape, sizeof m->in_shape);
        } else {
            l->in_ndim[k] = m->layers[j].ndim;
            memcpy(l->in_shape[k], m->layers[j].shape, sizeof l->in_shape[k]);
        }
    }
    return 0;
}

int vt_model_build(vt_model *m, vt_ini *cfg, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->cfg = cfg;
    vt_store_init(&m->store);
    vt_ini_section *ms = vt_ini_find(cfg, "model");
    if (!ms)
        return vt_ini_errorf(cfg, NULL, NULL, err, errlen, "missing required section [model]");
    snprintf(m->name, sizeof m->name, "%s", vt_ini_str(ms, "name", "model"));
    int nd = vt_ini_dims(ms, "input", NULL, 0, m->in_shape, 4);
    if (nd != 4)
        return vt_ini_errorf(cfg, ms, "input", err, errlen,
                             "expected 4 sizes CxTxHxW (e.g. 3x16x112x112), got %d", nd);
    m->classes = vt_ini_int(ms, "classes", 0);
    m->seed = (uint64_t)vt_ini_int(ms, "seed", 1);

    int cap = 0;
    for (int i = 0; i < cfg->n; i++)
        cap += cfg->sec[i]->schema->kind == VT_INI_LAYER;
    if (cap == 0)
        return vt_ini_errorf(cfg, ms, NULL, err, errlen,
                             "the config has no layer sections ([TYPE NAME])");
    m->layers = calloc((size_t)cap, sizeof *m->layers);
    VT_ASSERT(m->layers, "out of memory");
    for (int i = 0; i < cfg->n; i++) {
        vt_ini_section *s = cfg->sec[i];
        if (s->schema->kind != VT_INI_LAYER)
            continue;
        vt_layer *l = &m->layers[m->n++];
        l->type = type_of(s);
        VT_ASSERT(l->type, "section type %s has no layer implementation", s->type);
        l->sec = s;
        l->name = s->name;
        if (strcmp(l->name, "input") == 0)
            return vt_ini_errorf(cfg, s, NULL, err, errlen,
                                 "'input' names the model input; choose another layer name");
    }
    for (int i = 0; i < m->n; i++) {
        vt_layer *l = &m->layers[i];
        l->frozen = vt_ini_bool(l->sec, "frozen", 0);
        l->lr_mult = (float)vt_ini_float(l->sec, "lr_mult", 1.0);
        if (wire(m, i, err, errlen) || l->type->build(m, l, err, errlen))
            return -1;
    }
    if (check_unique_params(m, err, errlen))
        return -1;
    vt_layer *last = &m->layers[m->n - 1];
    char sh[64];
    if (!((last->ndim == 1 || last->ndim == 2) && last->shape[last->ndim - 1] == m->classes))
        return vt_ini_errorf(cfg, last->sec, NULL, err, errlen,
                             "the last layer must output (classes) logits per clip or "
                             "(T, classes) per frame with classes = %d, but it outputs %s",
                             m->classes, vt_layer_shape_str(last->ndim, last->shape, sh, sizeof sh));
    m->per_frame = last->ndim == 2;

    vt_store_finalize(&m->store);
    vt_rng r = {m->seed, 0};
    for (int i = 0; i < m->n; i++)
        if (m->layers[i].type->init)
            m->layers[i].type->init(m, &m->layers[i], &r);
    return 0;
}

void vt_model_free(vt_model *m)
{
    for (int i = 0; i < m->n; i++)
        free(m->layers[i].st);
    free(m->layers);
    vt_store_free(&m->store);
    memset(m, 0, sizeof *m);
}

/* ==== Running =========================================================== */

/* Layer j's output has no reads left. Views (flatten, an identity dropout)
 * share a buffer with earlier outputs or with x, so the buffer goes back
 * only when every output holding it is dead, and never when x holds it. In
 * training the pool keeps data a recorded backward still reads (pins). */
static void release_dead(vt_ctx *c, vt_tensor *x, vt_tensor **outs, int *left, int upto,
                         int j)
{
    left[j] = -1;
    if (outs[j]->data == x->data) /* x itself or a view of it: the caller's */
        return;
    const void *base = vt_arena_pool_base(&c->arena, outs[j]->data);
    if (!base) {
        vt_release(c, outs[j]); /* its gradient may still go back */
        return;
    }
    if (vt_arena_pool_base(&c->arena, x->data) == base)
        return;
    for (int q = 0; q <= upto; q++)
        if (left[q] >= 0 && vt_arena_pool_base(&c->arena, outs[q]->data) == base)
            return;
    for (int q = 0; q <= upto; q++)
        if (vt_arena_pool_base(&c->arena, outs[q]->data) == base)
            vt_release(c, outs[q]);
}

vt_tensor *vt_model_forward(vt_model *m, vt_ctx *c, vt_tensor *x)
{
    VT_ASSERT(x->ndim == 5 && x->shape[1] == m->in_shape[0] && x->shape[2] == m->in_shape[1] &&
                  x->shape[3] == m->in_shape[2] && x->shape[4] == m->in_shape[3],
              "model input shape mismatch");
    vt_tensor **outs = vt_arena_alloc(&c->arena, (size_t)m->n * sizeof *outs);
    /* left[i]: reads of layer i's output still to come ([add] and [concat]
     * skip connections read earlier layers); -1 once it is dead. */
    int *left = vt_arena_calloc(&c->arena, (size_t)m->n * sizeof *left);
    for (int i = 0; i < m->n; i++)
        for (int k = 0; k < m->layers[i].n_in; k++)
            if (m->layers[i].in[k] >= 0)
                left[m->layers[i].in[k]]++;
    left[m->n - 1]++; /* the caller's */
    for (int i = 0; i < m->n; i++) {
        vt_layer *l = &m->layers[i];
        vt_tensor *in[VT_MAX_FROM];
        for (int k = 0; k < l->n_in; k++)
            in[k] = l->in[k] < 0 ? x : outs[l->in[k]];
        outs[i] = l->type->forward(m, l, c, in);
        for (int k = 0; k < l->n_in; k++)
            if (l->in[k] >= 0 && --left[l->in[k]] == 0)
                release_dead(c, x, outs, left, i, l->in[k]);
        if (left[i] == 0)
            release_dead(c, x, outs, left, i, i);
    }
    return outs[m->n - 1];
}

vt_tensor *vt_model_loss(vt_model *m, vt_ctx *c, vt_tensor *logits, const int *labels,
                         float label_smoothing)
{
    if (!m->per_frame)
        return vt_cross_entropy(c, logits, labels, label_smoothing);
    int n = logits->shape[0], t = logits->shape[1];
    int *rep = vt_arena_alloc(&c->arena, (size_t)n * (size_t)t * sizeof *rep);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < t; j++)
            rep[i * t + j] = labels[i];
    return vt_cross_entropy(c, logits, rep, label_smoothing);
}

void vt_model_probs(const vt_model *m, const vt_tensor *logits, float *probs)
{
    int n = logits->shape[0], k = m->classes;
    if (!m->per_frame) {
        vt_softmax_rows(logits->data, probs, n, k);
        return;
    }
    int t = logits->shape[1];
    float *tmp = malloc((size_t)t * (size_t)k * sizeof *tmp);
    VT_ASSERT(tmp, "out of memory");
    for (int i = 0; i < n; i++) {
        vt_softmax_rows(logits->data + (size_t)i * t * k, tmp, t, k);
        for (int c = 0; c < k; c++) {
            double s = 0;
            for (int j = 0; j < t; j++)
                s += tmp[j * k + c];
            probs[(size_t)i * k + c] = (float)(s / t);
        }
    }
    free(tmp);
}

/* ==== Reporting ========================================================= */

char *vt_layer_shape_str(int ndim, const int *shape, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%d", i ? ", " : "", shape[i]);
    if (o < len)
        snprintf(buf + o, len - o, ")");
    return buf;
}

static int is_buffer(const vt_model *m, int idx)
{
    const char *n = m->store.p[idx].name;
    size_t len = strlen(n);
    static const char *const sfx[] = {".running_mean", ".running_var", ".num_batches_tracked"};
    for (int i = 0; i < 3; i++) {
        size_t k = strlen(sfx[i]);
        if (len > k && strcmp(n + len - k, sfx[i]) == 0)
            return 1;
    }
    return 0;
}

static size_t layer_params(const vt_model *m, const vt_layer *l)
{
    size_t n = 0;
    for (int i = 0; i < l->n_params; i++)
        if (!is_buffer(m, l->param[i]))
            n += m->store.p[l->param[i]].t.numel;
    return n;
}

size_t vt_model_param_count(const vt_model *m)
{
    size_t n = 0;
    for (int i = 0; i < m->n; i++)
        n += layer_params(m, &m->layers[i]);
    return n;
}

double vt_model_madds(const vt_model *m)
{
    double s = 0;
    for (int i = 0; i < m->n; i++)
        s += m->layers[i].madds;
    return s;
}

static void thousands(size_t v, char *buf, size_t len)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%zu", v), o = 0;
    for (int i = 0; i < n && (size_t)o + 2 < len; i++) {
        if (i && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
}

void vt_model_print(const vt_model *m, FILE *f)
{
    char sh[64], pc[32];
    fprintf(f, "%-16s %-11s %-22s %14s %12s\n", "layer", "type", "output (per clip)",
            "parameters", "MACs");
    fprintf(f, "%-16s %-11s %-22s %14s %12s\n", "input", "", vt_layer_shape_str(4, m->in_shape, sh, sizeof sh), "", "");
    for (int i = 0; i < m->n; i++) {
        const vt_layer *l = &m->layers[i];
        thousands(layer_params(m, l), pc, sizeof pc);
        char mac[32];
        if (l->madds >= 1e9)
            snprintf(mac, sizeof mac, "%.2f G", l->madds / 1e9);
        else if (l->madds >= 1e6)
            snprintf(mac, sizeof mac, "%.2f M", l->madds / 1e6);
        else if (l->madds > 0)
            snprintf(mac, sizeof mac, "%.1f K", l->madds / 1e3);
        else
            snprintf(mac, sizeof mac, "-");
        fprintf(f, "%-16s %-11s %-22s %14s %12s%s\n", l->name, l->sec->type,
                vt_layer_shape_str(l->ndim, l->shape, sh, sizeof sh), pc, mac,
                l->frozen ? "  frozen" : "");
    }
    thousands(vt_model_param_count(m), pc, sizeof pc);
    fprintf(f, "total: %s parameters, %.2f G multiply-adds per clip, output %s\n", pc,
            vt_model_madds(m) / 1e9, m->per_frame ? "per frame (T, classes)" : "per clip (classes)");
}
