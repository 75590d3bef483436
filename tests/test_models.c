/* test_models.c - whole models built from INI configs against their
 * PyTorch twin (tools/vtrain_torch.py; fixture tests/fixtures/models.h5 from
 * tools/fixtures/gen_models.py):
 *   - every config in configs/ loads and builds; its parameter count, output
 *     shape, every layer's output shape and every store entry (name and
 *     shape) equal the twin's; c3d.ini has 78,409,573 parameters;
 *   - c3d_small and convlstm_small (shrunk by the fixture's overrides,
 *     dropout p = 0): the PyTorch initial weights loaded by name, then the
 *     logits, loss and every gradient of one training step, and 10 steps of
 *     SGD (momentum, weight decay) and of Adam with linear warmup + cosine:
 *     the losses and the final parameters and buffers;
 *   - every layer type and option the shipped configs leave out, in two
 *     inline configs stored in the fixture (zoo_clip, zoo_frames): logits,
 *     loss, every gradient and the BN buffers of one training step;
 *   - model-builder behaviours on inline configs: residual add, concat
 *     along channels and time, lstm return = last, per-frame probabilities
 *     and loss, frozen layers, lr_mult, init distributions, seeds,
 *     colliding parameter names.
 * Run with VT_TEST_VERBOSE=1 for the error of every compared tensor. */
#include "vt_test.h"

#include <dirent.h>
#include <math.h>
#include <string.h>

#include "vt_h5.h"
#include "vt_model.h"
#include "vt_optim.h"
#include "vt_run.h"

#define CONFIG_DIR VT_FIXTURE_DIR "/../../configs"

/* ==== Schema and loading ================================================= */

/* Every section a config may hold: [model], the layers and the trainer's
 * run sections (from vt_run_schema). A model test only builds models, so
 * no run section is required here; whether a config is a complete run
 * config is the trainer's test. */
static vt_ini_section_schema run_copy[16];
static vt_schema_buf schema;

static void make_schema(void)
{
    if (schema.ini.n_sections)
        return;
    vt_schema_buf run_buf;
    vt_run_schema(&run_buf);
    const vt_ini_schema run = run_buf.ini;
    const vt_ini_section_schema *extra[16];
    int n = 0;
    for (int i = 0; i < run.n_sections; i++) {
        const vt_ini_section_schema *s = run.sections[i];
        if (s->kind != VT_INI_RUN || strcmp(s->type, "model") == 0)
            continue;
        ck_assert_int_lt(n, 16);
        run_copy[n] = *s;
        run_copy[n].required = 0;
        extra[n] = &run_copy[n];
        n++;
    }
    vt_model_schema(&schema, extra, n);
}

/* vt_ini_check_used for the model's sections only: run sections are read
 * by the trainer, not here. */
static void check_model_keys_used(const vt_ini *cfg)
{
    for (int i = 0; i < cfg->n; i++) {
        const vt_ini_section *s = cfg->sec[i];
        if (s->schema->kind != VT_INI_LAYER && strcmp(s->type, "model") != 0)
            continue;
        for (int j = 0; j < s->n; j++)
            ck_assert_msg(s->e[j].used || s->e[j].implicit,
                          "%s: key '%s' in [%s %s] was not read by the model builder",
                          cfg->file, s->e[j].key, s->type, s->name);
    }
}

/* Drawing C3D's 78M normal weights takes 5-15 s on a shared 2-core
 * machine (more under ASan); shapes and counts do not depend on the init,
 * so models above this size are built with init = zeros. */
#define BIG_MODEL 10000000

static void load_config(vt_ini *cfg, vt_model *m, const char *path, const char *const *sets,
                        int n_sets, int zero_init)
{
    char err[1024];
    make_schema();
    vt_ini_init(cfg, &schema.ini);
    int rc = vt_ini_load(cfg, path, sets, n_sets, err, sizeof err);
    ck_assert_msg(rc == 0, "%s does not load: %s\n(an unknown section type means the test's "
                  "schema lacks it: test_models.c takes run sections from vt_run_schema)",
                  path, err);
    for (int i = 0; zero_init && i < cfg->n; i++) {
        const vt_ini_section_schema *ss = cfg->sec[i]->schema;
        for (int k = 0; k < ss->n_keys; k++)
            if (ss->kind == VT_INI_LAYER && strcmp(ss->keys[k].key, "init") == 0) {
                char set[300];
                snprintf(set, sizeof set, "%s.init=zeros", cfg->sec[i]->name);
                ck_assert_msg(vt_ini_set(cfg, set, err, sizeof err) == 0, "%s", err);
            }
    }
    rc = vt_model_build(m, cfg, err, sizeof err);
    ck_assert_msg(rc == 0, "%s does not build: %s", path, err);
    check_model_keys_used(cfg);
}

static int build_text(vt_ini *cfg, vt_model *m, const char *text, const char *const *sets,
                      int n_sets, char *err, size_t errlen)
{
    make_schema();
    vt_ini_init(cfg, &schema.ini);
    if (vt_ini_parse_string(cfg, text, "<inline>", err, errlen))
        return -1;
    for (int i = 0; i < n_sets; i++)
        if (vt_ini_set(cfg, sets[i], err, errlen))
            return -1;
    if (vt_ini_validate(cfg, err, errlen) || vt_model_build(m, cfg, err, errlen))
        return -1;
    return vt_ini_check_used(cfg, err, errlen);
}

static void build_ok(vt_ini *cfg, vt_model *m, const char *text, const char *const *sets,
                     int n_sets)
{
    char err[1024];
    int rc = build_text(cfg, m, text, sets, n_sets, err, sizeof err);
    ck_assert_msg(rc == 0, "inline config: %s", err);
}

static void free_model(vt_ini *cfg, vt_model *m)
{
    vt_model_free(m);
    vt_ini_free(cfg);
}

/* ==== Fixture helpers ==================================================== */

