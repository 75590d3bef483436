/* test_dist.c - the single-process parts of data-parallel training (the
 * multi-process runs are tests/test_mpi.sh):
 *   - the backward sweep's gradient-ready hook: every leaf announced once,
 *     after its last use, with its final gradient; dead branches too;
 *   - dropout with a shard offset draws the masks of the whole batch;
 *   - the loader's shards: training shares put together are the
 *     one-process batch (clips, labels, pixels), test shards partition
 *     the views;
 *   - bucket layout of the gradient reducer, and the one-process
 *     behaviour of the collectives (identities). */
#define _XOPEN_SOURCE 700
#include "vt_test.h"
#include "vt_data.h"
#include "vt_dist.h"
#include "vt_synth.h"

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

/* ==== Gradient-ready hook ============================================== */

#define MAX_SEEN 16

typedef struct {
    vt_tensor *leaf[MAX_SEEN];
    float *snap[MAX_SEEN]; /* grad at the moment of the announcement */
    int n, polls;
} seen;

static void on_ready(void *ud, vt_tensor *t)
{
    seen *s = ud;
    if (!t) {
        s->polls++;
        return;
    }
    ck_assert_int_lt(s->n, MAX_SEEN);
    s->leaf[s->n] = t;
    s->snap[s->n] = calloc(t->numel, sizeof(float));
    if (t->grad)
        memcpy(s->snap[s->n], t->grad, t->numel * sizeof(float));
    s->n++;
}

START_TEST(grad_ready_after_last_use)
{
    vt_ctx c;
    vt_ctx_init(&c, 7);
    int sh[2] = {3, 4};
    /* w is used by the first and the last op, u by one op in the middle,
     * d only by a branch the loss does not use; x needs no gradient. */
    vt_tensor *w = vtt_rand(&c, 2, sh, -1, 1, 1, 1), *u = vtt_rand(&c, 2, sh, -1, 1, 2, 1);
    vt_tensor *d = vtt_rand(&c, 2, sh, -1, 1, 3, 1), *x = vtt_rand(&c, 2, sh, -1, 1, 4, 0);
    vt_tensor *a = vt_mul(&c, w, x);
    vt_tensor *dead = vt_mul(&c, d, x);
    vt_tensor *b = vt_tanh(&c, vt_add(&c, a, u));
    vt_tensor *y = vt_mul(&c, b, w);
    (void)dead;
    float seed[12];
    vtt_fill(seed, 12, -1, 1, 5);
    seen s = {0};
    c.on_grad_ready = on_ready;
    c.on_grad_ud = &s;
    vt_backward_seed(&c, y, seed);
    ck_assert_int_eq(s.polls, (int)c.n_nodes);
    /* Reverse tape order: y's mul (w not final: used by a as well), tanh,
     * add (u final), dead mul (d final, zero gradient), a's mul (w). */
    ck_assert_int_eq(s.n, 3);
    ck_assert_ptr_eq(s.leaf[0], u);
    ck_assert_ptr_eq(s.leaf[1], d);
    ck_assert_ptr_eq(s.leaf[2], w);
    for (int k = 0; k < s.n; k++) {
        vt_tensor *t = s.leaf[k];
        for (size_t i = 0; i < t->numel; i++)
            ck_assert_msg(s.snap[k][i] == t->grad[i], "leaf %d element %zu: %g announced, %g final",
                          k, i, s.snap[k][i], t->grad[i]);
        free(s.snap[k]);
    }
    for (size_t i = 0; i < d->numel; i++)
        ck_assert_float_eq(d->grad[i], 0.0f);
    /* w got both contributions: d(b*w)/dw + d(b)/dw through a. */
    int nonzero = 0;
    for (size_t i = 0; i < w->numel; i++)
        nonzero += w->grad[i] != 0.0f;
    ck_assert_int_eq(nonzero, 12);
    vt_ctx_free(&c);
}
END_TEST

