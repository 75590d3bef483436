/* bench_loader.c - training-loader throughput: clips/s of 16x112x112 clips
 * (random crop of 128x171 frames, flip, normalisation) from the HDF5 clip
 * store and from raw 320x240 XviD videos, with 1 and 2 loader threads. The
 * consumer does no work, so this is the loader's ceiling.
 *
 *   bench_loader [--dir DIR] [--videos-per-class N] [--frames F]
 *                [--seconds S] [--batch B]
 *
 * It writes a vsynth dataset (10 classes, 320x240, XviD) and two stores of
 * it (uncompressed and gzip level 1) into DIR (default: a temporary
 * directory, removed afterwards). The store is read from the page cache
 * here; from disk, a clip costs ~0.9 MB of reads (16 frames x 112 rows x
 * 171 x 3 bytes), so 200 clips/s needs ~180 MB/s. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vt_data.h"
#include "vt_synth.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(p);
}

/* Decodes every listed video into a store (what vprep does, serially). */
static int make_store(const char *root, const char *lists, const char *out,
                      int compress, double *seconds)
{
    char err[1024];
    vt_catalog cat;
    if (vt_catalog_load(lists, &cat, err, sizeof err) < 0) {
        fprintf(stderr, "bench_loader: %s\n", err);
        return -1;
    }
    vt_store_opts so = {.height = 128, .width = 171, .compress = compress};
    vt_storewriter *w;
    int resumed;
    remove(out);
    if (vt_storewriter_open(out, &so, &w, &resumed, err, sizeof err) < 0) {
        fprintf(stderr, "bench_loader: %s\n", err);
        vt_catalog_free(&cat);
        return -1;
    }
    double t0 = now_s();
    int rc = 0;
    for (int i = 0; i < cat.n && rc == 0; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", root, cat.v[i].path);
        vt_decode_opts o = {.width = 171, .height = 128};
        vt_frames f;
        if (vt_video_decode(path, &o, &f, err, sizeof err) < 0 ||
            vt_storewriter_put(w, cat.v[i].path, cat.v[i].label, &f, err, sizeof err) < 0) {
            fprintf(stderr, "bench_loader: %s\n", err);
            rc = -1;
        }
        vt_frames_free(&f);
    }
    if (rc == 0 && vt_storewriter_finish(w, &cat, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "bench_loader: %s\n", err);
        rc = -1;
    } else if (rc < 0) {
        vt_storewriter_abort(w);
    }
    *seconds = now_s() - t0;
    vt_catalog_free(&cat);
    return rc;
}

typedef struct {
    double clips_s, wait_frac;
    long clips;
    double seconds;
} result;

/* Runs the training loader for at least `seconds` after one warm-up
 * batch. */
