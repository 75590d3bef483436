/* test_optim.c - SGD / Adam / AdamW trajectories, their state, gradient
 * clipping and lr schedules against torch.optim (tests/fixtures/optim.h5,
 * written by tools/fixtures/gen_optim.py); save/restore of optimizer state;
 * independence from the thread count; the [optim] / [schedule] sections.
 *
 * Tolerances. Params: rtol 1e-5, atol 1e-6 (params are O(1)): we update in
 * fp32 and torch's reference ran in float64, so 12 steps of fp32 rounding
 * (~1e-7 each) separate them. State: the same rtol, atol scaled to each
 * state's magnitude. Clipping: the norm is summed in double from the same
 * fp32 gradients as torch's float64 norm, so rtol 1e-12; clipped gradients
 * differ by the fp32 rounding of the scale, rtol 1e-6. Schedules are double
 * closed forms vs torch's recursive updates: |d| <= 1e-12 * lr.
 */
#include "vt_test.h"

#include <math.h>
#include <string.h>

#include "vt_h5.h"
#include "vt_ini.h"
#include "vt_optim.h"

/* ==== Fixture helpers =================================================== */

static double *load_f64(hid_t f, const char *path, size_t *n)
{
    ck_assert_msg(vt_h5_exists(f, path), "fixture: %s missing", path);
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds);
    hssize_t cnt = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    double *v = malloc((size_t)cnt * sizeof *v);
    ck_assert(v && H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(ds);
    *n = (size_t)cnt;
    return v;
}

static float *load_f32(hid_t f, const char *path, int *nd, int *shape)
{
    float *v;
    char err[256];
    ck_assert_msg(vt_h5_read_f32(f, path, &v, nd, shape, err, sizeof err) == 0,
                  "fixture: %s", err);
    return v;
}

static int attr_int(hid_t f, const char *obj, const char *name)
{
    int v;
    vtt_attr_ints(f, obj, name, &v, 1);
    return v;
}

/* The fixture's params (p0..): initial values, trainable, lr_mult. The
 * frozen param's gradient region is filled too, so ignoring it is tested. */
typedef struct {
    vt_store s;
    int n, steps;
    float *grads[8]; /* (steps, numel) each */
} fx;

static void fx_open(fx *x, hid_t f)
{
    memset(x, 0, sizeof *x);
    x->n = attr_int(f, ".", "n_params");
    x->steps = attr_int(f, ".", "steps");
    ck_assert_int_le(x->n, 8);
    vt_store_init(&x->s);
    float *init[8];
    for (int i = 0; i < x->n; i++) {
        char path[64], name[16];
        int nd, shape[VT_H5_MAX_DIMS];
        snprintf(path, sizeof path, "params/p%d", i);
        snprintf(name, sizeof name, "p%d", i);
        init[i] = load_f32(f, path, &nd, shape);
        vt_store_add(&x->s, name, nd, shape, attr_int(f, path, "trainable"));
        snprintf(path, sizeof path, "grads/p%d", i);
        x->grads[i] = load_f32(f, path, &nd, shape);
        ck_assert_int_eq(shape[0], x->steps);
    }
    vt_store_finalize(&x->s);
    for (int i = 0; i < x->n; i++) {
        char path[64];
        snprintf(path, sizeof path, "params/p%d", i);
        vt_param *p = &x->s.p[i];
        memcpy(p->t.data, init[i], p->t.numel * sizeof(float));
        p->lr_mult = (float)vtt_attr_double(f, path, "lr_mult");
        free(init[i]);
    }
}

static void fx_close(fx *x)
{
    for (int i = 0; i < x->n; i++)
        free(x->grads[i]);
    vt_store_free(&x->s);
}

/* Gradients of step t into the store's grad block (all params). */
static void fx_grads(fx *x, int t)
{
    for (int i = 0; i < x->n; i++) {
        vt_param *p = &x->s.p[i];
        memcpy(x->s.grad + p->offset, x->grads[i] + (size_t)t * p->t.numel,
               p->t.numel * sizeof(float));
    }
}