/* The hook off (NULL): the sweep is the plain one, gradients bit-equal. */
START_TEST(grad_ready_changes_nothing)
{
    float g[2][12];
    for (int run = 0; run < 2; run++) {
        vt_ctx c;
        vt_ctx_init(&c, 7);
        int sh[2] = {3, 4};
        vt_tensor *w = vtt_rand(&c, 2, sh, -1, 1, 1, 1), *x = vtt_rand(&c, 2, sh, -1, 1, 4, 0);
        vt_tensor *y = vt_mul(&c, vt_tanh(&c, vt_mul(&c, w, x)), w);
        float seed[12];
        vtt_fill(seed, 12, -1, 1, 5);
        seen s = {0};
        if (run) {
            c.on_grad_ready = on_ready;
            c.on_grad_ud = &s;
        }
        vt_backward_seed(&c, y, seed);
        memcpy(g[run], w->grad, sizeof g[run]);
        for (int k = 0; k < s.n; k++)
            free(s.snap[k]);
        vt_ctx_free(&c);
    }
    ck_assert_mem_eq(g[0], g[1], sizeof g[0]);
}
END_TEST

/* ==== Dropout shards ==================================================== */

START_TEST(dropout_shard_offset)
{
    /* (5, 7, 3): batch of 5 split as 2 + 3. */
    int full[3] = {5, 7, 3}, per = 21;
    vt_ctx c;
    vt_ctx_init(&c, 99);
    c.training = 1;
    vt_tensor *x = vtt_rand(&c, 3, full, -1, 1, 11, 1);
    vt_tensor *y = vt_dropout(&c, x, 0.4f);
    float seed[105];
    vtt_fill(seed, 105, -1, 1, 12);
    vt_backward_seed(&c, y, seed);
    int lo[2] = {0, 2}, n[2] = {2, 3};
    for (int r = 0; r < 2; r++) {
        vt_ctx s;
        vt_ctx_init(&s, 99);
        s.training = 1;
        s.shard_offset = (size_t)lo[r];
        int shp[3] = {n[r], 7, 3};
        vt_tensor *xs = vt_leaf(&s, 3, shp, 1);
        memcpy(xs->data, x->data + lo[r] * per, (size_t)n[r] * per * sizeof(float));
        vt_tensor *ys = vt_dropout(&s, xs, 0.4f);
        vt_backward_seed(&s, ys, seed + lo[r] * per);
        ck_assert_mem_eq(ys->data, y->data + lo[r] * per, (size_t)n[r] * per * sizeof(float));
        ck_assert_mem_eq(xs->grad, x->grad + lo[r] * per, (size_t)n[r] * per * sizeof(float));
        vt_ctx_free(&s);
    }
    int dropped = 0;
    for (int i = 0; i < 105; i++)
        dropped += y->data[i] == 0.0f;
    ck_assert_msg(dropped > 20 && dropped < 65, "%d of 105 dropped at p = 0.4", dropped);
    vt_ctx_free(&c);
}
END_TEST

/* ==== Loader shards ===================================================== */

static char tmpdir[256];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb, (void)flag, (void)f;
    return remove(p);
}

static void make_data(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/vt_dist_XXXXXX", base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    vt_synth_opts o;
    vt_synth_defaults(&o);
    o.out_dir = tmpdir;
    o.classes = "MoveLeft,MoveRight,Grow";
    o.videos_per_class = 6;
    /* 64 px wide: with narrower frames (40 px) valgrind shows swscale
     * writing past the end of vt_video_decode's frame buffer. */
    o.width = 64;
    o.height = 48;
    o.frames = 10;
    char err[256];
    ck_assert_msg(vt_synth_generate(&o, NULL, err, sizeof err) == 0, "%s", err);
}

static void data_config(vt_data_config *c, char *lists, size_t len)
{
    vt_data_config_default(c);
    snprintf(lists, len, "%s/ucfTrainTestlist", tmpdir);
    c->root = tmpdir;
    c->splits = lists;
    c->resize_h = 48;
    c->resize_w = 64;
    c->crop_h = c->crop_w = 24;
    c->clip_len = 4;
    c->batch = 4;
    c->drop_last = 1;
    c->threads = 1;
    c->clips_per_video = 2;
}

