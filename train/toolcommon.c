/* toolcommon.c - checkpoint + config loading, argument and text helpers
 * shared by veval and vpredict. */
#include "toolcommon.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ==== A model from a checkpoint ========================================= */

int vt_tool_model_open(vt_tool_model *tm, const char *ckpt, const char *config,
                       const char *const *sets, int n_sets, char *err, size_t errlen)
{
    memset(tm, 0, sizeof *tm);
    struct stat st;
    if (stat(ckpt, &st) != 0) {
        snprintf(err, errlen, "%s: cannot open the checkpoint: %s", ckpt, strerror(errno));
        return 2;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: is a directory, not a checkpoint (a run directory "
                 "holds last.h5 and best.h5)", ckpt);
        return 2;
    }
    if (vt_ckpt_read_info(ckpt, &tm->info, err, errlen))
        return 1;
    tm->have_info = 1;

    const char *text = NULL;
    if (config) {
        snprintf(tm->config_name, sizeof tm->config_name, "%s", config);
    } else {
        if (!tm->info.config[0]) {
            snprintf(err, errlen, "%s: the checkpoint holds no config; give one with "
                     "--config", ckpt);
            return 2;
        }
        snprintf(tm->config_name, sizeof tm->config_name, "%s:config", ckpt);
        text = tm->info.config;
    }
    tm->have_run = 1;
    if (vt_run_load(&tm->run, tm->config_name, text, sets, n_sets, err, errlen))
        return 2;

    /* Exact restore: every parameter of the config's model with its shape,
     * and nothing else, so a config of another architecture is refused
     * before any weight is read. */
    vt_ckpt ck;
    memset(&ck, 0, sizeof ck);
    ck.store = &tm->run.model.store;
    char why[1024];
    if (vt_ckpt_load(ckpt, &ck, why, sizeof why)) {
        if (config || n_sets > 0) {
            snprintf(err, errlen, "%s (the model of %s%s does not match the checkpoint's)",
                     why, config ? config : "the checkpoint's config",
                     n_sets > 0 ? " with the overrides" : "");
            return 2;
        }
        snprintf(err, errlen, "%s", why);
        return 1;
    }

    int K = tm->run.model.classes;
    tm->classes = calloc((size_t)K, sizeof *tm->classes);
    VT_ASSERT(tm->classes, "out of memory");
    for (int k = 0; k < K; k++) {
        if (tm->info.n_classes == K) {
            tm->classes[k] = strdup(tm->info.classes[k]);
        } else {
            char b[32];
            snprintf(b, sizeof b, "class %d", k + 1);
            tm->classes[k] = strdup(b);
        }
        VT_ASSERT(tm->classes[k], "out of memory");
    }
    /* threads = 0 means every core: OpenMP's default already. */
    if (tm->run.train.threads > 0)
        vt_set_threads(tm->run.train.threads);
    return 0;
}

void vt_tool_model_close(vt_tool_model *tm)
{
    if (tm->classes)
        for (int k = 0; k < tm->run.model.classes; k++)
            free(tm->classes[k]);
    free(tm->classes);
    if (tm->have_run)
        vt_run_free(&tm->run);
    if (tm->have_info)
        vt_ckpt_info_free(&tm->info);
    memset(tm, 0, sizeof *tm);
}

/* ==== Arguments ========================================================= */

int vt_tool_parse_int(const char *s, long lo, long hi, int *out)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || e == s || *e || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static void sets_grow(vt_tool_sets *s)
{
    if (s->n < s->cap)
        return;
    s->cap = s->cap ? 2 * s->cap : 8;
    s->v = realloc(s->v, (size_t)s->cap * sizeof *s->v);
    s->owned = realloc(s->owned, (size_t)s->cap * sizeof *s->owned);
    VT_ASSERT(s->v && s->owned, "out of memory");
}

void vt_tool_sets_add(vt_tool_sets *s, const char *set)
{
    sets_grow(s);
    s->v[s->n++] = set;
}

void vt_tool_sets_addf(vt_tool_sets *s, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sets_grow(s);
    char *d = strdup(buf);
    VT_ASSERT(d, "out of memory");
    s->owned[s->n_owned++] = d;
    s->v[s->n++] = d;
}

void vt_tool_sets_free(vt_tool_sets *s)
{
    for (int i = 0; i < s->n_owned; i++)
        free(s->owned[i]);
    free(s->owned);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* ==== Text output ======================================================= */

void vt_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

void vt_json_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.10g", v);
    else
        fputs("null", f);
}

void vt_csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int vt_memfile_open(vt_memfile *m)
{
    memset(m, 0, sizeof *m);
    m->f = open_memstream(&m->buf, &m->len);
    VT_ASSERT(m->f, "out of memory");
    return 0;
}

int vt_memfile_commit(vt_memfile *m, const char *path, char *err, size_t errlen)
{
    int rc = 0;
    if (fclose(m->f) != 0) {
        snprintf(err, errlen, "%s: out of memory while formatting", path);
        rc = -1;
    } else if (!strcmp(path, "-")) {
        if (fwrite(m->buf, 1, m->len, stdout) != m->len || fflush(stdout) != 0) {
            snprintf(err, errlen, "stdout: write failed: %s", strerror(errno));
            rc = -1;
        }
    } else {
        rc = vt_write_file_atomic(path, m->buf, m->len, err, errlen);
    }
    free(m->buf);
    memset(m, 0, sizeof *m);
    return rc;
}

/* ==== Progress ========================================================== */

double vt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void vt_progress_init(vt_progress *p)
{
    memset(p, 0, sizeof *p);
    p->tty = isatty(STDERR_FILENO);
    p->t0 = vt_now();
}

void vt_progress_show(vt_progress *p, int force, const char *fmt, ...)
{
    if (!p->tty)
        return;
    double t = vt_now();
    if (!force && p->shown && t - p->last < 0.2)
        return;
    p->last = t;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\r\033[K%s", buf);
    fflush(stderr);
    p->shown = 1;
}

void vt_progress_clear(vt_progress *p)
{
    if (p->shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->shown = 0;
    }
}