static char *read_str(hid_t f, const char *path)
{
    char *s, err[256];
    ck_assert_msg(vt_h5_read_str(f, path, &s, err, sizeof err) == 0, "fixture: %s", err);
    return s;
}

/* Number of elements of an attribute. */
static int attr_len(hid_t f, const char *obj, const char *name)
{
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_msg(a >= 0, "fixture: no attribute %s on %s", name, obj);
    hid_t sp = H5Aget_space(a);
    int n = (int)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    H5Aclose(a);
    return n;
}

static hsize_t group_size(hid_t f, const char *path)
{
    H5G_info_t info;
    hid_t g = H5Gopen(f, path, H5P_DEFAULT);
    ck_assert_msg(g >= 0, "fixture: no group %s", path);
    ck_assert(H5Gget_info(g, &info) >= 0);
    H5Gclose(g);
    return info.nlinks;
}

/* "64x3x3x3x3" or "scalar" (a 0-d tensor, stored by vtrain as (1)). */
static int parse_dims(const char *s, int *shape)
{
    if (strcmp(s, "scalar") == 0) {
        shape[0] = 1;
        return 1;
    }
    int n = 0;
    for (const char *p = s; *p && n < VT_MAX_DIMS;) {
        char *end;
        shape[n++] = (int)strtol(p, &end, 10);
        ck_assert_msg(end != p, "fixture: bad dims '%s'", s);
        p = *end == 'x' ? end + 1 : end;
    }
    return n;
}

static const char *dims_str(int nd, const int *shape, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < nd && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%d", i ? "x" : "", shape[i]);
    return buf;
}

static int same_dims(int na, const int *a, int nb, const int *b)
{
    return na == nb && memcmp(a, b, (size_t)na * sizeof(int)) == 0;
}

/* ==== (a) every shipped config =========================================== */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_configs(char **names, int max)
{
    DIR *d = opendir(CONFIG_DIR);
    ck_assert_msg(d, "cannot open %s", CONFIG_DIR);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".ini") == 0) {
            ck_assert_int_lt(n, max);
            names[n++] = strndup(e->d_name, len - 4);
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    return n;
}

/* The fixture records configs/ as it was when generated. */
#define REGEN " (if configs/ changed: /usr/bin/python3 tools/gen_fixtures.py models)"

static void check_config(hid_t f, const char *name)
{
    char path[1024], grp[256], obj[320];
    snprintf(path, sizeof path, "%s/%s.ini", CONFIG_DIR, name);
    snprintf(grp, sizeof grp, "configs/%s", name);
    ck_assert_msg(vt_h5_exists(f, grp), "configs/%s.ini is not in models.h5" REGEN, name);
    /* Parameter count: vtrain's table counts weights, not BN buffers, as
     * the twin's sum over parameters() does. The fixture holds int64. */
    long long want_count;
    hid_t a = H5Aopen_by_name(f, grp, "param_count", H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(a >= 0 && H5Aread(a, H5T_NATIVE_LLONG, &want_count) >= 0);
    H5Aclose(a);
    vt_ini cfg;
    vt_model m;
    load_config(&cfg, &m, path, NULL, 0, want_count > BIG_MODEL);
    ck_assert_msg((long long)vt_model_param_count(&m) == want_count,
                  "%s: %zu parameters, PyTorch %lld" REGEN, name, vt_model_param_count(&m),
                  want_count);
    if (strcmp(name, "c3d") == 0) /* the paper's C3D, as facebook/C3D */
        ck_assert_uint_eq(vt_model_param_count(&m), 78409573u);

    int nd = attr_len(f, grp, "output_shape"), want_out[4];
    ck_assert_int_le(nd, 2);
    vtt_attr_ints(f, grp, "output_shape", want_out, nd);
    const vt_layer *last = &m.layers[m.n - 1];
    ck_assert_msg(same_dims(last->ndim, last->shape, nd, want_out) &&
                      m.per_frame == (nd == 2),
                  "%s: output shape differs from PyTorch's" REGEN, name);

    /* Every layer's per-sample output, in order. */
    snprintf(obj, sizeof obj, "%s/layers", grp);
    char *text = read_str(f, obj), *save = NULL;
    int li = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), li++) {
        char lname[128], dims[128];
        int shape[VT_MAX_DIMS];
        ck_assert(sscanf(line, "%127s %127s", lname, dims) == 2);
        ck_assert_msg(li < m.n && strcmp(m.layers[li].name, lname) == 0,
                      "%s: layer %d is '%s' in PyTorch" REGEN, name, li, lname);
        int k = parse_dims(dims, shape);
        char sh[64];
        ck_assert_msg(same_dims(m.layers[li].ndim, m.layers[li].shape, k, shape),
                      "%s: layer %s outputs %s, PyTorch %s" REGEN, name, lname,
                      dims_str(m.layers[li].ndim, m.layers[li].shape, sh, sizeof sh), dims);
    }
    ck_assert_msg(li == m.n, "%s: %d layers, PyTorch %d" REGEN, name, m.n, li);
    free(text);

    /* Every store entry is a state_dict entry of the same shape, and back. */
    snprintf(obj, sizeof obj, "%s/params", grp);
    text = read_str(f, obj);
    int np = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), np++) {
        char pname[256], dims[128];
        int shape[VT_MAX_DIMS];
        ck_assert(sscanf(line, "%255s %127s", pname, dims) == 2);
        vt_param *p = vt_store_find(&m.store, pname);
        ck_assert_msg(p, "%s: PyTorch has %s, vtrain does not" REGEN, name, pname);
        int k = parse_dims(dims, shape);
        ck_assert_msg(same_dims(p->t.ndim, p->t.shape, k, shape),
                      "%s: %s has a different shape than PyTorch's (%s)" REGEN, name, pname,
                      dims);
    }
    ck_assert_msg(np == m.store.n, "%s: vtrain has %d store entries, PyTorch %d" REGEN, name,
                  m.store.n, np);
    free(text);
    free_model(&cfg, &m);
}