static void case_config(hid_t f, const char *kase, vt_optim_config *c, double *lr)
{
    vt_optim_config_default(c, (vt_optim_type)attr_int(f, kase, "type"));
    *lr = vtt_attr_double(f, kase, "lr");
    c->momentum = vtt_attr_double(f, kase, "momentum");
    c->dampening = vtt_attr_double(f, kase, "dampening");
    c->nesterov = attr_int(f, kase, "nesterov");
    c->weight_decay = vtt_attr_double(f, kase, "weight_decay");
    c->beta1 = vtt_attr_double(f, kase, "beta1");
    c->beta2 = vtt_attr_double(f, kase, "beta2");
    c->eps = vtt_attr_double(f, kase, "eps");
    c->amsgrad = attr_int(f, kase, "amsgrad");
}

/* Worst |got - want| over n values, for the report. */
static double abs_err(const float *got, const float *want, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)got[i] - want[i]));
    return d;
}

/* ==== Trajectories ====================================================== */

static const char *const opt_cases[] = {
    "sgd_plain", "sgd_momentum_dampening", "sgd_nesterov_wd", "sgd_momentum_wd",
    "adam", "adam_wd", "adamw", "adam_amsgrad", "adamw_amsgrad",
};
enum { N_OPT_CASES = sizeof opt_cases / sizeof opt_cases[0] };

START_TEST(trajectory_matches_torch)
{
    const char *kase = opt_cases[_i];
    hid_t f = vtt_fixture_open("optim.h5");
    fx x;
    fx_open(&x, f);
    vt_optim_config cfg;
    double lr;
    case_config(f, kase, &cfg, &lr);
    vt_optim o;
    char err[256];
    ck_assert_msg(vt_optim_init(&o, &x.s, &cfg, err, sizeof err) == 0, "%s", err);

    float *frozen0[8] = {0};
    for (int i = 0; i < x.n; i++)
        if (!x.s.p[i].trainable) {
            frozen0[i] = malloc(x.s.p[i].t.numel * sizeof(float));
            memcpy(frozen0[i], x.s.p[i].t.data, x.s.p[i].t.numel * sizeof(float));
        }
    double worst = 0, worst_abs = 0;
    for (int t = 0; t < x.steps; t++) {
        fx_grads(&x, t);
        vt_optim_step(&o, lr);
        ck_assert_int_eq(o.step, t + 1);
        char path[128];
        for (int i = 0; i < x.n; i++) {
            vt_param *p = &x.s.p[i];
            if (!p->trainable) {
                ck_assert_msg(memcmp(p->t.data, frozen0[i], p->t.numel * sizeof(float)) == 0,
                              "%s: frozen p%d changed at step %d", kase, i, t);
                continue;
            }
            int nd, shape[VT_H5_MAX_DIMS];
            snprintf(path, sizeof path, "%s/p%d", kase, i);
            float *traj = load_f32(f, path, &nd, shape);
            const float *want = traj + (size_t)t * p->t.numel;
            char what[160];
            snprintf(what, sizeof what, "%s p%d step %d", kase, i, t);
            worst = fmax(worst, vtt_assert_close(what, p->t.data, want, p->t.numel,
                                                 1e-5, 1e-6));
            worst_abs = fmax(worst_abs, abs_err(p->t.data, want, p->t.numel));
            free(traj);
        }
    }
    /* Final state, under torch's names. */
    double worst_state = 0;
    for (int i = 0; i < x.n; i++) {
        if (!x.s.p[i].trainable)
            continue;
        int found = 0;
        for (int k = 0; k < o.n_state; k++) {
            char path[160];
            snprintf(path, sizeof path, "%s/state/p%d.%s", kase, i,
                     vt_optim_state_name(&o, k));
            int nd, shape[VT_H5_MAX_DIMS];
            float *want = load_f32(f, path, &nd, shape);
            size_t n = x.s.p[i].t.numel;
            double scale = 0;
            for (size_t j = 0; j < n; j++)
                scale = fmax(scale, fabs(want[j]));
            worst_state = fmax(worst_state,
                               vtt_assert_close(path, vt_optim_param_state(&o, k, i), want,
                                                n, 1e-5, 1e-6 * scale));
            found++;
            free(want);
        }
        /* No state torch has that we lack. */
        static const char *const all[] = {"momentum_buffer", "exp_avg", "exp_avg_sq",
                                          "max_exp_avg_sq"};
        int in_fixture = 0;
        for (int k = 0; k < 4; k++) {
            char path[160];
            snprintf(path, sizeof path, "%s/state/p%d.%s", kase, i, all[k]);
            in_fixture += vt_h5_exists(f, path);
        }
        ck_assert_int_eq(in_fixture, found);
    }
    printf("optim %-24s %d steps: params max |err| %.2e, worst err/tol %.3f; "
           "state worst err/tol %.3f\n", kase, x.steps, worst_abs, worst, worst_state);
    for (int i = 0; i < x.n; i++)
        free(frozen0[i]);
    vt_optim_free(&o);
    fx_close(&x);
    H5Fclose(f);
}
END_TEST

