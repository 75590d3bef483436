/* vprep.c - decodes every listed video once into the HDF5 clip store, or
 * (--check) scans the lists and the tree and reports what it finds.
 * Exit status: 0 done (a store with skipped broken videos is done),
 * 1 failure, or --check found missing/unreadable videos, 2 bad arguments. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vt_data.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vprep --root DIR --splits DIR --out FILE.h5 [options]\n"
            "       vprep --check --root DIR --splits DIR [--threads K] [--full]\n"
            "\n"
            "Decodes every video listed in the split files (all splits found in\n"
            "--splits: classInd.txt, trainlistNN.txt, testlistNN.txt) once, into an\n"
            "HDF5 clip store (layout: docs/data.md). The store is written to\n"
            "FILE.h5.partial and renamed when complete; running again resumes it, or\n"
            "adds videos newly listed, skipping those already stored. Broken or\n"
            "missing videos get one warning line each and are left out.\n"
            "\n"
            "options:\n"
            "  --root DIR        the video tree, e.g. UCF-101 (DIR/<Class>/<video>)\n"
            "  --splits DIR      the list files, e.g. ucfTrainTestlist\n"
            "  --out FILE        the store to write\n"
            "  --size HxW        frame height x width (default 128x171, as C3D);\n"
            "                    a single number N scales the shorter side to N,\n"
            "                    'source' keeps each video's size\n"
            "  --fps F           resample to F frames/s (default: keep every frame)\n"
            "  --threads K       decoding threads (default 2)\n"
            "  --compress L      gzip level 0..9 of the frames (default 0: fastest\n"
            "                    to read; see docs/data.md for the trade-off)\n"
            "  --check           write nothing: count videos and classes per split\n"
            "                    and list every missing or unreadable file\n"
            "  --full            with --check: decode whole videos, not just the\n"
            "                    first frame\n"
            "  -h, --help        this text\n");
}

static int bad_arg(const char *fmt, const char *a)
{
    fprintf(stderr, "vprep: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n(see vprep --help)\n");
    return 2;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || e == s || *e || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Ctrl-C / SIGTERM: stop after the video being written, close the store
 * cleanly (so it resumes), exit 1. A second signal kills at once. */
static volatile sig_atomic_t interrupted;
static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ==== Progress line ===================================================== */

static int tty;
static int progress_shown;

static void clear_progress(void)
{
    if (progress_shown) {
        fputs("\r\033[K", stderr);
        progress_shown = 0;
    }
}

static void warn_line(const char *msg)
{
    clear_progress();
    fprintf(stderr, "vprep: warning: %s\n", msg);
}

static void show_progress(int done, int total, double t0)
{
    static double last;
    double t = now_s();
    if (!tty || (t - last < 0.2 && done < total))
        return;
    last = t;
    double rate = done / (t - t0 + 1e-9);
    double eta = rate > 0 ? (total - done) / rate : 0;
    fprintf(stderr, "\r\033[K%d/%d videos (%.1f%%)  %.1f videos/s  ETA %dm%02ds", done,
            total, 100.0 * done / (total ? total : 1), rate, (int)eta / 60,
            (int)eta % 60);
    progress_shown = 1;
}

/* ==== Decoding pool ===================================================== */

/* K threads decode the videos of `todo` in any order; the main thread takes
 * finished ones from a queue of at most K entries (bounded memory: a long
 * UCF101 video is ~100 MB of frames at 128x171). */
typedef struct {
    int job;          /* index into todo */
    int rc;
    vt_frames fr;
    char err[1024];
} result;

typedef struct {
    const int *todo;
    int n_todo;
    char *const *paths;   /* full paths, by catalog index */
    vt_decode_opts opts;
    int next;
    result *q;
    int qcap, qhead, qlen;
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv_put, cv_get;
} pool;

static void *pool_main(void *arg)
{
    pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        if (p->stop || p->next >= p->n_todo) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        int j = p->next++;
        pthread_mutex_unlock(&p->mu);
        result r;
        memset(&r, 0, sizeof r);
        r.job = j;
        const char *path = p->paths[p->todo[j]];
        struct stat st;
        if (stat(path, &st) != 0) {
            snprintf(r.err, sizeof r.err, "%s: missing (%s)", path, strerror(errno));
            r.rc = -1;
        } else {
            r.rc = vt_video_decode(path, &p->opts, &r.fr, r.err, sizeof r.err);
        }
        pthread_mutex_lock(&p->mu);
        while (p->qlen == p->qcap && !p->stop)
            pthread_cond_wait(&p->cv_put, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            vt_frames_free(&r.fr);
            return NULL;
        }
        p->q[(p->qhead + p->qlen) % p->qcap] = r;
        p->qlen++;
        pthread_cond_signal(&p->cv_get);
        pthread_mutex_unlock(&p->mu);
    }
}