START_TEST(every_config_matches_pytorch)
{
    hid_t f = vtt_fixture_open("models.h5");
    char *names[64];
    int n = list_configs(names, 64);
    ck_assert_int_gt(n, 0);
    for (int i = 0; i < n; i++)
        check_config(f, names[i]);
    ck_assert_msg(group_size(f, "configs") == (hsize_t)n,
                  "models.h5 has configs that configs/ no longer holds" REGEN);
    for (int i = 0; i < n; i++)
        free(names[i]);
    H5Fclose(f);
}
END_TEST

/* ==== (b) whole-model parity ============================================= */

/* Tolerances. Errors are reported relative to the compared tensor's
 * largest magnitude (the numbers printed per model; VT_TEST_VERBOSE=1 for
 * every tensor).
 * Logits pass through every layer in fp32: 1e-4 relative, and elements
 * near zero carry the rounding of sums at the logits' scale, hence a floor
 * of LOGIT_FLOOR times the largest logit (seen: 1.2e-6).
 * Losses: 1e-5 relative at step 0; along the 10-step trajectories the
 * parameters carry the fp32 rounding of every earlier step, so 1e-4 (the
 * task's bound; seen: 1.1e-7).
 * Gradients: 1e-4 relative, with a floor of GRAD_FLOOR times the tensor's
 * largest magnitude for elements far below it (seen: 1.1e-5 on zoo_frames'
 * LSTM biases, where PyTorch's own fp32 gradients differ from its float64
 * ones by 1.6e-5; 4.5e-7 on c3d_small).
 * Final state: parameters and buffers after 10 steps, 1e-4 relative with a
 * floor of STATE_FLOOR times the tensor's largest magnitude: Adam divides
 * each gradient by its own running norm, so an element whose gradient is
 * small carries the gradient's absolute rounding as a relative error into
 * its update (seen: 8e-6; SGD: 4e-7). */
#define LOGIT_RTOL 1e-4
#define LOGIT_FLOOR 1e-5
#define LOSS0_RTOL 1e-5
#define LOSS_RTOL 1e-4
#define GRAD_RTOL 1e-4
#define GRAD_FLOOR 1e-5
#define STATE_RTOL 1e-4
#define STATE_FLOOR 1e-4

typedef struct {
    int n;
    float *x[16];
    int xshape[16][5];
    int *labels[16];
} batches;

static void load_batches(hid_t f, batches *b)
{
    b->n = (int)group_size(f, "data") / 2;
    ck_assert_int_le(b->n, 16);
    for (int i = 0; i < b->n; i++) {
        char path[64], err[256];
        int nd;
        snprintf(path, sizeof path, "data/x%d", i);
        ck_assert(vt_h5_read_f32(f, path, &b->x[i], &nd, b->xshape[i], err, sizeof err) == 0);
        ck_assert_int_eq(nd, 5);
        snprintf(path, sizeof path, "data/labels%d", i);
        size_t nl;
        b->labels[i] = vtt_load_ints(f, path, &nl);
        ck_assert_int_eq((int)nl, b->xshape[i][0]);
    }
}

static void free_batches(batches *b)
{
    for (int i = 0; i < b->n; i++) {
        free(b->x[i]);
        free(b->labels[i]);
    }
}

/* Every store entry from <grp>/<name>; the group must hold nothing else. */
static void load_state(vt_model *m, hid_t f, const char *grp)
{
    for (int i = 0; i < m->store.n; i++) {
        vt_param *p = &m->store.p[i];
        char path[512], err[256];
        snprintf(path, sizeof path, "%s/%s", grp, p->name);
        ck_assert_msg(vt_h5_exists(f, path), "store entry %s is not in the fixture (%s)",
                      p->name, grp);
        float *v;
        int nd, shape[VT_H5_MAX_DIMS];
        ck_assert_msg(vt_h5_read_f32(f, path, &v, &nd, shape, err, sizeof err) == 0, "%s", err);
        if (nd == 0) { /* num_batches_tracked: a 0-d int64 */
            nd = 1;
            shape[0] = 1;
        }
        ck_assert_msg(same_dims(p->t.ndim, p->t.shape, nd, shape),
                      "%s: shape differs between the fixture and the store", p->name);
        memcpy(p->t.data, v, p->t.numel * sizeof(float));
        free(v);
    }
    ck_assert_msg(group_size(f, grp) == (hsize_t)m->store.n,
                  "%s holds entries the store does not have", grp);
}

/* The largest error of one kind of comparison, relative to the compared
 * tensor's largest magnitude, for the summary line. */
static double compare(double *worst, const char *path, const float *got, size_t got_n,
                      hid_t f, double rtol, double atol)
{
    float *want;
    int nd, shape[VT_H5_MAX_DIMS];
    char err[256];
    ck_assert_msg(vt_h5_read_f32(f, path, &want, &nd, shape, err, sizeof err) == 0, "%s", err);
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)shape[i];
    ck_assert_msg(n == got_n, "%s: %zu values, PyTorch %zu", path, got_n, n);
    /* An exact zero (a gradient no path reaches) must stay a zero. */
    double ratio = vtt_assert_close(path, got, want, n, rtol, fmax(atol, 1e-30));
    double scale = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(want[i]));
        d = fmax(d, fabs((double)got[i] - want[i]));
    }
    if (scale > 0 && d / scale > *worst)
        *worst = d / scale;
    if (getenv("VT_TEST_VERBOSE"))
        printf("    %-52s %.2e of %.2e (%.2f of the tolerance)\n", path,
               scale > 0 ? d / scale : d, scale, ratio);
    free(want);
    return scale;
}

static double tensor_scale(hid_t f, const char *path)
{
    float *v;
    int nd, shape[VT_H5_MAX_DIMS];
    char err[256];
    ck_assert(vt_h5_read_f32(f, path, &v, &nd, shape, err, sizeof err) == 0);
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)shape[i];
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(v[i]));
    free(v);
    return m;
}