/* ==== Save / restore ==================================================== */

/* A checkpoint as vt_optim.h describes it: "optim/<param>.<state>" slices
 * and the step, kept here in memory. */
typedef struct {
    char name[64];
    float *v;
    size_t n;
} saved_tensor;

static int save_state(vt_optim *o, saved_tensor *out, int max)
{
    int k = 0;
    for (int i = 0; i < o->store->n; i++) {
        vt_param *p = &o->store->p[i];
        if (!p->trainable)
            continue;
        for (int s = 0; s < o->n_state; s++) {
            ck_assert_int_lt(k, max);
            snprintf(out[k].name, sizeof out[k].name, "optim/%s.%s", p->name,
                     vt_optim_state_name(o, s));
            out[k].n = p->t.numel;
            out[k].v = malloc(p->t.numel * sizeof(float));
            memcpy(out[k].v, vt_optim_param_state(o, s, i), p->t.numel * sizeof(float));
            k++;
        }
    }
    return k;
}

static void restore_state(vt_optim *o, const saved_tensor *in, int n)
{
    int used = 0;
    for (int i = 0; i < o->store->n; i++) {
        vt_param *p = &o->store->p[i];
        if (!p->trainable)
            continue;
        for (int s = 0; s < o->n_state; s++) {
            char name[64];
            snprintf(name, sizeof name, "optim/%s.%s", p->name, vt_optim_state_name(o, s));
            int j = 0;
            while (j < n && strcmp(in[j].name, name) != 0)
                j++;
            ck_assert_msg(j < n, "checkpoint lacks %s", name);
            ck_assert_uint_eq(in[j].n, p->t.numel);
            memcpy(vt_optim_param_state(o, s, i), in[j].v, in[j].n * sizeof(float));
            used++;
        }
    }
    ck_assert_int_eq(used, n);
}

START_TEST(restore_continues_bit_identically)
{
    static const char *const kases[] = {"sgd_nesterov_wd", "adam_amsgrad", "adamw"};
    for (int c = 0; c < 3; c++) {
        hid_t f = vtt_fixture_open("optim.h5");
        fx a, b;
        fx_open(&a, f);
        fx_open(&b, f);
        vt_optim_config cfg;
        double lr;
        case_config(f, kases[c], &cfg, &lr);
        vt_schedule sched;
        vt_schedule_default(&sched, lr);
        sched.type = VT_SCHED_COSINE;
        sched.t_max = 10;
        sched.warmup = 2;
        ck_assert_int_eq(vt_schedule_check(&sched, NULL, 0), 0);
        vt_optim oa, ob;
        ck_assert_int_eq(vt_optim_init(&oa, &a.s, &cfg, NULL, 0), 0);
        for (int t = 0; t < 5; t++) {
            fx_grads(&a, t);
            vt_optim_step(&oa, vt_schedule_lr(&sched, oa.step));
        }
        /* Checkpoint: params, optimizer state, step. */
        float *params = malloc(a.s.total * sizeof(float));
        memcpy(params, a.s.data, a.s.total * sizeof(float));
        saved_tensor ck[32];
        int nck = save_state(&oa, ck, 32);
        ck_assert_int_eq(nck, oa.n_state * 4);
        int64_t step = oa.step;
        for (int t = 5; t < 10; t++) {
            fx_grads(&a, t);
            vt_optim_step(&oa, vt_schedule_lr(&sched, oa.step));
        }
        /* Resume in a fresh store and optimizer. */
        memcpy(b.s.data, params, b.s.total * sizeof(float));
        ck_assert_int_eq(vt_optim_init(&ob, &b.s, &cfg, NULL, 0), 0);
        restore_state(&ob, ck, nck);
        ob.step = step;
        for (int t = 5; t < 10; t++) {
            fx_grads(&b, t);
            vt_optim_step(&ob, vt_schedule_lr(&sched, ob.step));
        }
        ck_assert_msg(memcmp(a.s.data, b.s.data, a.s.total * sizeof(float)) == 0,
                      "%s: resumed params differ", kases[c]);
        for (int k = 0; k < oa.n_state; k++)
            ck_assert_msg(memcmp(oa.state[k], ob.state[k], a.s.total * sizeof(float)) == 0,
                          "%s: resumed state %d differs", kases[c], k);
        /* Control: without the state the run diverges, so the test can fail. */
        vt_optim oc;
        memcpy(b.s.data, params, b.s.total * sizeof(float));
        ck_assert_int_eq(vt_optim_init(&oc, &b.s, &cfg, NULL, 0), 0);
        oc.step = step;
        for (int t = 5; t < 10; t++) {
            fx_grads(&b, t);
            vt_optim_step(&oc, vt_schedule_lr(&sched, oc.step));
        }
        ck_assert(memcmp(a.s.data, b.s.data, a.s.total * sizeof(float)) != 0);
        for (int k = 0; k < nck; k++)
            free(ck[k].v);
        free(params);
        vt_optim_free(&oa);
        vt_optim_free(&ob);
        vt_optim_free(&oc);
        fx_close(&a);
        fx_close(&b);
        H5Fclose(f);
    }
}
END_TEST

