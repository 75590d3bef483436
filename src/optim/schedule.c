/* schedule.c - learning-rate schedules as pure functions of the step
 * (formulas and torch equivalents in vt_optim.h).
 *
 * torch's schedulers are stateful and mostly update the lr recursively;
 * the closed forms here equal them in exact arithmetic and differ only by
 * the rounding the recursion accumulates (~1e-16 relative). Being pure,
 * they resume exactly from a checkpoint's step count.
 */
#include "vt_optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void vt_schedule_default(vt_schedule *s, double lr)
{
    memset(s, 0, sizeof *s);
    s->type = VT_SCHED_CONSTANT;
    s->lr = lr;
    s->gamma = 0.1;
    s->warmup_start = 1.0 / 3.0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int vt_schedule_check(vt_schedule *s, char *err, size_t errlen)
{
    const char *why = NULL;
    if (!(s->lr >= 0) || !isfinite(s->lr))
        why = "lr must be >= 0";
    else if (s->warmup < 0)
        why = "warmup must be >= 0";
    else if (s->warmup > 0 && !(s->warmup_start > 0 && s->warmup_start <= 1))
        why = "warmup_start must be in (0, 1]";
    else if (s->type == VT_SCHED_STEP && s->step_size <= 0)
        why = "step_size must be > 0";
    else if ((s->type == VT_SCHED_STEP || s->type == VT_SCHED_MULTISTEP) &&
             !(s->gamma > 0))
        why = "gamma must be > 0";
    else if (s->type == VT_SCHED_MULTISTEP &&
             (s->n_milestones < 1 || s->n_milestones > VT_SCHED_MAX_MILESTONES))
        why = "multistep needs 1 to VT_SCHED_MAX_MILESTONES milestones";
    else if (s->type == VT_SCHED_COSINE && s->t_max <= 0)
        why = "t_max must be > 0";
    else if (s->type == VT_SCHED_COSINE && !(s->eta_min >= 0))
        why = "eta_min must be >= 0";
    if (!why && s->type == VT_SCHED_MULTISTEP) {
        for (int i = 0; i < s->n_milestones; i++)
            if (s->milestones[i] <= 0)
                why = "milestones must be > 0";
        qsort(s->milestones, (size_t)s->n_milestones, sizeof(int), cmp_int);
    }
    if (why) {
        if (err && errlen)
            snprintf(err, errlen, "%s", why);
        return -1;
    }
    return 0;
}

double vt_schedule_lr(const vt_schedule *s, int64_t t)
{
    if (t < 0)
        t = 0;
    if (t < s->warmup) /* LinearLR(start_factor, 1.0, total_iters = warmup) */
        return s->lr * (s->warmup_start +
                        (1.0 - s->warmup_start) * (double)t / (double)s->warmup);
    int64_t u = t - s->warmup; /* SequentialLR restarts the main schedule */
    switch (s->type) {
    case VT_SCHED_CONSTANT:
        return s->lr;
    case VT_SCHED_STEP:
        return s->lr * pow(s->gamma, (double)(u / s->step_size));
    case VT_SCHED_MULTISTEP: {
        int k = 0;
        while (k < s->n_milestones && s->milestones[k] <= u)
            k++;
        return s->lr * pow(s->gamma, (double)k);
    }
    case VT_SCHED_COSINE:
        return s->eta_min + (s->lr - s->eta_min) *
                                (1.0 + cos(M_PI * (double)u / (double)s->t_max)) / 2.0;
    }
    VT_ASSERT(0, "bad schedule type %d", (int)s->type);
    return 0;
}

/* ==== [schedule] ======================================================== */

static const vt_ini_key sched_keys[] = {
    {"type", VT_INI_STRING, 0, "constant|step|multistep|cosine", "lr schedule"},
    {"step_size", VT_INI_INT, VT_INI_POSITIVE, NULL, "step: steps between decays"},
    {"gamma", VT_INI_FLOAT, VT_INI_POSITIVE, NULL, "step/multistep: decay factor"},
    {"milestones", VT_INI_INTS, VT_INI_POSITIVE, NULL,
     "multistep: steps (after warmup) where the lr decays"},
    {"t_max", VT_INI_INT, VT_INI_POSITIVE, NULL, "cosine: half period in steps"},
    {"eta_min", VT_INI_FLOAT, VT_INI_NONNEG, NULL, "cosine: lowest lr"},
    {"warmup", VT_INI_INT, VT_INI_NONNEG, NULL, "linear warmup steps"},
    {"warmup_start", VT_INI_FLOAT, VT_INI_POSITIVE, NULL,
     "first warmup lr as a fraction of lr, in (0, 1]"},
};

const vt_ini_section_schema vt_schedule_ini_schema = {
    .type = "schedule",
    .kind = VT_INI_RUN,
    .keys = sched_keys,
    .n_keys = (int)(sizeof sched_keys / sizeof sched_keys[0]),
    .required = 0,
    .doc = "learning-rate schedule (torch.optim.lr_scheduler semantics)",
};

int vt_schedule_from_ini(const vt_ini *c, vt_ini_section *s, double lr,
                         int64_t total_steps, vt_schedule *out, char *err,
                         size_t errlen)
{
    vt_schedule_default(out, lr);
    if (!s)
        return vt_schedule_check(out, err, errlen);
    const char *type = vt_ini_str(s, "type", "constant");
    static const char *const names[] = {"constant", "step", "multistep", "cosine"};
    /* Keys each type reads (bit i = names[i]). */
    static const struct {
        const char *key;
        unsigned types;
    } applies[] = {
        {"step_size", 1u << 1}, {"gamma", 1u << 1 | 1u << 2},
        {"milestones", 1u << 2}, {"t_max", 1u << 3}, {"eta_min", 1u << 3},
    };
    int ti = 0;
    while (strcmp(names[ti], type) != 0)
        ti++;
    out->type = (vt_sched_type)ti;
    for (size_t i = 0; i < sizeof applies / sizeof applies[0]; i++)
        if (!(applies[i].types & (1u << ti)) && vt_ini_has(s, applies[i].key))
            return vt_ini_errorf(c, s, applies[i].key, err, errlen,
                                 "key '%s' does not apply to type = %s (remove "
                                 "it; on the command line: --set schedule.%s=)",
                                 applies[i].key, type, applies[i].key);
    out->warmup = vt_ini_int(s, "warmup", 0);
    if (out->warmup > 0)
        out->warmup_start = vt_ini_float(s, "warmup_start", out->warmup_start);
    else if (vt_ini_has(s, "warmup_start"))
        return vt_ini_errorf(c, s, "warmup_start", err, errlen,
                             "warmup_start needs warmup > 0");
    if (out->warmup_start > 1)
        return vt_ini_errorf(c, s, "warmup_start", err, errlen,
                             "warmup_start must be in (0, 1]");
    switch (out->type) {
    case VT_SCHED_CONSTANT:
        break;
    case VT_SCHED_STEP:
        if (!vt_ini_has(s, "step_size"))
            return vt_ini_errorf(c, s, NULL, err, errlen,
                                 "type = step needs step_size");
        out->step_size = vt_ini_int(s, "step_size", 0);
        out->gamma = vt_ini_float(s, "gamma", out->gamma);
        break;
    case VT_SCHED_MULTISTEP: {
        int n;
        const int *m = vt_ini_ints(s, "milestones", &n);
        if (!m)
            return vt_ini_errorf(c, s, NULL, err, errlen,
                                 "type = multistep needs milestones");
        if (n > VT_SCHED_MAX_MILESTONES)
            return vt_ini_errorf(c, s, "milestones", err, errlen,
                                 "at most %d milestones", VT_SCHED_MAX_MILESTONES);
        memcpy(out->milestones, m, (size_t)n * sizeof(int));
        out->n_milestones = n;
        out->gamma = vt_ini_float(s, "gamma", out->gamma);
        break;
    }
    case VT_SCHED_COSINE:
        if (!vt_ini_has(s, "t_max")) {
            if (total_steps - out->warmup <= 0 || total_steps - out->warmup > INT32_MAX)
                return vt_ini_errorf(c, s, NULL, err, errlen,
                                     "type = cosine needs t_max");
            vt_ini_int(s, "t_max", (int)(total_steps - out->warmup));
        }
        out->t_max = vt_ini_int(s, "t_max", 0);
        out->eta_min = vt_ini_float(s, "eta_min", 0.0);
        break;
    }
    char why[256];
    if (vt_schedule_check(out, why, sizeof why))
        return vt_ini_errorf(c, s, NULL, err, errlen, "%s", why);
    return 0;
}