/* Attention's bias shifts every score equally and the softmax over time
 * ignores that: its gradient is zero in exact arithmetic, and both sides
 * hold only rounding noise (PyTorch in float64: ~1e-17; vtrain in fp32:
 * ~1e-7 of the layer's weight gradient). */
static int is_shift_invariant(const vt_model *m, const char *pname)
{
    for (int i = 0; i < m->n; i++) {
        char b[256];
        snprintf(b, sizeof b, "%s.bias", m->layers[i].name);
        if (strcmp(m->layers[i].sec->type, "attention") == 0 && strcmp(b, pname) == 0)
            return 1;
    }
    return 0;
}

/* One training step's forward: logits and loss of batch i. */
static vt_tensor *step_forward(vt_model *m, vt_ctx *c, batches *b, int i, vt_tensor **logits)
{
    vt_ctx_reset(c);
    vt_store_zero_grad(&m->store);
    vt_tensor *x = vt_tensor_wrap(c, b->x[i], 5, b->xshape[i]);
    *logits = vt_model_forward(m, c, x);
    return vt_model_loss(m, c, *logits, b->labels[i], 0.0f);
}

static void run_optimizer(vt_model *m, hid_t f, const char *model, const char *oname,
                          batches *b)
{
    char grp[256], path[320], err[256];
    snprintf(grp, sizeof grp, "%s/%s", model, oname);
    snprintf(path, sizeof path, "%s/init", model);
    load_state(m, f, path);

    int type, warmup, t_max;
    vtt_attr_ints(f, grp, "type", &type, 1);
    vtt_attr_ints(f, grp, "warmup", &warmup, 1);
    vtt_attr_ints(f, grp, "t_max", &t_max, 1);
    vt_optim_config oc;
    vt_optim_config_default(&oc, type == 0 ? VT_OPTIM_SGD : VT_OPTIM_ADAM);
    oc.weight_decay = vtt_attr_double(f, grp, "weight_decay");
    if (type == 0)
        oc.momentum = vtt_attr_double(f, grp, "momentum");
    vt_optim opt;
    ck_assert_msg(vt_optim_init(&opt, &m->store, &oc, err, sizeof err) == 0, "%s", err);
    vt_schedule s;
    vt_schedule_default(&s, vtt_attr_double(f, grp, "lr"));
    if (t_max) {
        s.type = VT_SCHED_COSINE;
        s.t_max = t_max;
        s.eta_min = vtt_attr_double(f, grp, "eta_min");
    }
    s.warmup = warmup;
    s.warmup_start = vtt_attr_double(f, grp, "warmup_start");
    ck_assert_msg(vt_schedule_check(&s, err, sizeof err) == 0, "%s", err);

    double lrs[16], lr_sum = 0;
    ck_assert_int_le(b->n, 16);
    snprintf(path, sizeof path, "%s/lr", grp);
    hid_t ds = H5Dopen(f, path, H5P_DEFAULT);
    ck_assert(ds >= 0 && H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, lrs) >= 0);
    H5Dclose(ds);

    vt_ctx c;
    vt_ctx_init(&c, 1);
    float losses[16];
    for (int t = 0; t < b->n; t++) {
        double lr = vt_schedule_lr(&s, opt.step);
        ck_assert_msg(fabs(lr - lrs[t]) <= 1e-12 * lrs[t],
                      "%s: lr of step %d is %.17g, torch's %.17g", grp, t, lr, lrs[t]);
        lr_sum += lr;
        vt_tensor *logits, *loss = step_forward(m, &c, b, t, &logits);
        losses[t] = loss->data[0];
        vt_backward(&c, loss);
        vt_optim_step(&opt, lr);
    }
    double w_loss = 0, w_state = 0;
    snprintf(path, sizeof path, "%s/losses", grp);
    compare(&w_loss, path, losses, (size_t)b->n, f, LOSS_RTOL, 0);
    for (int i = 0; i < m->store.n; i++) {
        vt_param *p = &m->store.p[i];
        snprintf(path, sizeof path, "%s/final/%s", grp, p->name);
        /* Adam moves every parameter by about lr per step whatever its
         * gradient's size, so the noise-driven attention bias wanders by
         * up to the sum of the lrs (SGD scales the noise by lr instead). */
        double dummy = 0;
        if (type != 0 && is_shift_invariant(m, p->name))
            compare(&dummy, path, p->t.data, p->t.numel, f, STATE_RTOL, lr_sum);
        else
            compare(&w_state, path, p->t.data, p->t.numel, f, STATE_RTOL,
                    STATE_FLOOR * tensor_scale(f, path));
    }
    printf("  %-14s %-11s losses %.1e, final state %.1e\n", model, oname, w_loss, w_state);
    vt_ctx_free(&c);
    vt_optim_free(&opt);
}

/* One train-mode step of x (N, C, T, H, W) from <grp>/init: logits, loss,
 * every gradient and the buffers after it against <grp>/logits0, loss0,
 * grad/ and state1/. */