/* ==== Clipping ========================================================== */

START_TEST(clip_grad_norm_matches_torch)
{
    static const char *const kases[] = {"clip/active", "clip/inactive"};
    hid_t f = vtt_fixture_open("optim.h5");
    for (int c = 0; c < 2; c++) {
        fx x;
        fx_open(&x, f);
        vt_optim_config cfg;
        vt_optim_config_default(&cfg, VT_OPTIM_SGD);
        vt_optim o;
        ck_assert_int_eq(vt_optim_init(&o, &x.s, &cfg, NULL, 0), 0);
        float *frozen_g[8] = {0};
        for (int i = 0; i < x.n; i++) {
            char path[64];
            int nd, shape[VT_H5_MAX_DIMS];
            snprintf(path, sizeof path, "%s/in_p%d", kases[c], i);
            float *g = load_f32(f, path, &nd, shape);
            memcpy(x.s.grad + x.s.p[i].offset, g, x.s.p[i].t.numel * sizeof(float));
            if (!x.s.p[i].trainable)
                frozen_g[i] = g;
            else
                free(g);
        }
        char path[64];
        snprintf(path, sizeof path, "%s/total_norm", kases[c]);
        size_t n1;
        double *want = load_f64(f, path, &n1);
        double max_norm = vtt_attr_double(f, kases[c], "max_norm");
        double norm = vt_optim_clip_grad_norm(&o, max_norm);
        ck_assert_msg(fabs(norm - want[0]) <= 1e-12 * want[0], "%s: norm %.17g want %.17g",
                      kases[c], norm, want[0]);
        double worst = 0;
        for (int i = 0; i < x.n; i++) {
            vt_param *p = &x.s.p[i];
            if (!p->trainable) {
                ck_assert(memcmp(x.s.grad + p->offset, frozen_g[i],
                                 p->t.numel * sizeof(float)) == 0);
                free(frozen_g[i]);
                continue;
            }
            int nd, shape[VT_H5_MAX_DIMS];
            snprintf(path, sizeof path, "%s/g_p%d", kases[c], i);
            float *g = load_f32(f, path, &nd, shape);
            worst = fmax(worst, vtt_assert_close(path, x.s.grad + p->offset, g,
                                                 p->t.numel, 1e-6, 1e-9));
            free(g);
        }
        /* Clipping to max_norm leaves a norm of max_norm (up to the 1e-6). */
        double after = vt_optim_grad_norm(&o);
        ck_assert_double_le(after, fmin(norm, max_norm) * (1 + 1e-6));
        printf("clip %-8s norm %.10f (torch %.10f), worst grad err/tol %.2f\n",
               kases[c] + 5, norm, want[0], worst);
        free(want);
        vt_optim_free(&o);
        fx_close(&x);
    }
    H5Fclose(f);
}
END_TEST

/* ==== Thread-count independence ========================================= */

