/* dist.c - MPI processes, collectives and bucketed gradient allreduce.
 *
 * Built with -DVT_HAVE_MPI when meson found MPI; without it (or when the
 * program was not started by an MPI launcher) there is one process and
 * every collective returns at once.
 *
 * Gradient buckets are contiguous ranges of the store's grad block (the
 * parameters of a bucket are neighbours in the store), reduced in place:
 * nothing is packed or copied. Buffers that sit between two parameters of
 * a bucket (batch-norm running statistics) have zero gradients and add
 * nothing. Threads: only the thread that called vt_dist_init calls MPI
 * (MPI_THREAD_FUNNELED); the backward sweep runs on it too, and OpenMP
 * workers and loader threads never touch MPI. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "vt_dist.h"

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef VT_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_local = 1;
static char g_prog[32] = "vtrain";
static vt_dist_stats g_st;
/* Rank 0's line for a SIGTERM (vt_dist_signal_note), made at init. */
static char g_note[320];
static size_t g_note_len;

void vt_dist_signal_note(int sig)
{
    if (sig == SIGTERM && g_note_len && write(STDERR_FILENO, g_note, g_note_len) < 0)
        return;
}

/* Started by an MPI launcher? Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE,
 * MPICH's hydra and srun --mpi=pmi2 PMI_SIZE, srun --mpi=pmix PMIX_RANK
 * (no size: -1 = some). 0: not launched, a plain process. (SLURM_*
 * variables are not enough: a batch script sets them without srun.) */
static int launched_size(void)
{
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (int i = 0; i < 2; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0)
            return atoi(v);
    }
    return getenv("PMIX_RANK") ? -1 : 0;
}

int vt_dist_compiled(void)
{
#ifdef VT_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

int vt_dist_rank(void) { return g_rank; }
int vt_dist_size(void) { return g_size; }
int vt_dist_local_size(void) { return g_local; }

int vt_dist_default_threads(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int t = (int)(cores > 0 ? cores : 1) / (g_local > 0 ? g_local : 1);
    cpu_set_t set;
    /* A launcher that bound this rank to fewer cores (Open MPI binds to one
     * core per rank for np <= 2) caps the useful threads. */
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) < t)
        t = CPU_COUNT(&set);
    return t < 1 ? 1 : t;
}

void vt_dist_stats_get(vt_dist_stats *st) { *st = g_st; }

/* ==== With MPI ========================================================== */
#ifdef VT_HAVE_MPI

static int g_active = 0; /* MPI_Init done */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the calling thread: a rank waiting in MPI polls, and what
 * it burns there is not compute. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A failed call leaves the ranks out of step: say which and end the job. */