static void step0_parity(vt_model *m, hid_t f, const char *grp, float *x, const int *xshape,
                         const int *labels)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/init", grp);
    load_state(m, f, path);
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_store_zero_grad(&m->store);
    vt_tensor *logits = vt_model_forward(m, &c, vt_tensor_wrap(&c, x, 5, xshape));
    vt_tensor *loss = vt_model_loss(m, &c, logits, labels, 0.0f);
    double w_logits = 0, w_loss = 0, w_grad = 0, w_buf = 0;
    snprintf(path, sizeof path, "%s/logits0", grp);
    compare(&w_logits, path, logits->data, logits->numel, f, LOGIT_RTOL,
            LOGIT_FLOOR * tensor_scale(f, path));
    snprintf(path, sizeof path, "%s/loss0", grp);
    compare(&w_loss, path, loss->data, 1, f, LOSS0_RTOL, 0);
    vt_backward(&c, loss);
    int n_trainable = 0, n_buf = 0;
    for (int i = 0; i < m->store.n; i++) {
        vt_param *p = &m->store.p[i];
        snprintf(path, sizeof path, "%s/state1/%s", grp, p->name);
        if (vt_h5_exists(f, path)) {
            compare(&w_buf, path, p->t.data, p->t.numel, f, STATE_RTOL,
                    STATE_FLOOR * tensor_scale(f, path));
            n_buf++;
        }
        if (!p->trainable)
            continue;
        n_trainable++;
        snprintf(path, sizeof path, "%s/grad/%s", grp, p->name);
        ck_assert_msg(vt_h5_exists(f, path), "%s: no PyTorch gradient for %s", grp, p->name);
        if (is_shift_invariant(m, p->name)) {
            /* Rounding noise on both sides: small against the weight's. */
            char wpath[1024];
            snprintf(wpath, sizeof wpath, "%.*s.weight", (int)(strlen(path) - 5), path);
            double dummy = 0;
            compare(&dummy, path, p->t.grad, p->t.numel, f, 0,
                    GRAD_FLOOR * tensor_scale(f, wpath));
            continue;
        }
        compare(&w_grad, path, p->t.grad, p->t.numel, f, GRAD_RTOL,
                GRAD_FLOOR * tensor_scale(f, path));
    }
    snprintf(path, sizeof path, "%s/grad", grp);
    ck_assert_msg(group_size(f, path) == (hsize_t)n_trainable,
                  "%s: PyTorch trains params that vtrain does not", grp);
    snprintf(path, sizeof path, "%s/state1", grp);
    ck_assert_msg(group_size(f, path) == (hsize_t)n_buf, "%s: PyTorch has buffers vtrain lacks",
                  grp);
    vt_ctx_free(&c);
    printf("  %-14s step 0      logits %.1e, loss %.1e, gradients %.1e, buffers %.1e "
           "(largest error / largest value)\n", grp, w_logits, w_loss, w_grad, w_buf);
}

static void model_parity(const char *model)
{
    hid_t f = vtt_fixture_open("models.h5");
    char path[1024], *sets_text, err[256];
    ck_assert(vt_h5_attr_str(f, model, "sets", &sets_text, err, sizeof err) == 0);
    const char *sets[16];
    int n_sets = 0;
    char *save = NULL;
    for (char *l = strtok_r(sets_text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        ck_assert_int_lt(n_sets, 16);
        sets[n_sets++] = l;
    }
    snprintf(path, sizeof path, "%s/%s.ini", CONFIG_DIR, model);
    vt_ini cfg;
    vt_model m;
    load_config(&cfg, &m, path, sets, n_sets, 0);
    batches b;
    load_batches(f, &b);

    step0_parity(&m, f, model, b.x[0], b.xshape[0], b.labels[0]);
    run_optimizer(&m, f, model, "sgd", &b);
    run_optimizer(&m, f, model, "adam_cosine", &b);

    free_batches(&b);
    free(sets_text);
    free_model(&cfg, &m);
    H5Fclose(f);
}

/* The inline configs stored in the fixture that cover the layer types and
 * options the shipped configs leave out. */
static void zoo_parity(const char *name)
{
    hid_t f = vtt_fixture_open("models.h5");
    char path[256], err[1024];
    snprintf(path, sizeof path, "%s/config", name);
    char *text = read_str(f, path);
    vt_ini cfg;
    vt_model m;
    int rc = build_text(&cfg, &m, text, NULL, 0, err, sizeof err);
    ck_assert_msg(rc == 0, "%s: %s", name, err);
    int nd, xshape[VT_H5_MAX_DIMS];
    float *x;
    snprintf(path, sizeof path, "%s/x", name);
    ck_assert(vt_h5_read_f32(f, path, &x, &nd, xshape, err, sizeof err) == 0 && nd == 5);
    size_t nl;
    snprintf(path, sizeof path, "%s/labels", name);
    int *labels = vtt_load_ints(f, path, &nl);
    ck_assert_int_eq((int)nl, xshape[0]);
    step0_parity(&m, f, name, x, xshape, labels);
    free(labels);
    free(x);
    free(text);
    free_model(&cfg, &m);
    H5Fclose(f);
}

START_TEST(zoo_clip_matches_pytorch)
{
    zoo_parity("zoo_clip");
}
END_TEST

START_TEST(zoo_frames_matches_pytorch)
{
    zoo_parity("zoo_frames");
}
END_TEST

START_TEST(c3d_small_matches_pytorch)
{
    model_parity("c3d_small");
}
END_TEST

START_TEST(convlstm_small_matches_pytorch)
{
    model_parity("convlstm_small");
}
END_TEST

/* ==== (c) builder behaviours ============================================= */

static vt_tensor *param(vt_model *m, const char *name)
{
    vt_param *p = vt_store_find(&m->store, name);
    ck_assert_msg(p, "no parameter %s", name);
    return &p->t;
}

/* Eval-mode forward of x (N, C, T, H, W), output copied to out. */
static void eval_forward(vt_model *m, const float *x, int n, float *out)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    c.training = 0;
    c.grad_enabled = 0;
    int shape[5] = {n, m->in_shape[0], m->in_shape[1], m->in_shape[2], m->in_shape[3]};
    vt_tensor *y = vt_model_forward(m, &c, vt_tensor_wrap(&c, (float *)x, 5, shape));
    memcpy(out, y->data, y->numel * sizeof(float));
    vt_ctx_free(&c);
}