START_TEST(results_do_not_depend_on_threads)
{
    int saved = vt_get_threads();
    float *out[2], *st[2];
    double norms[2];
    vt_store s;
    size_t total = 0;
    for (int r = 0; r < 2; r++) {
        vt_set_threads(r == 0 ? 1 : 2);
        vt_store_init(&s);
        vt_store_add(&s, "big", 2, (int[]){301, 333}, 1); /* 13 blocks */
        vt_store_add(&s, "small", 1, (int[]){5}, 1);
        vt_store_add(&s, "frozen", 1, (int[]){9000}, 0);
        vt_store_finalize(&s);
        vtt_fill(s.data, s.total, -1, 1, 3);
        vtt_fill(s.grad, s.total, -2, 2, 4);
        vt_optim_config cfg;
        vt_optim_config_default(&cfg, VT_OPTIM_ADAM);
        vt_optim o;
        ck_assert_int_eq(vt_optim_init(&o, &s, &cfg, NULL, 0), 0);
        ck_assert_int_eq(o.n_blk, 13 + 1);
        norms[r] = vt_optim_clip_grad_norm(&o, 10.0);
        vt_optim_step(&o, 1e-3);
        vt_optim_step(&o, 1e-3);
        total = s.total;
        out[r] = malloc(total * sizeof(float));
        st[r] = malloc(total * sizeof(float));
        memcpy(out[r], s.data, total * sizeof(float));
        memcpy(st[r], o.state[1], total * sizeof(float));
        vt_optim_free(&o);
        vt_store_free(&s);
    }
    vt_set_threads(saved);
    ck_assert_msg(memcmp(&norms[0], &norms[1], sizeof(double)) == 0,
                  "norm differs across threads: %.17g vs %.17g", norms[0], norms[1]);
    ck_assert(memcmp(out[0], out[1], total * sizeof(float)) == 0);
    ck_assert(memcmp(st[0], st[1], total * sizeof(float)) == 0);
    /* The unclipped norm: sqrt of the sum of squares of the seeded grads. */
    float *g = malloc(total * sizeof(float));
    vtt_fill(g, total, -2, 2, 4);
    vt_store_init(&s);
    vt_store_add(&s, "big", 2, (int[]){301, 333}, 1);
    vt_store_add(&s, "small", 1, (int[]){5}, 1);
    vt_store_add(&s, "frozen", 1, (int[]){9000}, 0);
    vt_store_finalize(&s);
    long double ref = 0;
    for (int i = 0; i < 2; i++)
        for (size_t j = 0; j < s.p[i].t.numel; j++) {
            long double v = g[s.p[i].offset + j];
            ref += v * v;
        }
    ck_assert_msg(fabs(norms[0] - (double)sqrtl(ref)) <= 1e-13 * norms[0],
                  "norm %.17g vs %.17Lg", norms[0], sqrtl(ref));
    vt_store_free(&s);
    free(g);
    for (int r = 0; r < 2; r++) {
        free(out[r]);
        free(st[r]);
    }
}
END_TEST

/* ==== Schedules ========================================================= */

static const char *const sched_cases[] = {
    "constant", "constant_warmup", "step", "step_warmup",
    "multistep", "multistep_warmup", "cosine", "cosine_warmup",
};
enum { N_SCHED = sizeof sched_cases / sizeof sched_cases[0] };

static void sched_from_fixture(hid_t f, const char *g, vt_schedule *s)
{
    vt_schedule_default(s, vtt_attr_double(f, g, "lr"));
    s->type = (vt_sched_type)attr_int(f, g, "type");
    s->step_size = attr_int(f, g, "step_size");
    s->gamma = vtt_attr_double(f, g, "gamma");
    s->t_max = attr_int(f, g, "t_max");
    s->eta_min = vtt_attr_double(f, g, "eta_min");
    s->warmup = attr_int(f, g, "warmup");
    s->warmup_start = vtt_attr_double(f, g, "warmup_start");
    s->n_milestones = attr_int(f, g, "n_milestones");
    if (s->n_milestones)
        vtt_attr_ints(f, g, "milestones", s->milestones, s->n_milestones);
}