static int measure(const vt_data_config *c, double seconds, result *r)
{
    vt_loader *l;
    char err[1024];
    if (vt_loader_open(c, VT_TRAIN, &l, err, sizeof err) < 0) {
        fprintf(stderr, "bench_loader: %s\n", err);
        return -1;
    }
    const vt_batch *b;
    if (vt_loader_next(l, &b, err, sizeof err) < 0) {
        fprintf(stderr, "bench_loader: %s\n", err);
        vt_loader_close(l);
        return -1;
    }
    vt_loader_stats s0, s1;
    vt_loader_stats_get(l, &s0);
    double t0 = now_s();
    for (;;) {
        int k = vt_loader_next(l, &b, err, sizeof err);
        if (k < 0) {
            fprintf(stderr, "bench_loader: %s\n", err);
            vt_loader_close(l);
            return -1;
        }
        if (now_s() - t0 >= seconds)
            break;
    }
    double dt = now_s() - t0;
    vt_loader_stats_get(l, &s1);
    vt_loader_close(l);
    r->clips = s1.clips - s0.clips;
    r->seconds = dt;
    r->clips_s = (double)r->clips / dt;
    r->wait_frac = (s1.wait_s - s0.wait_s) / dt;
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int per_class = 6, frames = 180, batch = 16;
    double seconds = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: bench_loader [--dir DIR] [--videos-per-class N] "
                   "[--frames F] [--seconds S] [--batch B]\n");
            return 0;
        }
        if (!v) {
            fprintf(stderr, "bench_loader: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--dir"))
            dir = v;
        else if (!strcmp(a, "--videos-per-class"))
            per_class = atoi(v);
        else if (!strcmp(a, "--frames"))
            frames = atoi(v);
        else if (!strcmp(a, "--seconds"))
            seconds = atof(v);
        else if (!strcmp(a, "--batch"))
            batch = atoi(v);
        else {
            fprintf(stderr, "bench_loader: unknown option %s\n", a);
            return 2;
        }
    }
    if (per_class < 2 || frames < 16 || batch < 1 || !(seconds > 0)) {
        fprintf(stderr, "bench_loader: bad option value\n");
        return 2;
    }
    char tmp[512];
    int own = 0;
    if (!dir) {
        const char *base = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/bench_loader_XXXXXX", base ? base : "/tmp");
        if (!mkdtemp(tmp)) {
            fprintf(stderr, "bench_loader: mkdtemp: %s\n", strerror(errno));
            return 1;
        }
        dir = tmp;
        own = 1;
    }
    char root[1024], lists[1100], store[1100], gz[1100];
    snprintf(root, sizeof root, "%s/ds", dir);
    snprintf(lists, sizeof lists, "%s/ucfTrainTestlist", root);
    snprintf(store, sizeof store, "%s/clips.h5", dir);
    snprintf(gz, sizeof gz, "%s/clips_gz1.h5", dir);

    vt_synth_opts so;
    vt_synth_defaults(&so);
    so.out_dir = root;
    so.videos_per_class = per_class;
    so.width = 320;
    so.height = 240;
    so.frames = frames;
    so.codec = "mpeg4";
    char err[1024];
    struct stat st1, st2;
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/classInd.txt", lists);
    /* A --dir from an earlier run is reused as it is. */
    if (own || stat(probe, &st1) != 0 || stat(store, &st1) != 0 || stat(gz, &st2) != 0) {
        double t0 = now_s();
        vt_synth_info info;
        if (vt_synth_generate(&so, &info, err, sizeof err) != 0) {
            fprintf(stderr, "bench_loader: vsynth: %s\n", err);
            return 1;
        }
        printf("dataset: %d videos of %d frames, 320x240 XviD, %d classes (split 1: "
               "%d train) in %.1f s\n", info.n_videos, frames, info.n_classes,
               info.n_train, now_s() - t0);
        double prep_s, prep_gz_s;
        if (make_store(root, lists, store, 0, &prep_s) < 0 ||
            make_store(root, lists, gz, 1, &prep_gz_s) < 0)
            return 1;
        stat(store, &st1);
        stat(gz, &st2);
        printf("store: decoded and written at %.1f videos/s (%.0f MB); gzip 1: %.1f "
               "videos/s (%.0f MB, %.0f%%)\n", info.n_videos / prep_s, st1.st_size / 1e6,
               info.n_videos / prep_gz_s, st2.st_size / 1e6,
               100.0 * (double)st2.st_size / (double)st1.st_size);
    } else {
        printf("reusing the dataset and stores in %s (%.0f MB, gzip 1: %.0f MB)\n", dir,
               st1.st_size / 1e6, st2.st_size / 1e6);
    }
    fflush(stdout);

    vt_data_config c;
    vt_data_config_default(&c);
    c.clip_len = 16;
    c.crop_h = c.crop_w = 112;
    c.batch = batch;
    c.prefetch = 4;
    printf("\n%-34s %7s %10s %8s\n", "source", "threads", "clips/s", "waiting");
    const char *names[2] = {"store (uncompressed)", "store (gzip 1)"};
    const char *paths[2] = {store, gz};
    for (int s = 0; s < 2; s++)
        for (int th = 0; th <= 2; th++) {
            c.store = paths[s];
            c.threads = th;
            result r;
            if (measure(&c, seconds, &r) < 0)
                return 1;
            printf("%-34s %7d %10.1f %7.0f%%\n", names[s], th, r.clips_s,
                   100 * r.wait_frac);
            fflush(stdout);
        }
    c.store = NULL;
    c.root = root;
    c.splits = lists;
    for (int th = 1; th <= 2; th++) {
        c.threads = th;
        /* Epoch 0 decodes every video whole (its length is not known yet);
         * later epochs decode only up to the clip's last frame. */
        vt_loader *l;
        if (vt_loader_open(&c, VT_TRAIN, &l, err, sizeof err) < 0) {
            fprintf(stderr, "bench_loader: %s\n", err);
            return 1;
        }
        for (int e = 0; e < 3; e++) {
            const vt_batch *b;
            int k;
            vt_loader_stats a, z;
            vt_loader_stats_get(l, &a);
            double t = now_s();
            while ((k = vt_loader_next(l, &b, err, sizeof err)) == 1)
                ;
            double dt = now_s() - t;
            vt_loader_stats_get(l, &z);
            if (k < 0) {
                fprintf(stderr, "bench_loader: %s\n", err);
                return 1;
            }
            printf("%-34s %7d %10.1f %7.0f%%\n",
                   e == 0 ? "raw XviD 320x240 (epoch 0)"
                          : e == 1 ? "raw XviD 320x240 (epoch 1)" : "raw XviD 320x240 (epoch 2)",
                   th, (double)(z.clips - a.clips) / dt, 100 * (z.wait_s - a.wait_s) / dt);
            fflush(stdout);
        }
        vt_loader_close(l);
    }
    if (own)
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