START_TEST(residual_add_wiring)
{
    /* res = input + b(relu(a(input))): 1x1x1 convolutions, so per pixel
     * y = Wb relu(Wa x + ba) + bb. */
    static const char *text =
        "[model]\ninput = 2x1x2x2\nclasses = 8\n"
        "[conv3d a]\nfilters = 3\nsize = 1\nactivation = relu\n"
        "[conv3d b]\nfilters = 2\nsize = 1\n"
        "[add res]\nfrom = input, b\n"
        "[flatten flat]\n";
    vt_ini cfg;
    vt_model m;
    build_ok(&cfg, &m, text, NULL, 0);
    ck_assert_int_eq(m.layers[2].n_in, 2);
    ck_assert_int_eq(m.layers[2].in[0], -1);
    ck_assert_int_eq(m.layers[2].in[1], 1);
    ck_assert_int_eq(m.layers[1].in[0], 0); /* default: the previous layer */
    float x[2 * 8], y[2 * 8];
    vtt_fill(x, 16, -1, 1, 3);
    eval_forward(&m, x, 2, y);
    const float *wa = param(&m, "a.weight")->data, *ba = param(&m, "a.bias")->data;
    const float *wb = param(&m, "b.weight")->data, *bb = param(&m, "b.bias")->data;
    for (int n = 0; n < 2; n++)
        for (int px = 0; px < 4; px++) {
            const float *xs = x + n * 8;
            double h[3];
            for (int j = 0; j < 3; j++) {
                h[j] = ba[j] + wa[j * 2] * xs[px] + wa[j * 2 + 1] * xs[4 + px];
                h[j] = h[j] > 0 ? h[j] : 0;
            }
            for (int k = 0; k < 2; k++) {
                double want = xs[k * 4 + px] + bb[k];
                for (int j = 0; j < 3; j++)
                    want += wb[k * 3 + j] * h[j];
                float got = y[n * 8 + k * 4 + px];
                ck_assert_msg(fabs(got - want) <= 1e-6, "res[%d,%d,%d] = %g, want %g", n, k, px,
                              got, want);
            }
        }
    free_model(&cfg, &m);
}
END_TEST

START_TEST(concat_channels_and_time)
{
    /* Volumes: channels (C) then time (T). */
    static const char *vol =
        "[model]\ninput = 2x3x1x2\nclasses = 36\n"
        "[conv3d a]\nfilters = 1\nsize = 1\n"
        "[concat cc]\nfrom = input, a\n"
        "[concat ct]\nfrom = cc, cc\naxis = time\n"
        "[flatten flat]\n";
    vt_ini cfg;
    vt_model m;
    build_ok(&cfg, &m, vol, NULL, 0);
    ck_assert(same_dims(m.layers[1].ndim, m.layers[1].shape, 4, (int[]){3, 3, 1, 2}));
    ck_assert(same_dims(m.layers[2].ndim, m.layers[2].shape, 4, (int[]){3, 6, 1, 2}));
    float x[12], y[36];
    vtt_fill(x, 12, -1, 1, 4);
    eval_forward(&m, x, 1, y);
    const float *w = param(&m, "a.weight")->data, *b = param(&m, "a.bias")->data;
    for (int c = 0; c < 3; c++)
        for (int t = 0; t < 6; t++)
            for (int p = 0; p < 2; p++) {
                int ts = t % 3;
                float want = c < 2 ? x[c * 6 + ts * 2 + p]
                                   : b[0] + w[0] * x[ts * 2 + p] + w[1] * x[6 + ts * 2 + p];
                ck_assert_float_eq_tol(y[c * 12 + t * 2 + p], want, 1e-6);
            }
    free_model(&cfg, &m);

    /* Sequences (T, F): channels are F, time is T. */
    static const char *seq =
        "[model]\ninput = 2x3x1x1\nclasses = 24\n"
        "[sequence s]\n"
        "[concat cf]\nfrom = s, s\n"
        "[concat ct]\nfrom = cf, cf\naxis = time\n"
        "[flatten flat]\n";
    build_ok(&cfg, &m, seq, NULL, 0);
    ck_assert(same_dims(m.layers[1].ndim, m.layers[1].shape, 2, (int[]){3, 4}));
    ck_assert(same_dims(m.layers[2].ndim, m.layers[2].shape, 2, (int[]){6, 4}));
    float xs[6], ys[24];
    vtt_fill(xs, 6, -1, 1, 5);
    eval_forward(&m, xs, 1, ys);
    for (int t = 0; t < 6; t++)
        for (int f = 0; f < 4; f++) /* s[t][c] = x[c][t] */
            ck_assert_float_eq(ys[t * 4 + f], xs[(f % 2) * 3 + t % 3]);
    free_model(&cfg, &m);
}
END_TEST

START_TEST(lstm_last_is_last_step_of_all)
{
    static const char *text =
        "[model]\ninput = 2x5x1x1\nclasses = 6\nseed = 7\n"
        "[sequence s]\n"
        "[lstm l]\nhidden = 3\nlayers = 2\nbidirectional = 1\n";
    const char *last[] = {"l.return=last"};
    vt_ini ca, cl;
    vt_model ma, ml;
    build_ok(&ca, &ma, text, NULL, 0);
    build_ok(&cl, &ml, text, last, 1);
    ck_assert(ma.per_frame && !ml.per_frame);
    ck_assert_uint_eq(ma.store.total, ml.store.total);
    ck_assert(memcmp(ma.store.data, ml.store.data, ma.store.total * sizeof(float)) == 0);
    float x[3 * 10], ya[3 * 5 * 6], yl[3 * 6];
    vtt_fill(x, 30, -1, 1, 6);
    eval_forward(&ma, x, 3, ya);
    eval_forward(&ml, x, 3, yl);
    for (int n = 0; n < 3; n++)
        for (int k = 0; k < 6; k++)
            ck_assert_float_eq(yl[n * 6 + k], ya[n * 30 + 4 * 6 + k]);
    free_model(&ca, &ma);
    free_model(&cl, &ml);
}
END_TEST