/* The same schedule written as a [schedule] section. */
static char *sched_ini(const vt_schedule *s)
{
    static const char *const names[] = {"constant", "step", "multistep", "cosine"};
    char *t = malloc(1024);
    int n = snprintf(t, 1024, "[schedule]\ntype = %s\n", names[s->type]);
    if (s->warmup)
        n += snprintf(t + n, 1024 - (size_t)n, "warmup = %d\nwarmup_start = %.17g\n",
                      s->warmup, s->warmup_start);
    if (s->type == VT_SCHED_STEP)
        n += snprintf(t + n, 1024 - (size_t)n, "step_size = %d\ngamma = %.17g\n",
                      s->step_size, s->gamma);
    if (s->type == VT_SCHED_MULTISTEP) {
        n += snprintf(t + n, 1024 - (size_t)n, "gamma = %.17g\nmilestones = ", s->gamma);
        for (int i = 0; i < s->n_milestones; i++)
            n += snprintf(t + n, 1024 - (size_t)n, "%s%d", i ? ", " : "", s->milestones[i]);
        n += snprintf(t + n, 1024 - (size_t)n, "\n");
    }
    if (s->type == VT_SCHED_COSINE)
        n += snprintf(t + n, 1024 - (size_t)n, "t_max = %d\neta_min = %.17g\n", s->t_max,
                      s->eta_min);
    return t;
}

static const vt_ini_section_schema *const optim_sections[] = {
    &vt_optim_ini_schema, &vt_schedule_ini_schema,
};
static const vt_ini_schema optim_schema = {optim_sections, 2};

START_TEST(schedule_matches_torch)
{
    const char *kase = sched_cases[_i];
    hid_t f = vtt_fixture_open("optim.h5");
    char g[64], path[80];
    snprintf(g, sizeof g, "sched/%s", kase);
    snprintf(path, sizeof path, "%s/lr", g);
    size_t n;
    double *want = load_f64(f, path, &n);
    vt_schedule s;
    sched_from_fixture(f, g, &s);
    char err[256];
    ck_assert_msg(vt_schedule_check(&s, err, sizeof err) == 0, "%s", err);

    /* And through the config parser. */
    char *text = sched_ini(&s);
    vt_ini cfg;
    vt_ini_init(&cfg, &optim_schema);
    ck_assert_msg(vt_ini_parse_string(&cfg, text, "sched.ini", err, sizeof err) == 0, "%s",
                  err);
    vt_schedule si;
    ck_assert_msg(vt_schedule_from_ini(&cfg, vt_ini_find(&cfg, "schedule"), s.lr, 0, &si, err,
                                       sizeof err) == 0, "%s", err);
    ck_assert_int_eq(vt_ini_check_used(&cfg, err, sizeof err), 0);

    double worst = 0;
    for (size_t t = 0; t < n; t++) {
        double got = vt_schedule_lr(&s, (int64_t)t);
        double d = fabs(got - want[t]);
        ck_assert_msg(d <= 1e-12 * s.lr, "%s: step %zu: lr %.17g, torch %.17g", kase, t, got,
                      want[t]);
        ck_assert_msg(vt_schedule_lr(&si, (int64_t)t) == got, "%s: ini schedule differs at %zu",
                      kase, t);
        worst = fmax(worst, d / s.lr);
    }
    printf("schedule %-17s %zu steps: max |lr - torch| / lr = %.2e\n", kase, n, worst);
    free(text);
    free(want);
    vt_ini_free(&cfg);
    H5Fclose(f);
}
END_TEST

/* ==== [optim] / [schedule] sections ===================================== */

static int load_text(vt_ini *c, const char *text, char *err, size_t n)
{
    vt_ini_init(c, &optim_schema);
    if (vt_ini_parse_string(c, text, "run.ini", err, n))
        return -1;
    return vt_ini_validate(c, err, n);
}