static void pool_take(pool *p, result *r)
{
    pthread_mutex_lock(&p->mu);
    while (p->qlen == 0)
        pthread_cond_wait(&p->cv_get, &p->mu);
    *r = p->q[p->qhead];
    p->qhead = (p->qhead + 1) % p->qcap;
    p->qlen--;
    pthread_cond_signal(&p->cv_put);
    pthread_mutex_unlock(&p->mu);
}

/* Runs the pool over todo; on_result is called in the main thread for each
 * video, in completion order. */
static int run_pool(pool *p, int threads,
                    int (*on_result)(void *ud, result *r), void *ud)
{
    p->qcap = threads;
    p->q = calloc((size_t)threads, sizeof *p->q);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_put, NULL);
    pthread_cond_init(&p->cv_get, NULL);
    int started = 0, rc = 0;
    if (!p->q || !th) {
        fprintf(stderr, "vprep: out of memory\n");
        rc = -1;
    }
    for (int i = 0; rc == 0 && i < threads; i++) {
        if (pthread_create(&th[i], NULL, pool_main, p) != 0)
            break;
        started++;
    }
    if (rc == 0 && started == 0) {
        fprintf(stderr, "vprep: cannot start decoding threads\n");
        rc = -1;
    }
    for (int k = 0; rc == 0 && k < p->n_todo; k++) {
        result r;
        pool_take(p, &r);
        if (on_result(ud, &r) < 0)
            rc = -1;
        vt_frames_free(&r.fr);
    }
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_put);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < p->qlen; i++)
        vt_frames_free(&p->q[(p->qhead + i) % p->qcap].fr);
    free(th);
    free(p->q);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_put);
    pthread_cond_destroy(&p->cv_get);
    return rc;
}

/* ==== Shared state ====================================================== */

typedef struct {
    const char *root, *splits, *out;
    vt_store_opts so;
    int threads, check, full;
    vt_catalog cat;
    char **paths;      /* full paths */
    char **errors;     /* per catalog video: why it is unusable, or NULL */
    vt_storewriter *w;
    int done, total;
    double t0;
    long long bytes;
} prep;

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", a, b);
    return s;
}

static int on_stored(void *ud, result *r)
{
    prep *P = ud;
    int v = r->job;
    const vt_list_entry *e = &P->cat.v[v];
    char err[1024];
    if (r->rc < 0) {
        P->errors[v] = strdup(r->err);
        warn_line(r->err);
    } else if (vt_storewriter_put(P->w, e->path, e->label, &r->fr, err, sizeof err) < 0) {
        clear_progress();
        fprintf(stderr, "vprep: %s\n", err);
        return -1;
    } else {
        P->bytes += (long long)r->fr.n * r->fr.h * r->fr.w * 3;
    }
    P->done++;
    show_progress(P->done, P->total, P->t0);
    if (interrupted) {
        clear_progress();
        fprintf(stderr, "vprep: interrupted after %d videos\n", P->done);
        return -1;
    }
    return 0;
}

/* The pool's job index is the position in todo; map back to the catalog. */
typedef struct {
    prep *P;
    const int *todo;
    int (*fn)(void *ud, result *r);
} remap;

static int on_remap(void *ud, result *r)
{
    remap *m = ud;
    r->job = m->todo[r->job];
    return m->fn(m->P, r);
}

static int make_store(prep *P)
{
    char err[1024];
    int resumed = 0;
    if (vt_storewriter_open(P->out, &P->so, &P->w, &resumed, err, sizeof err) < 0) {
        fprintf(stderr, "vprep: %s\n", err);
        return 1;
    }
    int *todo = malloc((size_t)(P->cat.n + 1) * sizeof *todo);
    if (!todo) {
        vt_storewriter_abort(P->w);
        fprintf(stderr, "vprep: out of memory\n");
        return 1;
    }
    int n_todo = 0, have = 0;
    for (int i = 0; i < P->cat.n; i++) {
        if (vt_storewriter_has(P->w, P->cat.v[i].path))
            have++;
        else
            todo[n_todo++] = i;
    }
    if (resumed)
        printf("vprep: resuming %s: %d of %d videos already stored\n", P->out, have,
               P->cat.n);
    fflush(stdout);
    P->total = n_todo;
    P->t0 = now_s();
    pool p = {.todo = todo, .n_todo = n_todo, .paths = P->paths};
    p.opts.width = P->so.width;
    p.opts.height = P->so.height;
    p.opts.short_side = P->so.short_side;
    p.opts.fps = P->so.fps;
    remap m = {P, todo, on_stored};
    int rc = n_todo ? run_pool(&p, P->threads, on_remap, &m) : 0;
    clear_progress();
    free(todo);
    if (rc < 0) {
        vt_storewriter_abort(P->w);
        fprintf(stderr, "vprep: stopped; run again to resume from %s.partial\n", P->out);
        return 1;
    }
    if (vt_storewriter_finish(P->w, &P->cat, P->errors, err, sizeof err) < 0) {
        fprintf(stderr, "vprep: %s\n", err);
        return 1;
    }
    int skipped = 0;
    for (int i = 0; i < P->cat.n; i++)
        skipped += P->errors[i] != NULL;
    double dt = now_s() - P->t0;
    printf("vprep: %s: %d videos stored (%d decoded now in %.1f s, %d already "
           "there), %d skipped as missing or unreadable\n",
           P->out, P->cat.n - skipped, n_todo - (skipped), dt, have, skipped);
    if (skipped)
        printf("vprep: the %d skipped videos are listed in the store's 'errors' "
               "dataset; training leaves them out\n", skipped);
    return 0;
}