START_TEST(per_frame_probs_and_loss)
{
    static const char *text =
        "[model]\ninput = 2x4x1x1\nclasses = 3\n"
        "[sequence s]\n"
        "[linear head]\nunits = 3\n";
    vt_ini cfg;
    vt_model m;
    build_ok(&cfg, &m, text, NULL, 0);
    ck_assert(m.per_frame);
    vt_ctx c;
    vt_ctx_init(&c, 1);
    float x[2 * 8];
    vtt_fill(x, 16, -2, 2, 8);
    vt_tensor *logits = vt_model_forward(&m, &c, vt_tensor_wrap(&c, x, 5, (int[]){2, 2, 4, 1, 1}));
    ck_assert(same_dims(logits->ndim, logits->shape, 3, (int[]){2, 4, 3}));
    int labels[2] = {2, 0};
    vt_tensor *loss = vt_model_loss(&m, &c, logits, labels, 0.0f);
    float probs[6];
    vt_model_probs(&m, logits, probs);
    double want_loss = 0;
    for (int n = 0; n < 2; n++) {
        double avg[3] = {0, 0, 0};
        for (int t = 0; t < 4; t++) {
            const float *z = logits->data + (n * 4 + t) * 3;
            double mx = fmax(z[0], fmax(z[1], z[2])), s = 0;
            for (int k = 0; k < 3; k++)
                s += exp(z[k] - mx);
            for (int k = 0; k < 3; k++)
                avg[k] += exp(z[k] - mx) / s / 4;
            want_loss += (log(s) + mx - z[labels[n]]) / 8;
        }
        for (int k = 0; k < 3; k++)
            ck_assert_float_eq_tol(probs[n * 3 + k], avg[k], 1e-6);
    }
    ck_assert_float_eq_tol(loss->data[0], want_loss, 1e-6);
    vt_ctx_free(&c);
    free_model(&cfg, &m);
}
END_TEST

START_TEST(frozen_layers_and_lr_mult)
{
    static const char *text =
        "[model]\ninput = 2x2x4x4\nclasses = 3\n"
        "[conv3d c1]\nfilters = 3\nsize = 3\npad = 1\nactivation = relu\n"
        "[conv3d c2]\nfilters = 4\nsize = 3\npad = 1\nbatch_norm = 1\nactivation = relu\n"
        "frozen = 1\n"
        "[globalpool g]\n[flatten flat]\n"
        "[linear head]\nunits = 3\nlr_mult = 0.1\n";
    vt_ini cfg;
    vt_model m;
    build_ok(&cfg, &m, text, NULL, 0);
    static const char *const frozen[] = {"c2.weight", "c2_bn.weight", "c2_bn.bias"};
    static const char *const live[] = {"c1.weight", "c1.bias", "head.weight", "head.bias"};
    size_t n_frozen = 0;
    for (int i = 0; i < 3; i++) {
        vt_param *p = vt_store_find(&m.store, frozen[i]);
        ck_assert_msg(p && !p->trainable && !p->t.requires_grad && !p->t.grad, "%s", frozen[i]);
        n_frozen += p->t.numel;
    }
    for (int i = 0; i < 4; i++) {
        vt_param *p = vt_store_find(&m.store, live[i]);
        ck_assert_msg(p && p->trainable && p->t.grad, "%s", live[i]);
        ck_assert_float_eq(p->lr_mult, i < 2 ? 1.0f : 0.1f);
    }
    ck_assert_float_eq(vt_store_find(&m.store, "c2.weight")->lr_mult, 1.0f);
    /* Frozen weights still count as parameters; they are just not trained. */
    ck_assert_uint_eq(vt_store_trainable_count(&m.store), vt_model_param_count(&m) - n_frozen);

    /* A training step: the layer before the frozen one still learns, the
     * frozen weights do not move, its BN statistics do. */
    vt_ctx c;
    vt_ctx_init(&c, 1);
    float x[2 * 64];
    vtt_fill(x, 128, -1, 1, 9);
    vt_tensor *logits = vt_model_forward(&m, &c, vt_tensor_wrap(&c, x, 5, (int[]){2, 2, 2, 4, 4}));
    int labels[2] = {1, 2};
    vt_tensor *loss = vt_model_loss(&m, &c, logits, labels, 0.0f);
    vt_backward(&c, loss);
    vt_tensor *w1 = param(&m, "c1.weight"), *w2 = param(&m, "c2.weight");
    double g1 = 0;
    for (size_t i = 0; i < w1->numel; i++)
        g1 += fabs(w1->grad[i]);
    ck_assert_msg(g1 > 0, "no gradient reached c1 through the frozen layer");
    for (size_t i = 0; i < w2->numel; i++)
        ck_assert_float_eq(m.store.grad[vt_store_find(&m.store, "c2.weight")->offset + i], 0.0f);
    float *before = malloc(w2->numel * sizeof(float));
    memcpy(before, w2->data, w2->numel * sizeof(float));
    vt_optim_config oc;
    vt_optim_config_default(&oc, VT_OPTIM_SGD);
    vt_optim opt;
    char err[256];
    ck_assert(vt_optim_init(&opt, &m.store, &oc, err, sizeof err) == 0);
    vt_optim_step(&opt, 0.1);
    ck_assert(memcmp(before, w2->data, w2->numel * sizeof(float)) == 0);
    ck_assert_float_eq(param(&m, "c2_bn.num_batches_tracked")->data[0], 1.0f);
    ck_assert_float_ne(param(&m, "c2_bn.running_mean")->data[0], 0.0f);
    vt_optim_free(&opt);
    free(before);
    vt_ctx_free(&c);
    free_model(&cfg, &m);
}
END_TEST

static void moments(const vt_tensor *t, double *mean, double *std, double *maxabs)
{
    double s = 0, s2 = 0, mx = 0;
    for (size_t i = 0; i < t->numel; i++) {
        s += t->data[i];
        s2 += (double)t->data[i] * t->data[i];
        mx = fmax(mx, fabs(t->data[i]));
    }
    *mean = s / (double)t->numel;
    *std = sqrt(s2 / (double)t->numel - *mean * *mean);
    *maxabs = mx;
}

