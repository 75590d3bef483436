/* loader.c - batches of clips from the clip store or from raw videos.
 *
 *   batch x (B, 3, T, H, W) float32, labels (B), test: video and view (B)
 *
 * Determinism: batch b of epoch e is a function of (seed, e, b) and the data
 * only. Global batch number g = e * batches_per_epoch + b; worker threads
 * claim g in increasing order, each builds a whole batch into ring slot
 * g % slots, and the consumer takes slots in order. The random numbers of a
 * batch come from vt_hash64(seed, (e << 32) | b, 64 * clip + purpose), the
 * epoch's video order from a Fisher-Yates shuffle keyed by (seed, e).
 * A broken video (decode or read error) is reported once and, in training,
 * replaced by the first readable of a hashed sequence of candidates, so the
 * replacement too depends only on (seed, e, b) and which files are broken;
 * in testing its views are dropped from the batch.
 * Sharding (data-parallel runs): a training shard builds only its slice of
 * each global batch, with the clip indices of the whole batch; a test shard
 * iterates over the views of its contiguous block of videos. */
#include "vt_autograd.h"
#include "vt_data.h"
#include "vt_h5.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAIL(...)                                                              \
    do {                                                                       \
        snprintf(err, errlen, __VA_ARGS__);                                    \
        goto fail;                                                             \
    } while (0)

enum { SLOT_EMPTY, SLOT_FILLING, SLOT_READY };
/* Purposes: the low 6 bits of the hash index. */
enum { R_TIME = 0, R_CROP_Y = 1, R_CROP_X = 2, R_FLIP = 3, R_REPLACE = 8 };
#define MAX_ATTEMPTS 48

typedef struct {
    char *path;      /* raw: full path; store: relative path */
    int label;
    int sidx;        /* store: its index in the store */
    int frames;      /* store: stored count; raw: cached after a full decode
                        (0 = unknown), accessed atomically */
    int h, w;        /* store */
    double fps;      /* store */
} vid;

typedef struct {
    vt_batch b;
    long seq;
    int state;
    int rc;
    char err[512];
} slot;

typedef struct {
    struct vt_loader *l;
    pthread_t th;
    uint8_t *clip;   /* (T, ch, cw, 3) */
    uint8_t *full;   /* store, frames smaller than the crop: (T, h, w, 3) */
    size_t full_cap;
    int *idx;
    uint32_t *perm;
    long perm_epoch;
    /* Last decoded raw video, reused by the views of the same video. */
    int cache_v;
    int cache_full;  /* every frame decoded */
    vt_frames fr;
} worker;

struct vt_loader {
    vt_data_config c;
    int mode;
    int n;
    vid *v;
    char **classes;
    int n_classes;
    vt_clipstore *store;
    vt_norm norm;
    float *cube;
    int views;        /* test views per video */
    long n_items;     /* videos (train) or views (test) per epoch; a test
                         shard: the views of its block of videos */
    long item_base;   /* test shard: the first view of its block */
    int n_shards;     /* 1 without sharding */
    int nb;           /* batches per epoch */
    int T, ch, cw;

    slot *slots;
    int n_slots;
    pthread_mutex_t mu;
    pthread_cond_t cv_ready, cv_space;
    long next_job;    /* next global batch a worker claims */
    long pos;         /* next global batch the consumer returns */
    int held, end_pending, stop;
    worker *w;
    int n_workers;    /* threads; the synchronous mode uses w[0] only */
    int nw_alloc;     /* entries of w */
    int running;