/* ==== --check =========================================================== */

static int on_checked(void *ud, result *r)
{
    prep *P = ud;
    if (r->rc < 0)
        P->errors[r->job] = strdup(r->err);
    P->done++;
    show_progress(P->done, P->total, P->t0);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Files in <root>/<class>/ that no list mentions (one level, as UCF-101). */
static void report_unlisted(prep *P)
{
    char **sorted = malloc((size_t)(P->cat.n + 1) * sizeof *sorted);
    if (!sorted)
        return;
    for (int i = 0; i < P->cat.n; i++)
        sorted[i] = P->cat.v[i].path;
    int n = 0;
    for (int k = 0; k < P->cat.n_classes; k++) {
        const char *cls = P->cat.classes[k];
        char *sub = join(P->root, cls);
        DIR *d2 = sub ? opendir(sub) : NULL;
        struct dirent *f;
        while (d2 && (f = readdir(d2))) {
            if (f->d_name[0] == '.')
                continue;
            char *rel = join(cls, f->d_name);
            if (rel && !bsearch(&rel, sorted, (size_t)P->cat.n, sizeof *sorted, cmp_str)) {
                if (n < 10)
                    printf("unlisted: %s\n", rel);
                n++;
            }
            free(rel);
        }
        if (d2)
            closedir(d2);
        free(sub);
    }
    if (n)
        printf("%d file(s) under %s are in no list%s\n", n, P->root,
               n > 10 ? " (first 10 shown)" : "");
    free(sorted);
}

static int check(prep *P)
{
    int *todo = malloc((size_t)(P->cat.n + 1) * sizeof *todo);
    if (!todo) {
        fprintf(stderr, "vprep: out of memory\n");
        return 1;
    }
    for (int i = 0; i < P->cat.n; i++)
        todo[i] = i;
    P->total = P->cat.n;
    P->t0 = now_s();
    pool p = {.todo = todo, .n_todo = P->cat.n, .paths = P->paths};
    p.opts.width = P->so.width;
    p.opts.height = P->so.height;
    p.opts.short_side = P->so.short_side;
    p.opts.max_frames = P->full ? 0 : 1;
    remap m = {P, todo, on_checked};
    int rc = run_pool(&p, P->threads, on_remap, &m);
    clear_progress();
    free(todo);
    if (rc < 0)
        return 1;
    int missing = 0, unreadable = 0;
    for (int i = 0; i < P->cat.n; i++) {
        if (!P->errors[i])
            continue;
        int miss = strstr(P->errors[i], ": missing (") != NULL;
        printf("%s: %s\n", miss ? "missing" : "unreadable", P->errors[i]);
        missing += miss;
        unreadable += !miss;
    }
    printf("classes: %d (classInd.txt)\n", P->cat.n_classes);
    int *seen = calloc((size_t)P->cat.n_classes * 2, sizeof *seen);
    for (int s = 0; s < P->cat.n_splits && seen; s++) {
        int listed[2] = {0, 0}, found[2] = {0, 0}, classes[2] = {0, 0};
        memset(seen, 0, (size_t)P->cat.n_classes * 2 * sizeof *seen);
        for (int i = 0; i < P->cat.n; i++) {
            int m2 = P->cat.member[(size_t)i * (size_t)P->cat.n_splits + (size_t)s];
            if (!m2)
                continue;
            listed[m2 - 1]++;
            if (P->errors[i])
                continue;
            found[m2 - 1]++;
            int *c = &seen[(m2 - 1) * P->cat.n_classes + P->cat.v[i].label];
            classes[m2 - 1] += (*c)++ == 0;
        }
        vt_split sp;
        char err[1024];
        int sg = 0, sv = 0;
        if (vt_split_load(P->splits, s + 1, &sp, err, sizeof err) == 0) {
            vt_split_overlap(&sp, &sg, &sv);
            vt_split_free(&sp);
        }
        printf("split %d: train %d videos found of %d listed, %d classes; "
               "test %d found of %d listed, %d classes; %s\n",
               s + 1, found[0], listed[0], classes[0], found[1], listed[1], classes[1],
               sg ? "WARNING: test groups also in training" : "groups disjoint");
        if (sg)
            printf("split %d: %d test videos share a (class, group) with training "
                   "videos\n", s + 1, sg);
    }
    free(seen);
    report_unlisted(P);
    printf("checked %d videos in %.1f s (%s): %d ok, %d missing, %d unreadable\n",
           P->cat.n, now_s() - P->t0, P->full ? "full decode" : "first frame",
           P->cat.n - missing - unreadable, missing, unreadable);
    return missing || unreadable ? 1 : 0;
}

/* ==== main ============================================================== */

static int parse_size(const char *v, vt_store_opts *o)
{
    o->height = o->width = o->short_side = 0;
    if (!strcmp(v, "source"))
        return 0;
    const char *x = strchr(v, 'x');
    if (!x)
        return parse_int(v, 1, 16384, &o->short_side);
    char h[32];
    if ((size_t)(x - v) >= sizeof h)
        return -1;
    memcpy(h, v, (size_t)(x - v));
    h[x - v] = '\0';
    return parse_int(h, 1, 16384, &o->height) < 0 ||
                   parse_int(x + 1, 1, 16384, &o->width) < 0
               ? -1
               : 0;
}

int main(int argc, char **argv)
{
    prep P;
    memset(&P, 0, sizeof P);
    P.threads = 2;
    P.so.height = 128;
    P.so.width = 171;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--check")) {
            P.check = 1;
            continue;
        }
        if (!strcmp(a, "--full")) {
            P.full = 1;
            continue;
        }
        if (strncmp(a, "--", 2))
            return bad_arg("unexpected argument '%s'", a);
        if (i + 1 >= argc)
            return bad_arg("%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--root")) {
            P.root = v;
        } else if (!strcmp(a, "--splits")) {
            P.splits = v;
        } else if (!strcmp(a, "--out")) {
            P.out = v;
        } else if (!strcmp(a, "--size")) {
            if (parse_size(v, &P.so) < 0)
                return bad_arg("--size: '%s' is not HxW, N or 'source'", v);
        } else if (!strcmp(a, "--fps")) {
            char *e;
            P.so.fps = strtod(v, &e);
            if (e == v || *e || !(P.so.fps > 0) || P.so.fps > 1000)
                return bad_arg("--fps: '%s' is not a rate in (0, 1000]", v);
        } else if (!strcmp(a, "--threads")) {
            if (parse_int(v, 1, 256, &P.threads) < 0)
                return bad_arg("--threads: '%s' is not a number in 1..256", v);
        } else if (!strcmp(a, "--compress")) {
            if (parse_int(v, 0, 9, &P.so.compress) < 0)
                return bad_arg("--compress: '%s' is not a level 0..9", v);
        } else {
            return bad_arg("unknown option '%s'", a);
        }
    }
    if (!P.root || !P.splits)
        return bad_arg("--root and --splits are required%s", "");
    if (!P.check && !P.out)
        return bad_arg("--out FILE is required (or --check)%s", "");
    tty = isatty(STDERR_FILENO);
    char err[1024];
    if (vt_catalog_load(P.splits, &P.cat, err, sizeof err) < 0) {
        fprintf(stderr, "vprep: %s\n", err);
        return 1;
    }
    P.paths = calloc((size_t)P.cat.n + 1, sizeof *P.paths);
    P.errors = calloc((size_t)P.cat.n + 1, sizeof *P.errors);
    if (!P.paths || !P.errors) {
        fprintf(stderr, "vprep: out of memory\n");
        return 1;
    }
    for (int i = 0; i < P.cat.n; i++)
        if (!(P.paths[i] = join(P.root, P.cat.v[i].path))) {
            fprintf(stderr, "vprep: out of memory\n");
            return 1;
        }
    printf("vprep: %d videos in %d split(s), %d classes, from %s\n", P.cat.n,
           P.cat.n_splits, P.cat.n_classes, P.splits);
    fflush(stdout);
    if (!P.check)
        catch_signals();
    int rc = P.check ? check(&P) : make_store(&P);
    for (int i = 0; i < P.cat.n; i++) {
        free(P.paths[i]);
        free(P.errors[i]);
    }
    free(P.paths);
    free(P.errors);
    vt_catalog_free(&P.cat);
    return rc;
}