START_TEST(init_distributions)
{
    /* normal 0.01 over 20000 weights: the sample std is within 2% (its
     * standard error is 0.5%), the mean within 4 standard errors. */
    static const char *net =
        "[model]\ninput = 3x4x10x10\nclasses = 200\n"
        "[conv3d conv]\nfilters = 64\nsize = 3\n"
        "[globalpool g]\n[flatten flat]\n"
        "[linear fc1]\nunits = 100\n"
        "[linear fc]\nunits = 200\ninit = normal 0.01\nbias_init = 0.5\n";
    vt_ini cfg;
    vt_model m;
    build_ok(&cfg, &m, net, NULL, 0);
    double mean, std, mx;
    vt_tensor *w = param(&m, "fc.weight"), *b = param(&m, "fc.bias");
    ck_assert_uint_eq(w->numel, 20000);
    moments(w, &mean, &std, &mx);
    ck_assert_msg(fabs(std - 0.01) < 2e-4, "normal 0.01: sample std %g", std);
    ck_assert_msg(fabs(mean) < 4 * 0.01 / sqrt(20000.0), "normal 0.01: sample mean %g", mean);
    for (size_t i = 0; i < b->numel; i++)
        ck_assert_float_eq(b->data[i], 0.5f);

    /* Default: U(+-1/sqrt(fan_in)) for weight and bias, fan_in = C*kt*kh*kw
     * (81 for the conv) or the input features (64 for fc1). */
    static const struct {
        const char *w, *b;
        int fan_in;
    } def[] = {{"conv.weight", "conv.bias", 81}, {"fc1.weight", "fc1.bias", 64}};
    for (int k = 0; k < 2; k++) {
        double bound = 1.0 / sqrt(def[k].fan_in);
        w = param(&m, def[k].w);
        b = param(&m, def[k].b);
        moments(w, &mean, &std, &mx);
        ck_assert_msg(mx <= bound * (1 + 1e-6) && mx > 0.99 * bound, "%s: max |w| %g, bound %g",
                      def[k].w, mx, bound);
        ck_assert_msg(fabs(std - bound / sqrt(3.0)) < 0.04 * bound / sqrt(3.0),
                      "%s: std %g, uniform's %g", def[k].w, std, bound / sqrt(3.0));
        moments(b, &mean, &std, &mx);
        ck_assert_msg(mx <= bound * (1 + 1e-6) && mx > 0.5 * bound, "%s: max |b| %g", def[k].b, mx);
    }
    free_model(&cfg, &m);
}
END_TEST

START_TEST(seeds)
{
    static const char *text =
        "[model]\ninput = 2x4x6x6\nclasses = 5\nseed = 3\n"
        "[conv3d conv]\nfilters = 4\nsize = 3\nbatch_norm = 1\n"
        "[sequence s]\n[lstm l]\nhidden = 4\nreturn = last\n"
        "[linear fc]\nunits = 5\n";
    const char *other[] = {"model.seed=4"};
    vt_ini c1, c2, c3;
    vt_model m1, m2, m3;
    build_ok(&c1, &m1, text, NULL, 0);
    build_ok(&c2, &m2, text, NULL, 0);
    build_ok(&c3, &m3, text, other, 1);
    ck_assert_uint_eq(m1.store.total, m3.store.total);
    ck_assert(memcmp(m1.store.data, m2.store.data, m1.store.total * sizeof(float)) == 0);
    /* A different seed changes every randomly initialised tensor. */
    for (int i = 0; i < m1.store.n; i++) {
        const vt_tensor *a = &m1.store.p[i].t, *b = &m3.store.p[i].t;
        size_t same = 0;
        for (size_t k = 0; k < a->numel; k++)
            same += a->data[k] == b->data[k];
        if (strstr(m1.store.p[i].name, "_bn."))
            ck_assert_uint_eq(same, a->numel); /* constants: 1, 0 */
        else
            ck_assert_msg(same == 0, "%s: %zu of %zu values equal across seeds",
                          m1.store.p[i].name, same, a->numel);
    }
    free_model(&c1, &m1);
    free_model(&c2, &m2);
    free_model(&c3, &m3);
}
END_TEST

START_TEST(colliding_parameter_names_rejected)
{
    /* conv c1's fused batch norm is c1_bn.*: a layer named c1_bn would
     * register the same names, and checkpoints are keyed by name. */
    static const char *text =
        "[model]\ninput = 2x2x4x4\nclasses = 3\n"
        "[conv3d c1]\nfilters = 3\nsize = 3\npad = 1\nbatch_norm = 1\n"
        "[batchnorm c1_bn]\n"
        "[globalpool g]\n[flatten flat]\n[linear head]\nunits = 3\n";
    vt_ini cfg;
    vt_model m;
    char err[1024];
    ck_assert_int_eq(build_text(&cfg, &m, text, NULL, 0, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "<inline>:9: layer 'c1_bn': parameter 'c1_bn.weight'") &&
                      strstr(err, "layer 'c1'"), "message: %s", err);
    free_model(&cfg, &m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("models");
    TCase *t = tcase_create("configs");
    tcase_add_test(t, every_config_matches_pytorch);
    suite_add_tcase(s, t);
    t = tcase_create("parity");
    tcase_add_test(t, c3d_small_matches_pytorch);
    tcase_add_test(t, convlstm_small_matches_pytorch);
    tcase_add_test(t, zoo_clip_matches_pytorch);
    tcase_add_test(t, zoo_frames_matches_pytorch);
    suite_add_tcase(s, t);
    t = tcase_create("builder");
    tcase_add_test(t, residual_add_wiring);
    tcase_add_test(t, concat_channels_and_time);
    tcase_add_test(t, lstm_last_is_last_step_of_all);
    tcase_add_test(t, per_frame_probs_and_loss);
    tcase_add_test(t, frozen_layers_and_lr_mult);
    tcase_add_test(t, init_distributions);
    tcase_add_test(t, seeds);
    tcase_add_test(t, colliding_parameter_names_rejected);
    suite_add_tcase(s, t);
    return s;
}

VTT_MAIN(suite)