START_TEST(optim_section_reads_and_rejects)
{
    char err[512];
    vt_ini c;
    vt_optim_config cfg;
    ck_assert_int_eq(load_text(&c, "[optim]\ntype = sgd\nmomentum = 0.9\nnesterov = 1\n"
                                    "weight_decay = 5e-4\nclip_grad_norm = 5\n",
                               err, sizeof err), 0);
    ck_assert_int_eq(vt_optim_config_from_ini(&c, vt_ini_find(&c, "optim"), &cfg, err,
                                              sizeof err), 0);
    ck_assert_int_eq(cfg.type, VT_OPTIM_SGD);
    ck_assert_double_eq(cfg.momentum, 0.9);
    ck_assert_double_eq(cfg.weight_decay, 5e-4);
    ck_assert_double_eq(cfg.clip_grad_norm, 5.0);
    ck_assert_int_eq(cfg.nesterov, 1);
    ck_assert_int_eq(vt_ini_check_used(&c, err, sizeof err), 0);
    vt_ini_free(&c);

    /* AdamW's torch default decay, recorded for the serialised config. */
    ck_assert_int_eq(load_text(&c, "[optim]\ntype = adamw\n", err, sizeof err), 0);
    ck_assert_int_eq(vt_optim_config_from_ini(&c, vt_ini_find(&c, "optim"), &cfg, err,
                                              sizeof err), 0);
    ck_assert_double_eq(cfg.weight_decay, 0.01);
    ck_assert_double_eq(cfg.beta2, 0.999);
    char *text = vt_ini_serialize(&c, VT_INI_SER_DEFAULTS);
    ck_assert_msg(strstr(text, "weight_decay = 0.01\n") && strstr(text, "eps = 1e-08\n"), "%s",
                  text);
    vt_ini_free(&c);
    /* The written defaults read back to the same config (a checkpoint). */
    vt_optim_config again;
    ck_assert_int_eq(load_text(&c, text, err, sizeof err), 0);
    ck_assert_int_eq(vt_optim_config_from_ini(&c, vt_ini_find(&c, "optim"), &again, err,
                                              sizeof err), 0);
    ck_assert_int_eq(vt_ini_check_used(&c, err, sizeof err), 0);
    ck_assert_mem_eq(&again, &cfg, sizeof cfg);
    free(text);
    vt_ini_free(&c);

    /* A key of another optimizer: error at its line. */
    ck_assert_int_eq(load_text(&c, "[optim]\ntype = adam\n\nmomentum = 0.9\n", err,
                               sizeof err), 0);
    ck_assert_int_eq(vt_optim_config_from_ini(&c, vt_ini_find(&c, "optim"), &cfg, err,
                                              sizeof err), -1);
    ck_assert_msg(strstr(err, "run.ini:4: [optim]: key 'momentum' does not apply to type = adam"),
                  "%s", err);
    /* ...which an override can remove. */
    ck_assert_int_eq(vt_ini_set(&c, "optim.momentum=", err, sizeof err), 0);
    ck_assert_int_eq(vt_optim_config_from_ini(&c, vt_ini_find(&c, "optim"), &cfg, err,
                                              sizeof err), 0);
    ck_assert_int_eq(cfg.type, VT_OPTIM_ADAM);
    vt_ini_free(&c);

    ck_assert_int_eq(load_text(&c, "[optim]\ntype = sgd\nnesterov = true\n", err, sizeof err),
                     0);
    ck_assert_int_eq(vt_optim_config_from_ini(&c, vt_ini_find(&c, "optim"), &cfg, err,
                                              sizeof err), -1);
    ck_assert_msg(strstr(err, "run.ini:3: [optim]: nesterov needs momentum > 0"), "%s", err);
    vt_ini_free(&c);

    ck_assert_int_eq(load_text(&c, "[optim]\ntype = adam\nbeta2 = 1\n", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "run.ini:3: bad value '1' for key 'beta2' in [optim]: must be in "
                              "[0, 1)"), "%s", err);
    vt_ini_free(&c);

    ck_assert_int_eq(load_text(&c, "[optim]\ntype = adma\n", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "run.ini:2: bad value 'adma' for key 'type' in [optim]: expected "
                              "one of sgd|adam|adamw (did you mean 'adam'?)"), "%s", err);
    vt_ini_free(&c);

    ck_assert_int_eq(load_text(&c, "[optim]\nmomentum = 0.9\n", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "run.ini:1: [optim]: missing required key 'type'"), "%s", err);
    vt_ini_free(&c);
}
END_TEST