START_TEST(loader_training_shards)
{
    make_data();
    char lists[300], err[512];
    size_t per = (size_t)3 * 4 * 24 * 24;
    for (int N = 2; N <= 3; N++) {
        vt_data_config c;
        data_config(&c, lists, sizeof lists);
        vt_loader *whole, *part[3];
        ck_assert_msg(vt_loader_open(&c, VT_TRAIN, &whole, err, sizeof err) == 0, "%s", err);
        for (int r = 0; r < N; r++) {
            c.shard = r;
            c.n_shards = N;
            ck_assert_msg(vt_loader_open(&c, VT_TRAIN, &part[r], err, sizeof err) == 0, "%s", err);
            ck_assert_int_eq(vt_loader_batches_per_epoch(part[r]),
                             vt_loader_batches_per_epoch(whole));
            ck_assert_int_eq(vt_loader_num_shards(part[r]), N);
        }
        /* Two epochs: the second reshuffles. Batch 4 over 3 shards gives
         * shares of 1, 1 and 2 clips. */
        for (int step = 0; step < 2 * vt_loader_batches_per_epoch(whole) + 2; step++) {
            const vt_batch *w, *p;
            int got = vt_loader_next(whole, &w, err, sizeof err);
            ck_assert_int_ge(got, 0);
            int at = 0;
            for (int r = 0; r < N; r++) {
                ck_assert_int_eq(vt_loader_next(part[r], &p, err, sizeof err), got);
                if (!got)
                    continue;
                ck_assert_int_eq(p->first, at);
                ck_assert_int_eq(p->total, w->n);
                ck_assert_int_eq(p->n, (r + 1) * w->n / N - r * w->n / N);
                ck_assert_int_eq(p->index, w->index);
                for (int i = 0; i < p->n; i++) {
                    ck_assert_int_eq(p->label[i], w->label[at + i]);
                    ck_assert_int_eq(p->video[i], w->video[at + i]);
                }
                ck_assert_mem_eq(p->x, w->x + (size_t)at * per, (size_t)p->n * per * sizeof(float));
                at += p->n;
            }
            if (got)
                ck_assert_int_eq(at, w->n);
        }
        vt_loader_close(whole);
        for (int r = 0; r < N; r++)
            vt_loader_close(part[r]);
    }
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

START_TEST(loader_test_shards)
{
    make_data();
    char lists[300], err[512];
    size_t per = (size_t)3 * 4 * 24 * 24;
    vt_data_config c;
    data_config(&c, lists, sizeof lists);
    c.batch = 3;
    vt_loader *whole;
    ck_assert_msg(vt_loader_open(&c, VT_TEST, &whole, err, sizeof err) == 0, "%s", err);
    int nv = vt_loader_num_videos(whole), views = c.clips_per_video;
    float *ref = malloc((size_t)nv * views * per * sizeof(float));
    int *count = calloc((size_t)nv * views, sizeof(int));
    const vt_batch *b;
    int got;
    while ((got = vt_loader_next(whole, &b, err, sizeof err)) == 1)
        for (int i = 0; i < b->n; i++)
            memcpy(ref + ((size_t)b->video[i] * views + b->clip[i]) * per, b->x + (size_t)i * per,
                   per * sizeof(float));
    ck_assert_int_eq(got, 0);
    int N = 4, prev_last = -1;
    for (int r = 0; r < N; r++) {
        vt_loader *l;
        c.shard = r;
        c.n_shards = N;
        ck_assert_msg(vt_loader_open(&c, VT_TEST, &l, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(vt_loader_num_videos(l), nv); /* indexes stay global */
        int first = -1, last = -1;
        while ((got = vt_loader_next(l, &b, err, sizeof err)) == 1)
            for (int i = 0; i < b->n; i++) {
                int q = b->video[i] * views + b->clip[i];
                count[q]++;
                ck_assert_mem_eq(b->x + (size_t)i * per, ref + (size_t)q * per, per * sizeof(float));
                first = first < 0 ? b->video[i] : first;
                last = b->video[i];
            }
        ck_assert_int_eq(got, 0);
        /* Contiguous blocks in order. */
        ck_assert_int_eq(first, prev_last + 1);
        prev_last = last;
        vt_loader_close(l);
    }
    ck_assert_int_eq(prev_last, nv - 1);
    for (int q = 0; q < nv * views; q++)
        ck_assert_msg(count[q] == 1, "view %d seen %d times", q, count[q]);
    /* More shards than videos is an error, not an empty shard. */
    vt_loader *l = NULL;
    c.shard = 0;
    c.n_shards = nv + 1;
    ck_assert_int_eq(vt_loader_open(&c, VT_TEST, &l, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "fewer than the") != NULL, "%s", err);
    c.shard = 3;
    c.n_shards = 3;
    ck_assert_int_eq(vt_loader_open(&c, VT_TRAIN, &l, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "shard 3 of 3") != NULL, "%s", err);
    free(ref);
    free(count);
    vt_loader_close(whole);
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

/* ==== Reducer and collectives with one process ========================== */

START_TEST(reducer_buckets)
{
    vt_store s;
    vt_store_init(&s);
    /* 3 trainable params of 1000, 300, 5000 floats and a buffer between. */
    vt_store_add(&s, "a.weight", 1, (int[]){1000}, 1);
    vt_store_add(&s, "a_bn.running_mean", 1, (int[]){8}, 0);
    vt_store_add(&s, "b.weight", 1, (int[]){300}, 1);
    vt_store_add(&s, "c.weight", 1, (int[]){5000}, 1);
    vt_store_finalize(&s);
    /* 8 KB buckets (2048 floats): c alone (larger than a bucket), then
     * b and a together, running_mean's zero gradient riding along. */
    setenv("VT_BUCKET_MB", "0.0078125", 1);
    vt_dist_reducer *r = vt_dist_reducer_new(&s);
    ck_assert_int_eq(vt_dist_reducer_buckets(r), 2);
    ck_assert_uint_eq(vt_dist_reducer_floats(r), 5000 + (s.p[2].offset + 300 - s.p[0].offset));
    vt_dist_reducer_free(r);
    setenv("VT_BUCKET_MB", "100", 1);
    r = vt_dist_reducer_new(&s);
    ck_assert_int_eq(vt_dist_reducer_buckets(r), 1);
    /* With one process attach/finish leave the gradients alone. */
    vt_ctx c;
    vt_ctx_init(&c, 1);
    for (size_t i = 0; i < s.total; i++)
        s.grad[i] = (float)i;
    vt_dist_reducer_attach(r, &c);
    ck_assert_ptr_null(c.on_grad_ready);
    vt_dist_reducer_finish(r, &c);
    vt_dist_average_buffers(r);
    for (size_t i = 0; i < s.total; i++)
        ck_assert_float_eq(s.grad[i], (float)i);
    vt_dist_reducer_free(r);
    unsetenv("VT_BUCKET_MB");
    vt_ctx_free(&c);
    vt_store_free(&s);
}
END_TEST

START_TEST(one_process_collectives)
{
    char err[64];
    /* Not started by a launcher: one process, MPI never started. */
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("PMI_SIZE");
    unsetenv("PMIX_RANK");
    ck_assert_int_eq(vt_dist_init("test", err, sizeof err), 0);
    ck_assert_int_eq(vt_dist_rank(), 0);
    ck_assert_int_eq(vt_dist_size(), 1);
    ck_assert_int_ge(vt_dist_default_threads(), 1);
    double d[2] = {1.5, -2};
    long l[1] = {7};
    vt_dist_sum_double(d, 2);
    vt_dist_sum_long(l, 1);
    ck_assert(d[0] == 1.5 && d[1] == -2 && l[0] == 7);
    snprintf(err, sizeof err, "mine");
    ck_assert_int_eq(vt_dist_agree(2, err, sizeof err), 2);
    ck_assert_str_eq(err, "mine");
    ck_assert_int_eq(vt_dist_agree(0, err, sizeof err), 0);
    vt_dist_finalize();
}
END_TEST

static Suite *dist_suite(void)
{
    Suite *s = suite_create("dist");
    TCase *tc = tcase_create("dist");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, grad_ready_after_last_use);
    tcase_add_test(tc, grad_ready_changes_nothing);
    tcase_add_test(tc, dropout_shard_offset);
    tcase_add_test(tc, loader_training_shards);
    tcase_add_test(tc, loader_test_shards);
    tcase_add_test(tc, reducer_buckets);
    tcase_add_test(tc, one_process_collectives);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(dist_suite)