    unsigned char *broken;
    pthread_mutex_t warn_mu;
    vt_loader_stats st;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void vt_data_config_default(vt_data_config *c)
{
    memset(c, 0, sizeof *c);
    c->split = 1;
    c->clip_len = 16;
    c->frame_stride = 1;
    c->resize_h = 128;
    c->resize_w = 171;
    c->crop_h = c->crop_w = 112;
    c->flip = 1;
    c->norm = VT_NORM_MEAN_STD;
    /* Kinetics-400 statistics, as torchvision's video models use. */
    const float mean[3] = {0.43216f, 0.394666f, 0.37645f};
    const float std[3] = {0.22803f, 0.22145f, 0.216989f};
    memcpy(c->mean, mean, sizeof mean);
    memcpy(c->std, std, sizeof std);
    c->clips_per_video = 10;
    c->crops = 1;
    c->batch = 30;
    c->threads = 2;
    c->prefetch = 2;
    c->seed = 1;
    c->shuffle = 1;
}

/* ==== Random numbers ==================================================== */

static uint64_t batch_stream(long e, int b)
{
    return ((uint64_t)e << 32) | (uint32_t)b;
}

static float urand(const vt_loader *l, long e, int b, int clip, int purpose)
{
    return vt_hash_uniform(l->c.seed, batch_stream(e, b),
                           (uint64_t)clip * 64 + (uint64_t)purpose);
}

static uint32_t below(uint64_t h, uint32_t n)
{
    return (uint32_t)(((h >> 32) * (uint64_t)n) >> 32);
}

static void make_perm(const vt_loader *l, long e, uint32_t *perm)
{
    for (int i = 0; i < l->n; i++)
        perm[i] = (uint32_t)i;
    if (!l->c.shuffle)
        return;
    uint64_t stream = ((uint64_t)e << 32) | 0xffffffffu;
    for (int i = l->n - 1; i > 0; i--) {
        uint32_t j = below(vt_hash64(l->c.seed, stream, (uint64_t)i), (uint32_t)i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* ==== Broken videos ===================================================== */

static int is_broken(vt_loader *l, int v)
{
    return __atomic_load_n(&l->broken[v], __ATOMIC_ACQUIRE);
}

static void report(vt_loader *l, const char *msg)
{
    if (l->c.warn)
        l->c.warn(l->c.warn_ud, msg);
    else
        fprintf(stderr, "warning: %s\n", msg);
}

static void mark_broken(vt_loader *l, int v, const char *why)
{
    pthread_mutex_lock(&l->warn_mu);
    if (!l->broken[v]) {
        __atomic_store_n(&l->broken[v], 1, __ATOMIC_RELEASE);
        l->st.skipped++;
        char msg[1024];
        /* The decoder's messages name the file already. */
        if (strstr(why, l->v[v].path))
            snprintf(msg, sizeof msg, "%s; skipped", why);
        else
            snprintf(msg, sizeof msg, "%s: %s; skipped", l->v[v].path, why);
        report(l, msg);
    }
    pthread_mutex_unlock(&l->warn_mu);
}

/* ==== One clip ========================================================== */

static inline int clampi(int v, int n) { return v < 0 ? 0 : v >= n ? n - 1 : v; }

/* (T, ch, cw, 3) from frames (F, h, w, 3) at indices idx, coordinates
 * clamped to the frame (only matters for frames smaller than the crop). */
static void copy_crop(const uint8_t *fr, int h, int w, const int *idx, int T,
                      int y0, int x0, int ch, int cw, uint8_t *dst)
{
    size_t fsz = (size_t)h * (size_t)w * 3;
    int inside = y0 >= 0 && x0 >= 0 && y0 + ch <= h && x0 + cw <= w;
    for (int t = 0; t < T; t++) {
        const uint8_t *f = fr + (size_t)idx[t] * fsz;
        for (int y = 0; y < ch; y++) {
            uint8_t *d = dst + (((size_t)t * ch + y) * cw) * 3;
            const uint8_t *row = f + (size_t)clampi(y0 + y, h) * (size_t)w * 3;
            if (inside) {
                memcpy(d, row + (size_t)x0 * 3, (size_t)cw * 3);
            } else {
                for (int x = 0; x < cw; x++)
                    memcpy(d + (size_t)x * 3, row + (size_t)clampi(x0 + x, w) * 3, 3);
            }
        }
    }
}

/* Decodes video v (all frames, or the first `need` when need > 0) into the
 * worker's cache unless it is there already. */
static int decode(worker *wk, int v, int need, char *err, size_t errlen)
{
    vt_loader *l = wk->l;
    if (wk->cache_v == v && (wk->cache_full || (need > 0 && wk->fr.n >= need)))
        return 0;
    vt_frames_free(&wk->fr);
    wk->cache_v = -1;
    vt_decode_opts o = {.width = l->c.resize_w, .height = l->c.resize_h,
                        .short_side = l->c.short_side, .fps = l->c.fps,
                        .max_frames = need > 0 ? need : 0};
    memset(&wk->fr, 0, sizeof wk->fr);
    if (vt_video_decode(l->v[v].path, &o, &wk->fr, err, errlen) < 0) {
        memset(&wk->fr, 0, sizeof wk->fr);
        return -1;
    }
    wk->cache_v = v;
    wk->cache_full = need <= 0 || wk->fr.n < need;
    if (wk->cache_full)
        __atomic_store_n(&l->v[v].frames, wk->fr.n, __ATOMIC_RELEASE);
    return 0;
}

/* Fills one (3, T, ch, cw) sample from video v. which: crop (-1 random),
 * pos: temporal position in [0, 1). */
static int make_clip(worker *wk, int v, double pos, int which, float uy,
                     float ux, int flip, float *dst, char *err, size_t errlen)
{
    vt_loader *l = wk->l;
    const vid *vd = &l->v[v];
    int T = l->T, ch = l->ch, cw = l->cw;
    int y0, x0;
    if (l->store) {
        double step = l->c.frame_stride;
        if (l->c.fps > 0 && vd->fps > 0)
            step *= vd->fps / l->c.fps;
        vt_clip_indices(vd->frames, T, step, pos, wk->idx);
        vt_crop_offset(vd->h, vd->w, ch, cw, which, uy, ux, &y0, &x0);
        if (y0 >= 0 && x0 >= 0 && y0 + ch <= vd->h && x0 + cw <= vd->w) {
            if (vt_clipstore_read(l->store, vd->sidx, wk->idx, T, y0, x0, ch, cw,
                                  wk->clip, err, errlen) < 0)
                return -1;
        } else {
            size_t need = (size_t)T * (size_t)vd->h * (size_t)vd->w * 3;
            if (need > wk->full_cap) {
                uint8_t *p = realloc(wk->full, need);
                if (!p) {
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
                wk->full = p;
                wk->full_cap = need;
            }
            int seq[T];
            for (int t = 0; t < T; t++)
                seq[t] = t;
            if (vt_clipstore_read(l->store, vd->sidx, wk->idx, T, 0, 0, vd->h, vd->w,
                                  wk->full, err, errlen) < 0)
                return -1;
            copy_crop(wk->full, vd->h, vd->w, seq, T, y0, x0, ch, cw, wk->clip);
        }
    } else {
        int known = __atomic_load_n(&l->v[v].frames, __ATOMIC_ACQUIRE);
        int need = 0;
        if (known > 0 && which < 0) {
            /* Frame count known from an earlier full decode: decode only up
             * to the clip's last frame. */
            vt_clip_indices(known, T, l->c.frame_stride, pos, wk->idx);
            for (int t = 0; t < T; t++)
                need = wk->idx[t] + 1 > need ? wk->idx[t] + 1 : need;
        }
        if (decode(wk, v, need, err, errlen) < 0)
            return -1;
        int F = wk->cache_full ? wk->fr.n : known;
        vt_clip_indices(F, T, l->c.frame_stride, pos, wk->idx);
        vt_crop_offset(wk->fr.h, wk->fr.w, ch, cw, which, uy, ux, &y0, &x0);
        copy_crop(wk->fr.data, wk->fr.h, wk->fr.w, wk->idx, T, y0, x0, ch, cw, wk->clip);
    }
    vt_clip_to_float(wk->clip, T, ch, cw, flip, &l->norm, y0, x0, dst);
    return 0;
}

/* ==== One batch ========================================================= */

static void build(worker *wk, long g, slot *s)
{
    vt_loader *l = wk->l;
    long e = g / l->nb;
    int b = (int)(g % l->nb);
    vt_batch *bt = &s->b;
    size_t per = (size_t)3 * l->T * l->ch * l->cw;
    long start = (long)b * l->c.batch;
    int n = (int)(l->n_items - start < l->c.batch ? l->n_items - start : l->c.batch);
    char why[512];
    int out = 0;
    /* Training share of this shard: clips [lo, hi) of the whole batch. */
    int lo = 0, hi = n;
    if (l->mode == VT_TRAIN && l->n_shards > 1) {
        lo = (int)((long)l->c.shard * n / l->n_shards);
        hi = (int)((long)(l->c.shard + 1) * n / l->n_shards);
    }
    s->rc = 0;
    bt->epoch = (int)e;
    bt->index = b;
    bt->first = lo;
    bt->total = n;
    if (l->mode == VT_TRAIN && wk->perm_epoch != e) {
        make_perm(l, e, wk->perm);
        wk->perm_epoch = e;
    }
    for (int i = lo; i < hi; i++) {
        float *dst = bt->x + (size_t)out * per;
        if (l->mode == VT_TRAIN) {
            double pos = urand(l, e, b, i, R_TIME);
            float uy = urand(l, e, b, i, R_CROP_Y), ux = urand(l, e, b, i, R_CROP_X);
            int flip = l->c.flip && urand(l, e, b, i, R_FLIP) < 0.5f;
            int v = (int)wk->perm[start + i];
            int ok = 0;
            for (int a = 0; a <= MAX_ATTEMPTS && !ok; a++) {
                if (a > 0)
                    v = (int)below(vt_hash64(l->c.seed, batch_stream(e, b),
                                             (uint64_t)i * 64 + R_REPLACE + (uint64_t)a),
                                   (uint32_t)l->n);
                if (is_broken(l, v))
                    continue;
                if (make_clip(wk, v, pos, -1, uy, ux, flip, dst, why, sizeof why) == 0)
                    ok = 1;
                else
                    mark_broken(l, v, why);
            }
            if (!ok)
                continue;
            bt->label[out] = l->v[v].label;
            bt->video[out] = v;
            bt->clip[out] = 0;
            out++;
        } else {
            long q = l->item_base + start + i;
            int v = (int)(q / l->views), view = (int)(q % l->views);
            int k = view / l->c.crops, crop = view % l->c.crops;
            int which = l->c.crops == 1 ? 0 : crop + 1;
            double pos = (k + 0.5) / l->c.clips_per_video;
            if (is_broken(l, v))
                continue;
            if (make_clip(wk, v, pos, which, 0, 0, 0, dst, why, sizeof why) < 0) {
                mark_broken(l, v, why);
                continue;
            }
            bt->label[out] = l->v[v].label;
            bt->video[out] = v;
            bt->clip[out] = view;
            out++;
        }
    }
    bt->n = out;
    if (l->mode == VT_TRAIN && out == 0 && hi > lo) {
        s->rc = -1;
        snprintf(s->err, sizeof s->err, "batch %d of epoch %ld: no readable video "
                 "among %d candidates per clip", b, e, MAX_ATTEMPTS + 1);
    }
}

/* ==== Threads and the ring ============================================== */

static void *worker_main(void *arg)
{
    worker *wk = arg;
    vt_loader *l = wk->l;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && l->slots[l->next_job % l->n_slots].state != SLOT_EMPTY)
            pthread_cond_wait(&l->cv_space, &l->mu);
        if (l->stop)
            break;
        long g = l->next_job++;
        slot *s = &l->slots[g % l->n_slots];
        s->state = SLOT_FILLING;
        s->seq = g;
        pthread_mutex_unlock(&l->mu);
        build(wk, g, s);
        pthread_mutex_lock(&l->mu);
        s->state = SLOT_READY;
        pthread_cond_broadcast(&l->cv_ready);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void stop_workers(vt_loader *l)
{
    if (!l->running)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv_space);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->n_workers; i++)
        pthread_join(l->w[i].th, NULL);
    l->running = 0;
}

static int start_workers(vt_loader *l, char *err, size_t errlen)
{
    for (int i = 0; i < l->n_slots; i++)
        l->slots[i].state = SLOT_EMPTY;
    l->next_job = l->pos;
    l->held = 0;
    l->stop = 0;
    if (l->c.threads == 0)
        return 0;
    for (int i = 0; i < l->n_workers; i++)
        if (pthread_create(&l->w[i].th, NULL, worker_main, &l->w[i]) != 0) {
            l->n_workers = i;
            l->running = 1;
            stop_workers(l);
            snprintf(err, errlen, "cannot start loader thread %d", i);
            return -1;
        }
    l->running = 1;
    return 0;
}

int vt_loader_next(vt_loader *l, const vt_batch **out, char *err, size_t errlen)
{
    if (l->c.threads == 0) {
        if (l->end_pending) {
            l->end_pending = 0;
            return 0;
        }
        double t0 = now_s();
        slot *s = &l->slots[0];
        build(&l->w[0], l->pos, s);
        l->st.wait_s += now_s() - t0;
        if (s->rc < 0) {
            snprintf(err, errlen, "%s", s->err);
            return -1;
        }
        l->pos++;
        l->end_pending = l->pos % l->nb == 0;
        l->st.batches++;
        l->st.clips += s->b.n;
        *out = &s->b;
        return 1;
    }
    pthread_mutex_lock(&l->mu);
    if (l->held) {
        l->slots[(l->pos - 1) % l->n_slots].state = SLOT_EMPTY;
        l->held = 0;
        pthread_cond_broadcast(&l->cv_space);
    }
    if (l->end_pending) {
        l->end_pending = 0;
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    slot *s = &l->slots[l->pos % l->n_slots];
    double t0 = now_s();
    while (!(s->state == SLOT_READY && s->seq == l->pos))
        pthread_cond_wait(&l->cv_ready, &l->mu);
    l->st.wait_s += now_s() - t0;
    if (s->rc < 0) {
        snprintf(err, errlen, "%s", s->err);
        pthread_mutex_unlock(&l->mu);
        return -1;
    }
    l->held = 1;
    l->pos++;
    l->end_pending = l->pos % l->nb == 0;
    l->st.batches++;
    l->st.clips += s->b.n;
    pthread_mutex_unlock(&l->mu);
    *out = &s->b;
    return 1;
}

void vt_loader_position(const vt_loader *l, int *epoch, int *batch)
{
    /* After the last batch of an epoch, before the end-of-epoch return, the
     * position already names the next epoch's first batch. */
    *epoch = (int)(l->pos / l->nb);
    *batch = (int)(l->pos % l->nb);
}

int vt_loader_seek(vt_loader *l, int epoch, int batch, char *err, size_t errlen)
{
    if (epoch < 0 || batch < 0 || batch >= l->nb) {
        snprintf(err, errlen, "loader position (epoch %d, batch %d): batch must "
                 "be 0..%d", epoch, batch, l->nb - 1);
        return -1;
    }
    stop_workers(l);
    l->pos = (long)epoch * l->nb + batch;
    l->end_pending = 0;
    return start_workers(l, err, errlen);
}

int vt_loader_batches_per_epoch(const vt_loader *l) { return l->nb; }
int vt_loader_num_videos(const vt_loader *l) { return l->n; }
const char *vt_loader_video_path(const vt_loader *l, int v) { return l->v[v].path; }
int vt_loader_video_label(const vt_loader *l, int v) { return l->v[v].label; }
int vt_loader_num_classes(const vt_loader *l) { return l->n_classes; }
int vt_loader_num_shards(const vt_loader *l) { return l->n_shards; }
const char *vt_loader_class_name(const vt_loader *l, int k) { return l->classes[k]; }

void vt_loader_stats_get(vt_loader *l, vt_loader_stats *s)
{
    pthread_mutex_lock(&l->mu);
    pthread_mutex_lock(&l->warn_mu);
    *s = l->st;
    pthread_mutex_unlock(&l->warn_mu);
    pthread_mutex_unlock(&l->mu);
}

/* ==== Open and close ==================================================== */

void vt_loader_close(vt_loader *l)
{
    if (!l)
        return;
    stop_workers(l);
    for (int i = 0; l->slots && i < l->n_slots; i++) {
        free(l->slots[i].b.x);
        free(l->slots[i].b.label);
        free(l->slots[i].b.video);
        free(l->slots[i].b.clip);
    }
    free(l->slots);
    for (int i = 0; l->w && i < l->nw_alloc; i++) {
        free(l->w[i].clip);
        free(l->w[i].full);
        free(l->w[i].idx);
        free(l->w[i].perm);
        vt_frames_free(&l->w[i].fr);
    }
    free(l->w);
    for (int i = 0; l->v && i < l->n; i++)
        free(l->v[i].path);
    free(l->v);
    vt_classes_free(l->classes, l->n_classes);
    vt_clipstore_close(l->store);
    free(l->cube);
    free(l->broken);
    free((char *)l->c.store);
    free((char *)l->c.root);
    free((char *)l->c.splits);
    free((char *)l->c.mean_file);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->warn_mu);
    pthread_cond_destroy(&l->cv_ready);
    pthread_cond_destroy(&l->cv_space);
    free(l);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int check_config(const vt_data_config *c, int mode, char *err, size_t errlen)
{
#define BAD(...)                                                               \
    do {                                                                       \
        snprintf(err, errlen, "[data] " __VA_ARGS__);                          \
        return -1;                                                             \
    } while (0)
    if (mode != VT_TRAIN && mode != VT_TEST)
        BAD("unknown loader mode %d", mode);
    if (!c->store && (!c->root || !c->splits))
        BAD("needs either a store or both a video root and a splits directory");
    if (c->split < 1)
        BAD("split = %d: splits are numbered from 1", c->split);
    if (c->clip_len < 1 || c->clip_len > 4096)
        BAD("clip_len = %d: must be 1..4096", c->clip_len);
    if (c->frame_stride < 1)
        BAD("frame_stride = %d: must be >= 1", c->frame_stride);
    if (c->fps < 0)
        BAD("fps = %g: must be >= 0 (0 = as decoded)", c->fps);
    if (c->crop_h < 1 || c->crop_w < 1 || c->crop_h > 8192 || c->crop_w > 8192)
        BAD("crop %dx%d: must be positive", c->crop_h, c->crop_w);
    if (c->resize_h < 0 || c->resize_w < 0 || c->short_side < 0 ||
        (c->resize_h > 0) != (c->resize_w > 0))
        BAD("resize %dx%d: give both height and width, or neither", c->resize_h,
            c->resize_w);
    if (c->resize_h > 0 && c->short_side > 0)
        BAD("give either resize or short_side, not both");
    if (c->norm != VT_NORM_MEAN_STD && c->norm != VT_NORM_C3D)
        BAD("unknown normalisation %d", c->norm);
    for (int k = 0; k < 3; k++)
        if (c->norm == VT_NORM_MEAN_STD && !(c->std[k] > 0))
            BAD("std[%d] = %g: must be > 0", k, c->std[k]);
    if (c->clips_per_video < 1)
        BAD("clips_per_video = %d: must be >= 1", c->clips_per_video);
    if (c->crops != 1 && c->crops != 3)
        BAD("crops = %d: must be 1 or 3", c->crops);
    if (c->batch < 1)
        BAD("batch = %d: must be >= 1", c->batch);
    if (c->threads < 0 || c->threads > 256)
        BAD("threads = %d: must be 0..256", c->threads);
    if (c->prefetch < 0 || c->prefetch > 1024)
        BAD("prefetch = %d: must be 0..1024", c->prefetch);
    if (c->n_shards < 0 || (c->n_shards > 0 && (c->shard < 0 || c->shard >= c->n_shards)))
        BAD("shard %d of %d: must be 0..n_shards-1", c->shard, c->n_shards);
    return 0;
#undef BAD
}

static int load_cube(vt_loader *l, int h, int w, char *err, size_t errlen)
{
    hid_t f = H5Fopen(l->c.mean_file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        snprintf(err, errlen, "mean_file %s: cannot open as HDF5", l->c.mean_file);
        return -1;
    }
    int nd = 0, shape[VT_H5_MAX_DIMS];
    char e2[256];
    int rc = vt_h5_read_f32(f, "mean", &l->cube, &nd, shape, e2, sizeof e2);
    H5Fclose(f);
    if (rc < 0) {
        snprintf(err, errlen, "mean_file %s: %s", l->c.mean_file, e2);
        return -1;
    }
    if (nd != 4 || shape[0] != 3 || shape[1] != l->T || shape[2] != h || shape[3] != w) {
        snprintf(err, errlen, "mean_file %s: dataset 'mean' must be (3, %d, %d, %d) "
                 "(channels, clip_len, frame height, width); it has %d dims",
                 l->c.mean_file, l->T, h, w, nd);
        return -1;
    }
    vt_norm_init(&l->norm, VT_NORM_C3D, l->c.mean, l->c.std, l->cube, l->T, h, w);
    return 0;
}

static int open_store_list(vt_loader *l, char *err, size_t errlen)
{
    const vt_data_config *c = &l->c;
    if (vt_clipstore_open(c->store, &l->store, err, errlen) < 0)
        return -1;
    const vt_store_meta *m = vt_clipstore_meta(l->store);
    if (c->split > m->n_splits)
        FAIL("%s: split %d requested but the store has %d split(s)", c->store,
             c->split, m->n_splits);
    const vt_store_opts *so = &m->opts;
    char made[64];
    if (so->height)
        snprintf(made, sizeof made, "--size %dx%d", so->height, so->width);
    else if (so->short_side)
        snprintf(made, sizeof made, "--size %d", so->short_side);
    else
        snprintf(made, sizeof made, "--size source");
    if (c->resize_h > 0 && (so->height != c->resize_h || so->width != c->resize_w))
        FAIL("%s was made with vprep %s but [data] asks for resize %dx%d: set resize "
             "to 0 (use the store's frames) or make a store with --size %dx%d",
             c->store, made, c->resize_h, c->resize_w, c->resize_h, c->resize_w);
    if (c->short_side > 0 && so->short_side != c->short_side)
        FAIL("%s was made with vprep %s but [data] asks for short side %d: set it "
             "to 0 (use the store's frames) or make a store with --size %d",
             c->store, made, c->short_side, c->short_side);
    l->n_classes = m->n_classes;
    l->classes = calloc((size_t)m->n_classes, sizeof *l->classes);
    l->v = calloc((size_t)m->n_videos + 1, sizeof *l->v);
    if (!l->classes || !l->v)
        FAIL("out of memory");
    for (int k = 0; k < m->n_classes; k++)
        if (!(l->classes[k] = strdup(m->classes[k])))
            FAIL("out of memory");
    int want = l->mode == VT_TRAIN ? 1 : 2;
    for (int i = 0; i < m->n_videos; i++) {
        if (m->split[(size_t)i * (size_t)m->n_splits + (size_t)(c->split - 1)] != want)
            continue;
        if (m->frames[i] <= 0) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s: not in the store (%s); skipped", m->paths[i],
                     m->errors[i] ? m->errors[i] : "not stored");
            report(l, msg);
            l->st.missing++;
            continue;
        }
        vid *d = &l->v[l->n];
        if (!(d->path = strdup(m->paths[i])))
            FAIL("out of memory");
        d->label = m->labels[i];
        d->sidx = i;
        d->frames = m->frames[i];
        d->h = m->heights[i];
        d->w = m->widths[i];
        d->fps = m->fps[i];
        l->n++;
    }
    if (c->fps > 0)
        for (int i = 0; i < l->n; i++)
            if (!(l->v[i].fps > 0))
                FAIL("%s: fps = %g requested but %s has no frame rate", c->store,
                     c->fps, l->v[i].path);
    if (c->mean_file) {
        for (int i = 1; i < l->n; i++)
            if (l->v[i].h != l->v[0].h || l->v[i].w != l->v[0].w)
                FAIL("mean_file needs equally sized frames; %s is %dx%d, %s %dx%d",
                     l->v[0].path, l->v[0].h, l->v[0].w, l->v[i].path, l->v[i].h,
                     l->v[i].w);
        if (l->n > 0 && load_cube(l, l->v[0].h, l->v[0].w, err, errlen) < 0)
            return -1;
    }
    return 0;
fail:
    return -1;
}

static int cmp_vid(const void *a, const void *b)
{
    return strcmp(((const vid *)a)->path, ((const vid *)b)->path);
}

/* Videos are ordered by path (byte order), as in a store, so that a store
 * and the raw videos it was made from give the same batches. */
static int open_raw_list(vt_loader *l, char *err, size_t errlen)
{
    const vt_data_config *c = &l->c;
    vt_split sp;
    if (vt_split_load(c->splits, c->split, &sp, err, errlen) < 0)
        return -1;
    const vt_list_entry *e = l->mode == VT_TRAIN ? sp.train : sp.test;
    int n = l->mode == VT_TRAIN ? sp.n_train : sp.n_test;
    l->classes = sp.classes;
    l->n_classes = sp.n_classes;
    sp.classes = NULL;
    sp.n_classes = 0;
    l->v = calloc((size_t)n + 1, sizeof *l->v);
    if (!l->v)
        FAIL("out of memory");
    for (int i = 0; i < n; i++) {
        size_t len = strlen(c->root) + strlen(e[i].path) + 2;
        char *p = malloc(len);
        if (!p)
            FAIL("out of memory");
        snprintf(p, len, "%s/%s", c->root, e[i].path);
        l->v[l->n].path = p;
        l->v[l->n].label = e[i].label;
        l->v[l->n].sidx = -1;
        l->n++;
    }
    vt_split_free(&sp);
    qsort(l->v, (size_t)l->n, sizeof *l->v, cmp_vid);
    if (c->mean_file) {
        if (c->resize_h <= 0)
            FAIL("mean_file needs a fixed frame size: set resize (e.g. 128x171)");
        if (load_cube(l, c->resize_h, c->resize_w, err, errlen) < 0)
            return -1;
    }
    return 0;
fail:
    vt_split_free(&sp);
    return -1;
}

int vt_loader_open(const vt_data_config *cfg, int mode, vt_loader **out,
                   char *err, size_t errlen)
{
    if (check_config(cfg, mode, err, errlen) < 0)
        return -1;
    vt_h5_quiet();
    vt_loader *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->warn_mu, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    pthread_cond_init(&l->cv_space, NULL);
    l->c = *cfg;
    l->c.store = dup_or_null(cfg->store);
    l->c.root = dup_or_null(cfg->root);
    l->c.splits = dup_or_null(cfg->splits);
    l->c.mean_file = dup_or_null(cfg->mean_file);
    l->mode = mode;
    l->T = cfg->clip_len;
    l->ch = cfg->crop_h;
    l->cw = cfg->crop_w;
    vt_norm_init(&l->norm, cfg->norm, cfg->mean, cfg->std, NULL, 0, 0, 0);
    if ((cfg->store ? open_store_list(l, err, errlen)
                    : open_raw_list(l, err, errlen)) < 0)
        goto fail;
    const char *what = mode == VT_TRAIN ? "training" : "test";
    if (l->n == 0)
        FAIL("the %s list of split %d has no %svideos", what, cfg->split,
             cfg->store ? "stored " : "");
    l->broken = calloc((size_t)l->n, 1);
    if (!l->broken)
        FAIL("out of memory");
    l->views = mode == VT_TEST ? cfg->clips_per_video * cfg->crops : 1;
    l->n_items = mode == VT_TEST ? (long)l->n * l->views : l->n;
    l->n_shards = cfg->n_shards > 1 ? cfg->n_shards : 1;
    if (mode == VT_TEST && l->n_shards > 1) {
        if (l->n < l->n_shards)
            FAIL("the test list of split %d has %d videos, fewer than the %d processes "
                 "that share it", cfg->split, l->n, l->n_shards);
        long v0 = (long)cfg->shard * l->n / l->n_shards;
        long v1 = (long)(cfg->shard + 1) * l->n / l->n_shards;
        l->item_base = v0 * l->views;
        l->n_items = (v1 - v0) * l->views;
    }
    l->nb = (int)((l->n_items + cfg->batch - 1) / cfg->batch);
    if (mode == VT_TRAIN && cfg->drop_last) {
        l->nb = (int)(l->n_items / cfg->batch);
        if (l->nb == 0)
            FAIL("%d training videos make no full batch of %d (drop_last)", l->n,
                 cfg->batch);
    }
    l->st.n_videos = l->n;
    l->n_workers = cfg->threads;
    l->n_slots = cfg->threads ? cfg->prefetch + 1 : 1;
    l->slots = calloc((size_t)l->n_slots, sizeof *l->slots);
    int nw = l->n_workers ? l->n_workers : 1;
    l->w = calloc((size_t)nw, sizeof *l->w);
    if (!l->slots || !l->w)
        FAIL("out of memory");
    l->nw_alloc = nw;
    size_t per = (size_t)3 * l->T * l->ch * l->cw;
    /* A training shard holds at most ceil(batch / N) clips of a batch. */
    int cap = mode == VT_TRAIN ? (cfg->batch + l->n_shards - 1) / l->n_shards : cfg->batch;
    for (int i = 0; i < l->n_slots; i++) {
        vt_batch *b = &l->slots[i].b;
        b->t = l->T;
        b->h = l->ch;
        b->w = l->cw;
        b->x = malloc(per * (size_t)cap * sizeof(float));
        b->label = calloc((size_t)cap, sizeof(int));
        b->video = calloc((size_t)cap, sizeof(int));
        b->clip = calloc((size_t)cap, sizeof(int));
        if (!b->x || !b->label || !b->video || !b->clip)
            FAIL("out of memory for %d batch buffers of %.0f MB (lower prefetch or "
                 "batch)", l->n_slots, per * (double)cap * 4 / 1048576.0);
    }
    for (int i = 0; i < nw; i++) {
        worker *wk = &l->w[i];
        wk->l = l;
        wk->cache_v = -1;
        wk->perm_epoch = -1;
        wk->clip = malloc((size_t)l->T * l->ch * l->cw * 3);
        wk->idx = malloc((size_t)l->T * sizeof(int));
        wk->perm = malloc((size_t)l->n * sizeof(uint32_t));
        if (!wk->clip || !wk->idx || !wk->perm)
            FAIL("out of memory");
    }
    if (start_workers(l, err, errlen) < 0)
        goto fail;
    *out = l;
    return 0;
fail:
    vt_loader_close(l);
    return -1;
}