START_TEST(schedule_section_reads_and_rejects)
{
    char err[512];
    vt_ini c;
    vt_schedule s;
    const char *opt = "[optim]\ntype = sgd\n";
    char text[512];

    /* cosine's t_max defaults to the run's steps after warmup. */
    snprintf(text, sizeof text, "%s[schedule]\ntype = cosine\nwarmup = 10\n", opt);
    ck_assert_int_eq(load_text(&c, text, err, sizeof err), 0);
    ck_assert_int_eq(vt_schedule_from_ini(&c, vt_ini_find(&c, "schedule"), 0.1, 1000, &s, err,
                                          sizeof err), 0);
    ck_assert_int_eq(s.t_max, 990);
    ck_assert_double_eq_tol(s.warmup_start, 1.0 / 3.0, 1e-15);
    ck_assert_double_eq_tol(vt_schedule_lr(&s, 10 + 495), 0.05, 1e-15);
    char *ser = vt_ini_serialize(&c, VT_INI_SER_DEFAULTS);
    ck_assert_msg(strstr(ser, "t_max = 990\n"), "%s", ser);
    vt_ini_free(&c);
    /* Read back without knowing the run length: same schedule. */
    vt_schedule again;
    ck_assert_int_eq(load_text(&c, ser, err, sizeof err), 0);
    ck_assert_int_eq(vt_schedule_from_ini(&c, vt_ini_find(&c, "schedule"), 0.1, 0, &again, err,
                                          sizeof err), 0);
    vt_optim_config oc;
    ck_assert_int_eq(vt_optim_config_from_ini(&c, vt_ini_find(&c, "optim"), &oc, err,
                                              sizeof err), 0);
    ck_assert_msg(vt_ini_check_used(&c, err, sizeof err) == 0, "%s", err);
    for (int t = 0; t < 1200; t += 7)
        ck_assert(vt_schedule_lr(&again, t) == vt_schedule_lr(&s, t));
    free(ser);
    vt_ini_free(&c);
    /* ...and is required when the run length is unknown. */
    snprintf(text, sizeof text, "%s[schedule]\ntype = cosine\n", opt);
    ck_assert_int_eq(load_text(&c, text, err, sizeof err), 0);
    ck_assert_int_eq(vt_schedule_from_ini(&c, vt_ini_find(&c, "schedule"), 0.1, 0, &s, err,
                                          sizeof err), -1);
    ck_assert_msg(strstr(err, "run.ini:3: [schedule]: type = cosine needs t_max"), "%s", err);
    vt_ini_free(&c);

    snprintf(text, sizeof text, "%s[schedule]\ntype = step\nstep_size = 3\nt_max = 9\n", opt);
    ck_assert_int_eq(load_text(&c, text, err, sizeof err), 0);
    ck_assert_int_eq(vt_schedule_from_ini(&c, vt_ini_find(&c, "schedule"), 0.1, 0, &s, err,
                                          sizeof err), -1);
    ck_assert_msg(strstr(err, "run.ini:6: [schedule]: key 't_max' does not apply to type = step"),
                  "%s", err);
    vt_ini_free(&c);

    snprintf(text, sizeof text, "%s[schedule]\nwarmup = 5\nwarmup_start = 1.5\n", opt);
    ck_assert_int_eq(load_text(&c, text, err, sizeof err), 0);
    ck_assert_int_eq(vt_schedule_from_ini(&c, vt_ini_find(&c, "schedule"), 0.1, 0, &s, err,
                                          sizeof err), -1);
    ck_assert_msg(strstr(err, "run.ini:5: [schedule]: warmup_start must be in (0, 1]"), "%s",
                  err);
    vt_ini_free(&c);

    snprintf(text, sizeof text, "%s[schedule]\ntype = multistep\nmilestones = 10, -3\n", opt);
    ck_assert_int_eq(load_text(&c, text, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "run.ini:5: bad value '10, -3' for key 'milestones' in "
                              "[schedule]: item 2 '-3': must be > 0"), "%s", err);
    vt_ini_free(&c);

    /* No [schedule]: constant. */
    ck_assert_int_eq(load_text(&c, opt, err, sizeof err), 0);
    ck_assert_int_eq(vt_schedule_from_ini(&c, vt_ini_find(&c, "schedule"), 0.1, 0, &s, err,
                                          sizeof err), 0);
    ck_assert_double_eq(vt_schedule_lr(&s, 12345), 0.1);
    vt_ini_free(&c);
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *t = tcase_create("optim");
    tcase_add_loop_test(t, trajectory_matches_torch, 0, N_OPT_CASES);
    tcase_add_test(t, restore_continues_bit_identically);
    tcase_add_test(t, clip_grad_norm_matches_torch);
    tcase_add_test(t, results_do_not_depend_on_threads);
    tcase_add_loop_test(t, schedule_matches_torch, 0, N_SCHED);
    tcase_add_test(t, optim_section_reads_and_rejects);
    tcase_add_test(t, schedule_section_reads_and_rejects);
    suite_add_tcase(s, t);
    return s;
}

VTT_MAIN(optim_suite)