static void check(int rc, const char *call)
{
    if (rc == MPI_SUCCESS)
        return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fprintf(stderr, "%s: rank %d of %d: %s failed: %.*s; ending the job (the last "
            "checkpoint written is intact)\n", g_prog, g_rank, g_size, call, len, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

int vt_dist_init(const char *prog, char *err, size_t errlen)
{
    snprintf(g_prog, sizeof g_prog, "%s", prog);
    const char *off = getenv("VT_DIST");
    if (launched_size() == 0 || (off && !strcmp(off, "0")))
        return 0;
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        snprintf(err, errlen, "MPI_Init failed: started by an MPI launcher but cannot "
                 "join its job");
        return -1;
    }
    g_active = 1;
    /* Errors come back to check() (one clear message) instead of Open MPI's
     * default handler, which aborts with a generic one. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    check(MPI_Comm_rank(MPI_COMM_WORLD, &g_rank), "MPI_Comm_rank");
    check(MPI_Comm_size(MPI_COMM_WORLD, &g_size), "MPI_Comm_size");
    MPI_Comm node;
    check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node),
          "MPI_Comm_split_type");
    check(MPI_Comm_size(node, &g_local), "MPI_Comm_size");
    MPI_Comm_free(&node);
    if (g_rank == 0 && g_size > 1)
        g_note_len = (size_t)snprintf(
            g_note, sizeof g_note, "\n%s: rank 0: the launcher is ending the job (SIGTERM): "
            "another rank has ended (see the launcher's message) or the job was cancelled; "
            "checkpoints already written stay valid\n", g_prog);
    if (g_note_len >= sizeof g_note)
        g_note_len = sizeof g_note - 1;
    return 0;
}

void vt_dist_finalize(void)
{
    if (g_active)
        MPI_Finalize();
    g_active = 0;
    g_rank = 0;
    g_size = g_local = 1;
}

void vt_dist_abort(int code)
{
    fflush(stdout);
    fflush(stderr);
    if (g_active && g_size > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

static void sum(void *x, size_t n, MPI_Datatype t, const char *what)
{
    if (g_size == 1 || n == 0)
        return;
    double t0 = now_s(), c0 = cpu_s();
    VT_ASSERT(n <= (size_t)0x7fffffff, "%s of %zu elements", what, n);
    check(MPI_Allreduce(MPI_IN_PLACE, x, (int)n, t, MPI_SUM, MPI_COMM_WORLD), what);
    g_st.blocked_s += now_s() - t0;
    g_st.blocked_cpu_s += cpu_s() - c0;
    g_st.calls++;
}

void vt_dist_sum_double(double *x, size_t n) { sum(x, n, MPI_DOUBLE, "MPI_Allreduce"); }
void vt_dist_sum_long(long *x, size_t n) { sum(x, n, MPI_LONG, "MPI_Allreduce"); }
void vt_dist_sum_float(float *x, size_t n) { sum(x, n, MPI_FLOAT, "MPI_Allreduce"); }

void vt_dist_bcast(void *x, size_t bytes, int root)
{
    if (g_size == 1)
        return;
    double t0 = now_s(), c0 = cpu_s();
    /* In pieces: MPI counts are ints. */
    for (size_t o = 0; o < bytes; o += (size_t)1 << 30) {
        size_t k = bytes - o < (size_t)1 << 30 ? bytes - o : (size_t)1 << 30;
        check(MPI_Bcast((char *)x + o, (int)k, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
    }
    g_st.blocked_s += now_s() - t0;
    g_st.blocked_cpu_s += cpu_s() - c0;
    g_st.calls++;
}

int vt_dist_agree(int status, char *err, size_t errlen)
{
    if (g_size == 1)
        return status;
    int mine[2] = {status > 0 ? g_rank : g_size, status}, first[2];
    double t0 = now_s(), c0 = cpu_s();
    /* The lowest failed rank speaks for all. */
    check(MPI_Allreduce(mine, first, 1, MPI_2INT, MPI_MINLOC, MPI_COMM_WORLD),
          "MPI_Allreduce");
    if (first[0] == g_size) {
        g_st.blocked_s += now_s() - t0;
        g_st.blocked_cpu_s += cpu_s() - c0;
        return 0;
    }
    int who = first[0], code = status;
    char msg[1024];
    if (g_rank == who) {
        if (who)
            snprintf(msg, sizeof msg, "rank %d: %s", who, err);
        else
            snprintf(msg, sizeof msg, "%s", err);
    }
    check(MPI_Bcast(msg, sizeof msg, MPI_CHAR, who, MPI_COMM_WORLD), "MPI_Bcast");
    check(MPI_Bcast(&code, 1, MPI_INT, who, MPI_COMM_WORLD), "MPI_Bcast");
    msg[sizeof msg - 1] = '\0';
    snprintf(err, errlen, "%s", msg);
    g_st.blocked_s += now_s() - t0;
    g_st.blocked_cpu_s += cpu_s() - c0;
    g_st.calls += 3;
    return code;
}

#else /* ==== Without MPI =============================================== */

int vt_dist_init(const char *prog, char *err, size_t errlen)
{
    snprintf(g_prog, sizeof g_prog, "%s", prog);
    const char *off = getenv("VT_DIST");
    int n = launched_size();
    if ((n > 1 || n < 0) && !(off && !strcmp(off, "0"))) {
        /* N copies that do not know of each other would each train the
         * whole model into the same directory. */
        snprintf(err, errlen, "started by an MPI launcher, but this %s was built without "
                 "MPI: install libopenmpi-dev and rebuild (meson setup -Dmpi=enabled), or "
                 "run one process", prog);
        return -1;
    }
    return 0;
}

void vt_dist_finalize(void) {}
void vt_dist_abort(int code) { exit(code); }
void vt_dist_sum_double(double *x, size_t n) { (void)x, (void)n; }
void vt_dist_sum_long(long *x, size_t n) { (void)x, (void)n; }
void vt_dist_sum_float(float *x, size_t n) { (void)x, (void)n; }
void vt_dist_bcast(void *x, size_t bytes, int root) { (void)x, (void)bytes, (void)root; }
int vt_dist_agree(int status, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    return status;
}

#endif

/* ==== Gradient buckets ================================================== */

typedef struct {
    size_t off, n;  /* range of the grad block */
    int params;     /* trainable parameters in it */
    int pending;    /* of which not final yet in this sweep */
} bucket;

struct vt_dist_reducer {
    vt_store *s;
    bucket *b;
    int nb;
    int *of_param;  /* [s->n] bucket of each parameter, -1: not trainable */
    int next;       /* buckets start strictly in order: every rank then
                       issues the same collectives in the same order */
    int overlap;
    size_t floats;
    float *bufs;    /* packed running statistics */
    size_t n_bufs;
#ifdef VT_HAVE_MPI
    MPI_Request *req;
#endif
};

static int is_running_stat(const vt_param *p)
{
    size_t n = strlen(p->name);
    const char *a = "running_mean", *b = "running_var";
    return !p->trainable && ((n >= strlen(a) && !strcmp(p->name + n - strlen(a), a)) ||
                             (n >= strlen(b) && !strcmp(p->name + n - strlen(b), b)));
}

vt_dist_reducer *vt_dist_reducer_new(vt_store *s)
{
    vt_dist_reducer *r = calloc(1, sizeof *r);
    VT_ASSERT(r, "out of memory");
    r->s = s;
    const char *mb = getenv("VT_BUCKET_MB"), *ov = getenv("VT_DIST_OVERLAP");
    double cap_mb = mb && atof(mb) > 0 ? atof(mb) : 2.0;
    size_t cap = (size_t)(cap_mb * 1048576.0 / sizeof(float));
    r->overlap = !(ov && !strcmp(ov, "0"));
    r->of_param = malloc((size_t)(s->n ? s->n : 1) * sizeof *r->of_param);
    r->b = calloc((size_t)(s->n ? s->n : 1), sizeof *r->b);
    VT_ASSERT(r->of_param && r->b, "out of memory");
    /* Backward completes the last layers first: buckets run from the last
     * parameter back to the first. */
    bucket *cur = NULL;
    size_t end = 0;
    for (int i = s->n - 1; i >= 0; i--) {
        vt_param *p = &s->p[i];
        r->of_param[i] = -1;
        if (is_running_stat(p))
            r->n_bufs += p->t.numel;
        if (!p->trainable)
            continue;
        if (!cur || end - p->offset > cap) {
            cur = &r->b[r->nb++];
            end = p->offset + p->t.numel;
        }
        cur->off = p->offset;
        cur->n = end - p->offset;
        cur->params++;
        r->of_param[i] = (int)(cur - r->b);
    }
    for (int k = 0; k < r->nb; k++) {
        r->b[k].pending = r->b[k].params;
        r->floats += r->b[k].n;
    }
    r->bufs = malloc((r->n_bufs ? r->n_bufs : 1) * sizeof *r->bufs);
    VT_ASSERT(r->bufs, "out of memory");
#ifdef VT_HAVE_MPI
    r->req = malloc((size_t)(r->nb ? r->nb : 1) * sizeof *r->req);
    VT_ASSERT(r->req, "out of memory");
    for (int k = 0; k < r->nb; k++)
        r->req[k] = MPI_REQUEST_NULL;
#endif
    return r;
}

void vt_dist_reducer_free(vt_dist_reducer *r)
{
    if (!r)
        return;
    free(r->b);
    free(r->of_param);
    free(r->bufs);
#ifdef VT_HAVE_MPI
    free(r->req);
#endif
    free(r);
}

size_t vt_dist_reducer_floats(const vt_dist_reducer *r) { return r->floats; }
int vt_dist_reducer_buckets(const vt_dist_reducer *r) { return r->nb; }

static void start(vt_dist_reducer *r, int k)
{
#ifdef VT_HAVE_MPI
    bucket *b = &r->b[k];
    VT_ASSERT(b->n <= (size_t)0x7fffffff, "bucket of %zu floats", b->n);
    check(MPI_Iallreduce(MPI_IN_PLACE, r->s->grad + b->off, (int)b->n, MPI_FLOAT, MPI_SUM,
                         MPI_COMM_WORLD, &r->req[k]), "MPI_Iallreduce");
    g_st.calls++;
#else
    (void)r, (void)k;
#endif
}

/* Param index of a leaf in the store, or -1 (inputs, test leaves). */
static int param_of(const vt_store *s, const vt_tensor *t)
{
    if (!s->data || t->data < s->data || t->data >= s->data + s->total)
        return -1;
    size_t off = (size_t)(t->data - s->data);
    int lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (s->p[mid].offset == off)
            return &s->p[mid].t == t || s->p[mid].t.data == t->data ? mid : -1;
        if (s->p[mid].offset < off)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static void on_ready(void *ud, vt_tensor *leaf)
{
    vt_dist_reducer *r = ud;
#ifdef VT_HAVE_MPI
    if (!leaf) {
        /* Open MPI advances non-blocking collectives only inside MPI calls:
         * poll between backward nodes so buckets move while we compute. */
        if (r->next > 0) {
            int done;
            check(MPI_Testall(r->next, r->req, &done, MPI_STATUSES_IGNORE), "MPI_Testall");
        }
        return;
    }
#endif
    if (!leaf)
        return;
    int i = param_of(r->s, leaf);
    if (i < 0 || r->of_param[i] < 0)
        return;
    r->b[r->of_param[i]].pending--;
    while (r->overlap && r->next < r->nb && r->b[r->next].pending <= 0)
        start(r, r->next++);
}

void vt_dist_reducer_attach(vt_dist_reducer *r, vt_ctx *c)
{
    if (g_size == 1)
        return;
    for (int k = 0; k < r->nb; k++)
        r->b[k].pending = r->b[k].params;
    r->next = 0;
    c->on_grad_ready = on_ready;
    c->on_grad_ud = r;
}

void vt_dist_reducer_finish(vt_dist_reducer *r, vt_ctx *c)
{
    c->on_grad_ready = NULL;
    c->on_grad_ud = NULL;
    if (g_size == 1)
        return;
    /* Parameters backward never reached (off the loss's path) have zero
     * gradients; their buckets start now, still in order. */
    while (r->next < r->nb)
        start(r, r->next++);
#ifdef VT_HAVE_MPI
    double t0 = now_s(), c0 = cpu_s();
    check(MPI_Waitall(r->nb, r->req, MPI_STATUSES_IGNORE), "MPI_Waitall");
    double dt = now_s() - t0;
    g_st.blocked_s += dt;
    g_st.blocked_cpu_s += cpu_s() - c0;
    g_st.grad_wait_s += dt;
#endif
}

void vt_dist_average_buffers(vt_dist_reducer *r)
{
    if (g_size == 1 || !r->n_bufs)
        return;
    vt_store *s = r->s;
    size_t o = 0;
    for (int i = 0; i < s->n; i++)
        if (is_running_stat(&s->p[i])) {
            memcpy(r->bufs + o, s->p[i].t.data, s->p[i].t.numel * sizeof(float));
            o += s->p[i].t.numel;
        }
    vt_dist_sum_float(r->bufs, r->n_bufs);
    float inv = 1.0f / (float)g_size;
    o = 0;
    for (int i = 0; i < s->n; i++)
        if (is_running_stat(&s->p[i])) {
            float *d = s->p[i].t.data;
            for (size_t j = 0; j < s->p[i].t.numel; j++)
                d[j] = r->bufs[o + j] * inv;
            o += s->p[i].t.numel;
        }
}
