/* test_loader.c - the clip pipeline: sampling rules, float conversion, the
 * HDF5 clip store (round trip, resume, h5py), the loader (clip validity,
 * test views, determinism across thread counts, resume by position), and
 * end to end on a vsynth dataset: vprep, vprep --check, raw videos against
 * the store, broken files.
 *
 * Stores written here use pixels that encode their own coordinates,
 *   R = (t + 17 v) % 256, G = y % 256, B = (x + 31 v) % 256,
 * so every clip the loader returns can be traced back to the video, frames,
 * crop window and flip it came from. */
#define _XOPEN_SOURCE 700
#include "vt_test.h"
#include "vt_data.h"
#include "vt_h5.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ==== Helpers =========================================================== */

static char tmpdir[256];

static void mk_tmp(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/vt_loader_XXXXXX", base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(p);
}

static void rm_tmp(void) { nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static uint8_t px(int v, int t, int y, int x, int c)
{
    return (uint8_t)(c == 0 ? (t + 17 * v) % 256 : c == 1 ? y % 256 : (x + 31 * v) % 256);
}

static void make_frames(vt_frames *f, int v, int F, int H, int W)
{
    memset(f, 0, sizeof *f);
    f->n = F;
    f->h = H;
    f->w = W;
    f->fps = 25;
    f->src_fps = 25;
    f->src_w = 320;
    f->src_h = 240;
    f->data = malloc((size_t)F * H * W * 3);
    ck_assert_ptr_nonnull(f->data);
    for (int t = 0; t < F; t++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++)
                    f->data[(((size_t)t * H + y) * W + x) * 3 + c] = px(v, t, y, x, c);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

static uint64_t batch_hash(const vt_batch *b)
{
    uint64_t h = 1469598103934665603ULL;
    h = fnv(h, &b->n, sizeof b->n);
    h = fnv(h, b->x, (size_t)b->n * 3 * b->t * b->h * b->w * sizeof(float));
    h = fnv(h, b->label, (size_t)b->n * sizeof(int));
    h = fnv(h, b->video, (size_t)b->n * sizeof(int));
    h = fnv(h, b->clip, (size_t)b->n * sizeof(int));
    return h;
}

/* Runs a shell command, returns its exit status. */
static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static int count_substr(const char *s, const char *sub)
{
    int n = 0;
    for (const char *p = strstr(s, sub); p; p = strstr(p + 1, sub))
        n++;
    return n;
}

static const char *source_root(void)
{
    const char *r = getenv("VT_SOURCE_ROOT");
    return r ? r : ".";
}

static const char *build_root(void)
{
    const char *r = getenv("VT_BUILD_ROOT");
    return r ? r : ".";
}

/* h5py present? (the checks that need it skip with a message if not) */
static int have_h5py(void)
{
    return run("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") == 0;
}

/* ==== A synthetic store ================================================= */

/* 12 videos over classes A, B, C, sorted by path. Split 1 tests group 1,
 * split 2 group 2. Sizes and lengths vary; B/v_B_g01_c02 has 5 frames (a
 * short video for T = 8 at stride 2) and C/v_C_g02_c02 is not stored (its
 * error stands in for a broken file). */
typedef struct {
    const char *path;
    int label, F, H, W;
} spec;

static const spec SPECS[12] = {
    {"A/v_A_g01_c01.avi", 0, 20, 36, 48}, {"A/v_A_g01_c02.avi", 0, 33, 40, 44},
    {"A/v_A_g02_c01.avi", 0, 40, 30, 60}, {"A/v_A_g02_c02.avi", 0, 17, 36, 48},
    {"B/v_B_g01_c01.avi", 1, 24, 36, 48}, {"B/v_B_g01_c02.avi", 1, 5, 36, 48},
    {"B/v_B_g02_c01.avi", 1, 31, 48, 36}, {"B/v_B_g02_c02.avi", 1, 16, 36, 48},
    {"C/v_C_g01_c01.avi", 2, 22, 36, 48}, {"C/v_C_g01_c02.avi", 2, 15, 36, 48},
    {"C/v_C_g02_c01.avi", 2, 38, 32, 40}, {"C/v_C_g02_c02.avi", 2, 0, 0, 0},
};
static char *CLASSES[3] = {"A", "B", "C"};

static void fill_catalog(vt_catalog *c, vt_list_entry *e, signed char *member)
{
    memset(c, 0, sizeof *c);
    c->n_classes = 3;
    c->classes = CLASSES;
    c->n_splits = 2;
    c->n = 12;
    c->v = e;
    c->member = member;
    for (int i = 0; i < 12; i++) {
        e[i].path = (char *)SPECS[i].path;
        e[i].label = SPECS[i].label;
        e[i].group = strstr(SPECS[i].path, "_g01_") ? 1 : 2;
        e[i].line = i + 1;
        member[i * 2] = e[i].group == 1 ? 2 : 1;
        member[i * 2 + 1] = e[i].group == 2 ? 2 : 1;
    }
}

/* Writes the store; videos [first, last) only, and finishes if asked. */
static void write_store(const char *path, int compress)
{
    vt_store_opts o = {.height = 0, .width = 0, .compress = compress};
    vt_storewriter *w;
    int resumed = -1;
    char err[512] = "";
    ck_assert_msg(vt_storewriter_open(path, &o, &w, &resumed, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_int_eq(resumed, 0);
    for (int i = 0; i < 12; i++) {
        if (SPECS[i].F == 0)
            continue;
        vt_frames f;
        make_frames(&f, i, SPECS[i].F, SPECS[i].H, SPECS[i].W);
        ck_assert_msg(vt_storewriter_put(w, SPECS[i].path, SPECS[i].label, &f, err,
                                         sizeof err) == 0, "%s", err);
        free(f.data);
    }
    vt_catalog c;
    vt_list_entry e[12];
    signed char member[24];
    fill_catalog(&c, e, member);
    char *errors[12] = {0};
    errors[11] = "C/v_C_g02_c02.avi: invalid data found when processing input";
    ck_assert_msg(vt_storewriter_finish(w, &c, errors, err, sizeof err) == 0, "%s", err);
}

/* Captures warnings. */
typedef struct {
    int n;
    char msg[64][512];
} warnings;

static void on_warn(void *ud, const char *msg)
{
    warnings *w = ud;
    if (w->n < 64)
        snprintf(w->msg[w->n], sizeof w->msg[0], "%s", msg);
    w->n++;
}

static void store_config(vt_data_config *c, const char *store, warnings *w)
{
    vt_data_config_default(c);
    c->store = store;
    c->resize_h = c->resize_w = 0;
    c->clip_len = 8;
    c->frame_stride = 2;
    c->crop_h = 24;
    c->crop_w = 32;
    c->mean[0] = c->mean[1] = c->mean[2] = 0;
    c->std[0] = c->std[1] = c->std[2] = 1;
    c->batch = 4;
    c->threads = 2;
    c->prefetch = 2;
    c->seed = 42;
    c->clips_per_video = 3;
    c->crops = 3;
    c->warn = on_warn;
    c->warn_ud = w;
}

/* Pixel value back from a mean 0 / std 1 float. */
static int val(const vt_batch *b, int i, int c, int t, int y, int x)
{
    size_t k = ((((size_t)i * 3 + c) * b->t + t) * b->h + y) * b->w + x;
    return (int)lrintf(b->x[k] * 255.0f);
}

/* Finds where clip i of the batch came from, asserting that it is a valid
 * clip of its video: frames t0 + s*k (or looped), rows y0.., columns x0..
 * in order or mirrored. Returns t0, y0, x0 and flip. */
static void trace_clip(const vt_batch *b, int i, int stride, int *t0, int *y0,
                       int *x0, int *flip)
{
    int v = b->video[i];
    const spec *s = &SPECS[v];
    ck_assert_int_eq(b->label[i], s->label);
    int T = b->t, span = (T - 1) * stride + 1;
    *t0 = ((val(b, i, 0, 0, 0, 0) - 17 * v) % 256 + 256) % 256;
    *y0 = val(b, i, 1, 0, 0, 0);
    int c0 = ((val(b, i, 2, 0, 0, 0) - 31 * v) % 256 + 256) % 256;
    int c1 = ((val(b, i, 2, 0, 0, 1) - 31 * v) % 256 + 256) % 256;
    *flip = c1 < c0;
    *x0 = *flip ? c0 - (b->w - 1) : c0;
    ck_assert_int_ge(*y0, 0);
    ck_assert_int_le(*y0 + b->h, s->H);
    ck_assert_int_ge(*x0, 0);
    ck_assert_int_le(*x0 + b->w, s->W);
    if (s->F >= span)
        ck_assert_int_le(*t0 + span, s->F);
    else
        ck_assert_int_eq(*t0, 0);
    for (int t = 0; t < T; t++) {
        int ft = s->F >= span ? *t0 + t * stride : (t * stride) % s->F;
        for (int y = 0; y < b->h; y++)
            for (int x = 0; x < b->w; x++) {
                int sx = *x0 + (*flip ? b->w - 1 - x : x);
                for (int c = 0; c < 3; c++)
                    if (val(b, i, c, t, y, x) != px(v, ft, *y0 + y, sx, c))
                        ck_abort_msg("clip %d (video %d) at c%d t%d y%d x%d: %d, "
                                     "expected %d", i, v, c, t, y, x,
                                     val(b, i, c, t, y, x), px(v, ft, *y0 + y, sx, c));
            }
    }
}

/* ==== Sampling rules ==================================================== */

START_TEST(clip_indices_rules)
{
    int idx[16];
    /* 100 frames, T 16, stride 1: span 16, 85 start positions. */
    vt_clip_indices(100, 16, 1, 0.0, idx);
    ck_assert_int_eq(idx[0], 0);
    ck_assert_int_eq(idx[15], 15);
    vt_clip_indices(100, 16, 1, 0.99999, idx);
    ck_assert_int_eq(idx[0], 84);
    ck_assert_int_eq(idx[15], 99);
    vt_clip_indices(100, 16, 1, 0.5, idx);
    ck_assert_int_eq(idx[0], 42);
    /* Every start is reachable and none is out of range. */
    int hit[100] = {0};
    for (int k = 0; k < 10000; k++) {
        vt_clip_indices(100, 16, 2, (k + 0.5) / 10000.0, idx);
        ck_assert(idx[0] >= 0 && idx[15] == idx[0] + 30 && idx[15] <= 99);
        hit[idx[0]]++;
    }
    for (int s = 0; s <= 69; s++)
        ck_assert_int_gt(hit[s], 0);
    ck_assert_int_eq(hit[70], 0);
    /* Test clips of K = 3 at pos (k + 0.5) / 3: starts spread evenly. */
    for (int k = 0; k < 3; k++) {
        vt_clip_indices(100, 16, 1, (k + 0.5) / 3, idx);
        ck_assert_int_eq(idx[0], (int)floor((k + 0.5) / 3 * 85));
    }
    /* Fractional step (30 fps sampled at 25): nearest frames, span rounded. */
    vt_clip_indices(100, 16, 1.2, 0.0, idx);
    ck_assert_int_eq(idx[1], 1);
    ck_assert_int_eq(idx[5], 6);
    ck_assert_int_eq(idx[15], 18);
    /* Short video: loops from frame 0. */
    vt_clip_indices(5, 16, 1, 0.7, idx);
    for (int i = 0; i < 16; i++)
        ck_assert_int_eq(idx[i], i % 5);
    vt_clip_indices(20, 16, 2, 0.3, idx); /* span 31 > 20 */
    for (int i = 0; i < 16; i++)
        ck_assert_int_eq(idx[i], (2 * i) % 20);
    vt_clip_indices(1, 16, 1, 0.3, idx);
    for (int i = 0; i < 16; i++)
        ck_assert_int_eq(idx[i], 0);
}
END_TEST

START_TEST(crop_offsets)
{
    int y0, x0;
    /* C3D: 112 from 128x171. */
    vt_crop_offset(128, 171, 112, 112, 0, 0, 0, &y0, &x0);
    ck_assert_int_eq(y0, 8);
    ck_assert_int_eq(x0, 29);
    int hy[17] = {0}, hx[60] = {0};
    for (int k = 0; k < 4000; k++) {
        vt_crop_offset(128, 171, 112, 112, -1, (k % 97 + 0.5f) / 97, (k % 89 + 0.5f) / 89,
                       &y0, &x0);
        ck_assert(y0 >= 0 && y0 <= 16 && x0 >= 0 && x0 <= 59);
        hy[y0]++;
        hx[x0]++;
    }
    for (int i = 0; i <= 16; i++)
        ck_assert_int_gt(hy[i], 0);
    for (int i = 0; i <= 59; i++)
        ck_assert_int_gt(hx[i], 0);
    /* 3 crops along the longer side. */
    const int want_x[3] = {0, 29, 59};
    for (int k = 1; k <= 3; k++) {
        vt_crop_offset(128, 171, 112, 112, k, 0, 0, &y0, &x0);
        ck_assert_int_eq(y0, 8);
        ck_assert_int_eq(x0, want_x[k - 1]);
        vt_crop_offset(171, 128, 112, 112, k, 0, 0, &y0, &x0);
        ck_assert_int_eq(x0, 8);
        ck_assert_int_eq(y0, want_x[k - 1]);
    }
    /* Smaller than the crop: centred, negative. */
    vt_crop_offset(100, 171, 112, 112, -1, 0.9f, 0.0f, &y0, &x0);
    ck_assert_int_eq(y0, -6);
    ck_assert_int_eq(x0, 0);
}
END_TEST

START_TEST(float_conversion)
{
    const int T = 3, H = 5, W = 7;
    uint8_t src[3 * 5 * 7 * 3];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(vt_hash64(3, 4, i) & 255);
    float out[3 * 3 * 5 * 7];
    const float mean[3] = {0.43216f, 0.394666f, 0.37645f};
    const float std[3] = {0.22803f, 0.22145f, 0.216989f};
    vt_norm n;
    vt_norm_init(&n, VT_NORM_MEAN_STD, mean, std, NULL, 0, 0, 0);
    for (int flip = 0; flip < 2; flip++) {
        vt_clip_to_float(src, T, H, W, flip, &n, 0, 0, out);
        double worst = 0;
        for (int c = 0; c < 3; c++)
            for (int t = 0; t < T; t++)
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++) {
                        int sx = flip ? W - 1 - x : x;
                        double v = src[((t * H + y) * W + sx) * 3 + c];
                        double want = (v / 255.0 - mean[c]) / std[c];
                        double got = out[((c * T + t) * H + y) * W + x];
                        worst = fmax(worst, fabs(got - want) / fmax(1.0, fabs(want)));
                    }
        ck_assert_msg(worst < 1e-6, "mean/std conversion off by %g", worst);
    }
    /* C3D: v - 255 * mean without a cube, v - cube[c][t][y0+y][x0+sx]. */
    vt_norm_init(&n, VT_NORM_C3D, mean, std, NULL, 0, 0, 0);
    vt_clip_to_float(src, T, H, W, 0, &n, 0, 0, out);
    ck_assert_float_eq_tol(out[0], src[0] - 255.0f * mean[0], 1e-4);
    const int CH = 9, CW = 11;
    float cube[3 * 3 * 9 * 11];
    for (size_t i = 0; i < sizeof cube / sizeof *cube; i++)
        cube[i] = (float)(i % 101);
    vt_norm_init(&n, VT_NORM_C3D, mean, std, cube, T, CH, CW);
    for (int flip = 0; flip < 2; flip++) {
        vt_clip_to_float(src, T, H, W, flip, &n, 2, 3, out);
        for (int c = 0; c < 3; c++)
            for (int t = 0; t < T; t++)
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++) {
                        int sx = flip ? W - 1 - x : x;
                        float want = (float)src[((t * H + y) * W + sx) * 3 + c] -
                                     cube[((c * T + t) * CH + 2 + y) * CW + 3 + sx];
                        ck_assert_float_eq(out[((c * T + t) * H + y) * W + x], want);
                    }
    }
}
END_TEST

/* ==== Store ============================================================= */

static void check_store_contents(const char *path)
{
    vt_clipstore *s;
    char err[512] = "";
    ck_assert_msg(vt_clipstore_open(path, &s, err, sizeof err) == 0, "%s", err);
    const vt_store_meta *m = vt_clipstore_meta(s);
    ck_assert_int_eq(m->n_videos, 12);
    ck_assert_int_eq(m->n_classes, 3);
    ck_assert_int_eq(m->n_splits, 2);
    ck_assert_str_eq(m->classes[2], "C");
    for (int i = 0; i < 12; i++) {
        ck_assert_str_eq(m->paths[i], SPECS[i].path);
        ck_assert_int_eq(m->labels[i], SPECS[i].label);
        ck_assert_int_eq(m->frames[i], SPECS[i].F);
        ck_assert_int_eq(m->heights[i], SPECS[i].H);
        ck_assert_int_eq(m->widths[i], SPECS[i].W);
        int g1 = strstr(SPECS[i].path, "_g01_") != NULL;
        ck_assert_int_eq(m->split[i * 2], g1 ? 2 : 1);
        ck_assert_int_eq(m->split[i * 2 + 1], g1 ? 1 : 2);
        if (SPECS[i].F)
            ck_assert_ptr_null(m->errors[i]);
    }
    ck_assert_ptr_nonnull(strstr(m->errors[11], "invalid data"));
    /* Reads: strided, looped, out of order, full width and cropped. */
    const int t_lists[4][6] = {{0, 1, 2, 3, 4, 5}, {2, 4, 6, 8, 10, 12},
                               {3, 4, 0, 1, 2, 3}, {14, 0, 7, 7, 1, 13}};
    uint8_t buf[6 * 48 * 60 * 3];
    for (int v = 0; v < 11; v++) {
        if (SPECS[v].F < 15)
            continue;
        for (int k = 0; k < 4; k++) {
            int H = SPECS[v].H, W = SPECS[v].W;
            const int win[3][4] = {{0, 0, H, W}, {3, 5, H - 7, W - 9}, {1, W - 4, 2, 4}};
            for (int q = 0; q < 3; q++) {
                int y0 = win[q][0], x0 = win[q][1], h = win[q][2], w = win[q][3];
                ck_assert_msg(vt_clipstore_read(s, v, t_lists[k], 6, y0, x0, h, w, buf,
                                                err, sizeof err) == 0, "%s", err);
                /* (Check logs every assertion: compare first, assert once.) */
                int bad = 0;
                for (int i = 0; i < 6; i++)
                    for (int y = 0; y < h; y++)
                        for (int x = 0; x < w; x++)
                            for (int c = 0; c < 3; c++)
                                bad += buf[(((size_t)i * h + y) * w + x) * 3 + c] !=
                                       px(v, t_lists[k][i], y0 + y, x0 + x, c);
                ck_assert_msg(bad == 0, "video %d, frames %d, window %d: %d wrong bytes",
                              v, k, q, bad);
            }
        }
    }
    /* Out-of-range requests are errors, not reads. */
    int bad_t[1] = {20};
    ck_assert_int_eq(vt_clipstore_read(s, 0, bad_t, 1, 0, 0, 4, 4, buf, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "outside"));
    int t0[1] = {0};
    ck_assert_int_eq(vt_clipstore_read(s, 0, t0, 1, 30, 0, 10, 4, buf, err, sizeof err), -1);
    ck_assert_int_eq(vt_clipstore_read(s, 11, t0, 1, 0, 0, 1, 1, buf, err, sizeof err), -1);
    vt_clipstore_close(s);
}

START_TEST(store_roundtrip)
{
    mk_tmp();
    for (int compress = 0; compress <= 3; compress += 3) {
        char *p = tmp_path(compress ? "z.h5" : "s.h5");
        write_store(p, compress);
        ck_assert(exists(p));
        char partial[600];
        snprintf(partial, sizeof partial, "%s.partial", p);
        ck_assert(!exists(partial));
        check_store_contents(p);
        if (have_h5py()) {
            char cmd[2048];
            snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/check_store.py %s --formula",
                     source_root(), p);
            ck_assert_int_eq(run(cmd), 0);
        } else {
            printf("test_loader: SKIP h5py check: /usr/bin/python3 cannot import h5py\n");
        }
    }
    rm_tmp();
}
END_TEST

START_TEST(store_resume)
{
    mk_tmp();
    char *p = tmp_path("r.h5");
    vt_store_opts o = {.height = 36, .width = 48, .fps = 12.5};
    vt_storewriter *w;
    int resumed = -1;
    char err[512] = "";
    ck_assert_int_eq(vt_storewriter_open(p, &o, &w, &resumed, err, sizeof err), 0);
    ck_assert_int_eq(resumed, 0);
    vt_frames f;
    make_frames(&f, 0, 20, 36, 48);
    ck_assert_int_eq(vt_storewriter_put(w, SPECS[0].path, 0, &f, err, sizeof err), 0);
    ck_assert_int_eq(vt_storewriter_put(w, SPECS[3].path, 0, &f, err, sizeof err), 0);
    vt_storewriter_abort(w); /* interrupted */
    ck_assert(!exists(p));
    ck_assert(exists(tmp_path("r.h5.partial")));
    /* An unfinished store does not open for reading, with a hint. */
    vt_clipstore *s;
    ck_assert_int_eq(vt_clipstore_open(p, &s, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "run vprep again"), "%s", err);
    /* Other options: refused, nothing overwritten. */
    vt_store_opts o2 = o;
    o2.height = 128;
    o2.width = 171;
    ck_assert_int_eq(vt_storewriter_open(p, &o2, &w, &resumed, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "--size 36x48") && strstr(err, "--size 128x171"), "%s", err);
    /* Resume: the two stored videos are known. */
    ck_assert_int_eq(vt_storewriter_open(p, &o, &w, &resumed, err, sizeof err), 0);
    ck_assert_int_eq(resumed, 1);
    ck_assert(vt_storewriter_has(w, SPECS[0].path));
    ck_assert(vt_storewriter_has(w, SPECS[3].path));
    ck_assert(!vt_storewriter_has(w, SPECS[1].path));
    ck_assert_int_eq(vt_storewriter_put(w, SPECS[1].path, 0, &f, err, sizeof err), 0);
    vt_catalog c;
    vt_list_entry e[12];
    signed char member[24];
    fill_catalog(&c, e, member);
    c.n = 4; /* the four A videos */
    ck_assert_msg(vt_storewriter_finish(w, &c, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert(exists(p));
    ck_assert(!exists(tmp_path("r.h5.partial")));
    ck_assert_int_eq(vt_clipstore_open(p, &s, err, sizeof err), 0);
    const vt_store_meta *m = vt_clipstore_meta(s);
    ck_assert_int_eq(m->n_videos, 4);
    ck_assert_int_eq(m->frames[0], 20);
    ck_assert_int_eq(m->frames[2], 0);
    ck_assert_str_eq(m->errors[2], "not stored");
    ck_assert(m->opts.fps == 12.5 && m->opts.height == 36);
    vt_clipstore_close(s);
    /* A complete store is extended in place (via .partial). */
    ck_assert_int_eq(vt_storewriter_open(p, &o, &w, &resumed, err, sizeof err), 0);
    ck_assert_int_eq(resumed, 1);
    ck_assert(!exists(p));
    ck_assert(vt_storewriter_has(w, SPECS[1].path));
    ck_assert_int_eq(vt_storewriter_put(w, SPECS[2].path, 0, &f, err, sizeof err), 0);
    ck_assert_int_eq(vt_storewriter_finish(w, &c, NULL, err, sizeof err), 0);
    ck_assert_int_eq(vt_clipstore_open(p, &s, err, sizeof err), 0);
    ck_assert_int_eq(vt_clipstore_meta(s)->frames[2], 20);
    vt_clipstore_close(s);
    free(f.data);
    rm_tmp();
}
END_TEST

/* ==== Loader on the synthetic store ==================================== */

START_TEST(loader_training_clips)
{
    mk_tmp();
    char *p = tmp_path("s.h5");
    write_store(p, 0);
    warnings W = {0};
    vt_data_config c;
    store_config(&c, p, &W);
    vt_loader *l;
    char err[512] = "";
    ck_assert_msg(vt_loader_open(&c, VT_TRAIN, &l, err, sizeof err) == 0, "%s", err);
    /* Split 1 trains on group 2: 6 videos, one of them not stored. */
    ck_assert_int_eq(vt_loader_num_videos(l), 5);
    ck_assert_int_eq(W.n, 1);
    ck_assert_msg(strstr(W.msg[0], "C/v_C_g02_c02.avi") && strstr(W.msg[0], "invalid data"),
                  "%s", W.msg[0]);
    ck_assert_int_eq(vt_loader_batches_per_epoch(l), 2);
    ck_assert_str_eq(vt_loader_class_name(l, 1), "B");
    int flips = 0, clips = 0, starts = 0;
    for (int e = 0; e < 30; e++) {
        int seen[12] = {0};
        const vt_batch *b;
        int r, nb = 0;
        while ((r = vt_loader_next(l, &b, err, sizeof err)) == 1) {
            ck_assert_int_eq(b->epoch, e);
            ck_assert_int_eq(b->index, nb);
            ck_assert_int_eq(b->n, nb == 0 ? 4 : 1);
            for (int i = 0; i < b->n; i++) {
                int t0, y0, x0, flip;
                /* vt_loader's video index is into its own list; map it. */
                int v = b->video[i];
                const char *path = vt_loader_video_path(l, v);
                int sv = -1;
                for (int k = 0; k < 12; k++)
                    if (!strcmp(SPECS[k].path, path))
                        sv = k;
                ck_assert_int_ge(sv, 0);
                ck_assert_int_eq(vt_loader_video_label(l, v), SPECS[sv].label);
                ((vt_batch *)b)->video[i] = sv;
                trace_clip(b, i, 2, &t0, &y0, &x0, &flip);
                ((vt_batch *)b)->video[i] = v;
                seen[sv]++;
                flips += flip;
                starts += t0 > 0;
                clips++;
            }
            nb++;
        }
        ck_assert_int_eq(r, 0);
        ck_assert_int_eq(nb, 2);
        /* Every stored training video once per epoch. */
        for (int k = 0; k < 12; k++)
            ck_assert_int_eq(seen[k], !strstr(SPECS[k].path, "_g01_") && SPECS[k].F ? 1 : 0);
    }
    ck_assert_int_eq(clips, 150);
    ck_assert_msg(flips > 45 && flips < 105, "%d flips in 150 clips", flips);
    ck_assert_int_gt(starts, 75);
    vt_loader_stats st;
    vt_loader_stats_get(l, &st);
    ck_assert_int_eq(st.batches, 60);
    ck_assert_int_eq(st.clips, 150);
    ck_assert_int_eq(st.missing, 1);
    ck_assert_int_eq(st.skipped, 0);
    ck_assert(st.wait_s >= 0);
    vt_loader_close(l);
    rm_tmp();
}
END_TEST

START_TEST(loader_test_views)
{
    mk_tmp();
    char *p = tmp_path("s.h5");
    write_store(p, 0);
    warnings W = {0};
    vt_data_config c;
    store_config(&c, p, &W);
    c.split = 2; /* tests group 2: 6 listed, 5 stored */
    c.batch = 7;
    vt_loader *l;
    char err[512] = "";
    ck_assert_msg(vt_loader_open(&c, VT_TEST, &l, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(vt_loader_num_videos(l), 5);
    ck_assert_int_eq(vt_loader_batches_per_epoch(l), 7); /* 45 views */
    for (int e = 0; e < 2; e++) {
        int q = 0;
        const vt_batch *b;
        uint64_t h[7];
        int r, nb = 0;
        while ((r = vt_loader_next(l, &b, err, sizeof err)) == 1) {
            for (int i = 0; i < b->n; i++, q++) {
                ck_assert_int_eq(b->video[i], q / 9);
                ck_assert_int_eq(b->clip[i], q % 9);
                const char *path = vt_loader_video_path(l, b->video[i]);
                int sv = -1;
                for (int k = 0; k < 12; k++)
                    if (!strcmp(SPECS[k].path, path))
                        sv = k;
                int v = b->video[i];
                ((vt_batch *)b)->video[i] = sv;
                int t0, y0, x0, flip;
                trace_clip(b, i, 2, &t0, &y0, &x0, &flip);
                ((vt_batch *)b)->video[i] = v;
                const spec *s = &SPECS[sv];
                int k = (q % 9) / 3, crop = q % 3;
                ck_assert_int_eq(flip, 0);
                int span = 15;
                ck_assert_int_eq(t0, s->F >= span ? (int)floor((k + 0.5) / 3 * (s->F - span + 1)) : 0);
                /* Longer side: start, centre, end; the other centred. */
                int wide = s->W >= s->H;
                int along = wide ? x0 : y0, across = wide ? y0 : x0;
                int room = wide ? s->W - 32 : s->H - 24;
                int other = wide ? (s->H - 24) / 2 : (s->W - 32) / 2;
                ck_assert_int_eq(across, other);
                ck_assert_int_eq(along, crop == 0 ? 0 : crop == 1 ? room / 2 : room);
            }
            h[nb++] = batch_hash(b);
        }
        ck_assert_int_eq(r, 0);
        ck_assert_int_eq(q, 45);
        static uint64_t first[7];
        if (e == 0)
            memcpy(first, h, sizeof h);
        else
            ck_assert(memcmp(first, h, sizeof h) == 0); /* test views never vary */
    }
    vt_loader_close(l);
    /* One centre crop: the window is centred. */
    c.crops = 1;
    c.clips_per_video = 1;
    ck_assert_int_eq(vt_loader_open(&c, VT_TEST, &l, err, sizeof err), 0);
    const vt_batch *b;
    ck_assert_int_eq(vt_loader_next(l, &b, err, sizeof err), 1);
    for (int i = 0; i < b->n; i++) {
        int sv = -1;
        for (int k = 0; k < 12; k++)
            if (!strcmp(SPECS[k].path, vt_loader_video_path(l, b->video[i])))
                sv = k;
        ck_assert_int_eq(val(b, i, 1, 0, 0, 0), (SPECS[sv].H - 24) / 2);
        ck_assert_int_eq(((val(b, i, 2, 0, 0, 0) - 31 * sv) % 256 + 256) % 256,
                         (SPECS[sv].W - 32) / 2);
    }
    vt_loader_close(l);
    rm_tmp();
}
END_TEST

/* Hashes of every batch of three epochs (at most MAX_HASHES). */
#define MAX_HASHES 256
static void epoch_hashes(const vt_data_config *c, int mode, uint64_t *h, int *n)
{
    vt_loader *l;
    char err[512] = "";
    ck_assert_msg(vt_loader_open(c, mode, &l, err, sizeof err) == 0, "%s", err);
    *n = 0;
    for (int e = 0; e < 3; e++) {
        const vt_batch *b;
        int r;
        while ((r = vt_loader_next(l, &b, err, sizeof err)) == 1) {
            ck_assert_int_lt(*n, MAX_HASHES);
            h[(*n)++] = batch_hash(b);
        }
        ck_assert_msg(r == 0, "%s", err);
    }
    vt_loader_close(l);
}

START_TEST(loader_deterministic_across_threads)
{
    mk_tmp();
    char *p = tmp_path("s.h5");
    write_store(p, 0);
    warnings W = {0};
    vt_data_config c;
    store_config(&c, p, &W);
    c.batch = 2;
    uint64_t ref[MAX_HASHES], got[MAX_HASHES];
    int nref, n;
    const int threads[4] = {0, 1, 4, 4}, prefetch[4] = {2, 1, 3, 0};
    for (int mode = VT_TRAIN; mode <= VT_TEST; mode++) {
        c.threads = 1;
        epoch_hashes(&c, mode, ref, &nref);
        ck_assert_int_eq(nref, mode == VT_TRAIN ? 9 : 81); /* 5 x 1 / 2, 6 x 9 / 2 */
        for (int k = 0; k < 4; k++) {
            c.threads = threads[k];
            c.prefetch = prefetch[k];
            epoch_hashes(&c, mode, got, &n);
            ck_assert_int_eq(n, nref);
            for (int i = 0; i < n; i++)
                ck_assert_msg(got[i] == ref[i], "mode %d, %d threads: batch %d differs "
                              "(%d warnings: %s)", mode, threads[k], i, W.n, W.n ? W.msg[W.n - 1] : "");
        }
    }
    /* Epochs differ from each other, and another seed gives other batches. */
    c.threads = 2;
    epoch_hashes(&c, VT_TRAIN, ref, &nref);
    ck_assert(ref[0] != ref[3] && ref[3] != ref[6]);
    c.seed = 43;
    epoch_hashes(&c, VT_TRAIN, got, &n);
    ck_assert(got[0] != ref[0]);
    rm_tmp();
}
END_TEST

START_TEST(loader_resume_position)
{
    mk_tmp();
    char *p = tmp_path("s.h5");
    write_store(p, 0);
    warnings W = {0};
    vt_data_config c;
    store_config(&c, p, &W);
    c.batch = 2; /* 5 videos: 3 batches per epoch */
    vt_loader *a, *b;
    char err[512] = "";
    ck_assert_int_eq(vt_loader_open(&c, VT_TRAIN, &a, err, sizeof err), 0);
    const vt_batch *x;
    int e, bi;
    vt_loader_position(a, &e, &bi);
    ck_assert(e == 0 && bi == 0);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(vt_loader_next(a, &x, err, sizeof err), 1);
    vt_loader_position(a, &e, &bi);
    ck_assert(e == 1 && bi == 0); /* after the last batch: the next epoch */
    ck_assert_int_eq(vt_loader_next(a, &x, err, sizeof err), 0);
    vt_loader_position(a, &e, &bi);
    ck_assert(e == 1 && bi == 0);
    ck_assert_int_eq(vt_loader_next(a, &x, err, sizeof err), 1);
    ck_assert_int_eq(vt_loader_next(a, &x, err, sizeof err), 1);
    vt_loader_position(a, &e, &bi);
    ck_assert(e == 1 && bi == 2);
    /* A fresh loader seeks there and continues identically. */
    c.threads = 3;
    ck_assert_int_eq(vt_loader_open(&c, VT_TRAIN, &b, err, sizeof err), 0);
    ck_assert_int_eq(vt_loader_seek(b, e, bi, err, sizeof err), 0);
    for (int k = 0; k < 7; k++) {
        const vt_batch *y;
        int ra = vt_loader_next(a, &x, err, sizeof err);
        int rb = vt_loader_next(b, &y, err, sizeof err);
        ck_assert_int_eq(ra, rb);
        if (ra == 1) {
            ck_assert_int_eq(x->epoch, y->epoch);
            ck_assert_int_eq(x->index, y->index);
            ck_assert(batch_hash(x) == batch_hash(y));
        }
    }
    ck_assert_int_eq(vt_loader_seek(b, 0, 3, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "0..2"), "%s", err);
    vt_loader_close(a);
    vt_loader_close(b);
    rm_tmp();
}
END_TEST

START_TEST(loader_config_errors)
{
    mk_tmp();
    char *p = tmp_path("s.h5");
    write_store(p, 0);
    warnings W = {0};
    vt_data_config c;
    vt_loader *l;
    char err[512];
#define EXPECT_FAIL(stmt, want)                                                \
    do {                                                                       \
        store_config(&c, p, &W);                                               \
        stmt;                                                                  \
        err[0] = '\0';                                                         \
        ck_assert_int_eq(vt_loader_open(&c, VT_TRAIN, &l, err, sizeof err), -1); \
        ck_assert_msg(strstr(err, want), "\"%s\" lacks \"%s\"", err, want);    \
    } while (0)
    EXPECT_FAIL(c.crops = 2, "crops = 2");
    EXPECT_FAIL(c.batch = 0, "batch = 0");
    EXPECT_FAIL(c.split = 3, "split 3 requested but the store has 2");
    EXPECT_FAIL(c.resize_h = 128; c.resize_w = 171, "made with vprep --size source but "
                "[data] asks for resize 128x171");
    EXPECT_FAIL(c.std[1] = 0, "std[1]");
    EXPECT_FAIL(c.store = tmp_path("nope.h5"), "no such file");
    EXPECT_FAIL(c.drop_last = 1; c.batch = 6, "no full batch of 6");
    EXPECT_FAIL(c.store = NULL, "needs either a store");
    EXPECT_FAIL(c.norm = VT_NORM_C3D; c.mean_file = tmp_path("s.h5"),
                "mean_file needs equally sized frames");
#undef EXPECT_FAIL
    rm_tmp();
}
END_TEST

/* C3D normalisation with a mean cube of the store's frame size. */
START_TEST(loader_c3d_mean_cube)
{
    mk_tmp();
    char *p = tmp_path("s.h5");
    vt_store_opts o = {0};
    vt_storewriter *w;
    int resumed;
    char err[512] = "";
    ck_assert_int_eq(vt_storewriter_open(p, &o, &w, &resumed, err, sizeof err), 0);
    vt_catalog cat;
    vt_list_entry e[12];
    signed char member[24];
    fill_catalog(&cat, e, member);
    for (int i = 0; i < 12; i++) {
        vt_frames f;
        make_frames(&f, i, 20, 36, 48);
        ck_assert_int_eq(vt_storewriter_put(w, SPECS[i].path, SPECS[i].label, &f, err,
                                            sizeof err), 0);
        free(f.data);
    }
    ck_assert_int_eq(vt_storewriter_finish(w, &cat, NULL, err, sizeof err), 0);
    float *cube = malloc(3 * 8 * 36 * 48 * sizeof(float));
    for (int i = 0; i < 3 * 8 * 36 * 48; i++)
        cube[i] = (float)(i % 1000) * 0.125f;
    hid_t f = H5Fcreate(tmp_path("mean.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_eq(vt_h5_write_f32(f, "mean", cube, 4, (int[]){3, 8, 36, 48}, err,
                                     sizeof err), 0);
    H5Fclose(f);
    warnings W = {0};
    vt_data_config c;
    store_config(&c, p, &W);
    c.norm = VT_NORM_C3D;
    c.mean_file = tmp_path("mean.h5");
    c.crops = 1;
    c.clips_per_video = 1;
    c.clip_len = 8;
    c.frame_stride = 1;
    vt_loader *l;
    ck_assert_msg(vt_loader_open(&c, VT_TEST, &l, err, sizeof err) == 0, "%s", err);
    const vt_batch *b;
    ck_assert_int_eq(vt_loader_next(l, &b, err, sizeof err), 1);
    /* Centre crop (6, 8) of 36x48, clip start floor(0.5 * 13) = 6. */
    int v = 0, sv = 0; /* loader video 0 = SPECS[0] (split 1 test list) */
    ck_assert_str_eq(vt_loader_video_path(l, v), SPECS[sv].path);
    for (int ch = 0; ch < 3; ch++)
        for (int t = 0; t < 8; t++)
            for (int y = 0; y < 24; y += 5)
                for (int x = 0; x < 32; x += 3) {
                    float want = (float)px(sv, 6 + t, 6 + y, 8 + x, ch) -
                                 cube[((ch * 8 + t) * 36 + 6 + y) * 48 + 8 + x];
                    size_t k = (((size_t)ch * 8 + t) * 24 + y) * 32 + x;
                    ck_assert_float_eq(b->x[k], want);
                }
    vt_loader_close(l);
    /* A cube of another size is refused with its expected shape. */
    c.crop_h = 20;
    c.clip_len = 4;
    ck_assert_int_eq(vt_loader_open(&c, VT_TEST, &l, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "(3, 4, 36, 48)"), "%s", err);
    free(cube);
    rm_tmp();
}
END_TEST

/* ==== End to end on vsynth videos ======================================= */

/* A small vsynth dataset in tmpdir/ds (3 classes x 4 videos of 20 frames,
 * 96x72; decoded to 128x171 like UCF101). */
static void make_vsynth(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s/train/vsynth --out %s/ds --classes MoveLeft,MoveRight,Still "
             "--videos-per-class 4 --frames 20 --size 96x72 > %s/vsynth.out 2>&1",
             build_root(), tmpdir, tmpdir);
    ck_assert_msg(run(cmd) == 0, "vsynth failed: %s", slurp(tmp_path("vsynth.out")));
}

static int vprep(const char *args, const char *tag)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s/train/vprep --root %s/ds --splits %s/ds/ucfTrainTestlist "
             "%s > %s/%s.out 2> %s/%s.err", build_root(), tmpdir, tmpdir, args, tmpdir, tag,
             tmpdir, tag);
    return run(cmd);
}

/* Runs the h5py example of docs/data.md on a store. */
static void run_doc_example(const char *store)
{
    char doc[1024];
    snprintf(doc, sizeof doc, "%s/docs/data.md", source_root());
    char *text = slurp(doc);
    const char *mark = "<!-- h5py example: run by tests/test_loader.c -->";
    char *p = strstr(text, mark);
    ck_assert_msg(p != NULL, "docs/data.md lacks the h5py example");
    p = strstr(p, "```python\n");
    ck_assert_ptr_nonnull(p);
    p += strlen("```python\n");
    char *end = strstr(p, "\n```");
    ck_assert_ptr_nonnull(end);
    *end = '\0';
    FILE *f = fopen(tmp_path("example.py"), "w");
    ck_assert_ptr_nonnull(f);
    /* The example opens "ucf101.h5"; point it at this store. */
    for (char *q = p; *q;) {
        char *hit = strstr(q, "\"ucf101.h5\"");
        if (!hit) {
            fputs(q, f);
            break;
        }
        fwrite(q, 1, (size_t)(hit - q), f);
        fprintf(f, "\"%s\"", store);
        q = hit + strlen("\"ucf101.h5\"");
    }
    fputc('\n', f);
    fclose(f);
    free(text);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s > %s 2>&1", tmp_path("example.py"),
             tmp_path("example.out"));
    int rc = run(cmd);
    char *out = slurp(tmp_path("example.out"));
    ck_assert_msg(rc == 0 && strstr(out, "(16, 112, 112, 3)"), "docs example: %s", out);
    printf("docs/data.md h5py example: %s", out);
    free(out);
}

START_TEST(vprep_on_vsynth)
{
    mk_tmp();
    make_vsynth();
    char lists[512];
    snprintf(lists, sizeof lists, "%s", tmp_path("ds/ucfTrainTestlist"));
    /* --check: counts per split, from lists parsed independently here. */
    ck_assert_int_eq(vprep("--check", "check"), 0);
    char *out = slurp(tmp_path("check.out"));
    printf("%s", out);
    for (int s = 1; s <= 3; s++) {
        vt_split sp;
        char err[512], want[256];
        ck_assert_int_eq(vt_split_load(lists, s, &sp, err, sizeof err), 0);
        snprintf(want, sizeof want, "split %d: train %d videos found of %d listed, 3 classes; "
                 "test %d found of %d listed, 3 classes; groups disjoint", s, sp.n_train,
                 sp.n_train, sp.n_test, sp.n_test);
        ck_assert_msg(strstr(out, want), "missing \"%s\" in\n%s", want, out);
        vt_split_free(&sp);
    }
    ck_assert_ptr_nonnull(strstr(out, "12 ok, 0 missing, 0 unreadable"));
    ck_assert(!exists(tmp_path("ucf.h5")));
    free(out);
    /* The store. */
    char args[1024];
    snprintf(args, sizeof args, "--out %s/ucf.h5 --threads 2", tmpdir);
    ck_assert_int_eq(vprep(args, "prep"), 0);
    out = slurp(tmp_path("prep.out"));
    printf("%s", out);
    ck_assert_ptr_nonnull(strstr(out, "12 videos stored (12 decoded now"));
    free(out);
    vt_clipstore *s;
    char err[512] = "";
    ck_assert_msg(vt_clipstore_open(tmp_path("ucf.h5"), &s, err, sizeof err) == 0, "%s", err);
    const vt_store_meta *m = vt_clipstore_meta(s);
    ck_assert_int_eq(m->n_videos, 12);
    ck_assert_int_eq(m->n_splits, 3);
    ck_assert_int_eq(m->opts.height, 128);
    ck_assert_int_eq(m->opts.width, 171);
    /* Stored frames are the decoder's frames, bit for bit. */
    for (int v = 0; v < 12; v += 5) {
        ck_assert_int_eq(m->heights[v], 128);
        ck_assert_int_eq(m->widths[v], 171);
        char path[1024];
        snprintf(path, sizeof path, "%s/ds/%s", tmpdir, m->paths[v]);
        vt_decode_opts o = {.width = 171, .height = 128};
        vt_frames f;
        ck_assert_msg(vt_video_decode(path, &o, &f, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(f.n, m->frames[v]);
        ck_assert(fabs(f.fps - m->fps[v]) < 1e-9);
        int *t = malloc((size_t)f.n * sizeof *t);
        for (int i = 0; i < f.n; i++)
            t[i] = i;
        uint8_t *buf = malloc((size_t)f.n * 128 * 171 * 3);
        ck_assert_int_eq(vt_clipstore_read(s, v, t, f.n, 0, 0, 128, 171, buf, err, sizeof err), 0);
        ck_assert(memcmp(buf, f.data, (size_t)f.n * 128 * 171 * 3) == 0);
        free(buf);
        free(t);
        vt_frames_free(&f);
    }
    vt_clipstore_close(s);
    if (have_h5py()) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/check_store.py %s --splits %s",
                 source_root(), tmp_path("ucf.h5"), lists);
        ck_assert_int_eq(run(cmd), 0);
        run_doc_example(tmp_path("ucf.h5"));
    } else {
        printf("test_loader: SKIP h5py check: /usr/bin/python3 cannot import h5py\n");
    }
    /* Running again does nothing new. */
    ck_assert_int_eq(vprep(args, "again"), 0);
    out = slurp(tmp_path("again.out"));
    ck_assert_msg(strstr(out, "12 of 12 videos already stored") &&
                  strstr(out, "0 decoded now"), "%s", out);
    free(out);

    /* Raw videos and the store give the same batches (same decoder, same
     * size), and raw loading too is independent of the thread count. */
    warnings W = {0};
    vt_data_config c;
    vt_data_config_default(&c);
    c.clip_len = 8;
    c.batch = 4;
    c.seed = 7;
    c.clips_per_video = 2;
    c.crops = 3;
    c.warn = on_warn;
    c.warn_ud = &W;
    for (int mode = VT_TRAIN; mode <= VT_TEST; mode++) {
        uint64_t a[MAX_HASHES], b[MAX_HASHES], d[MAX_HASHES];
        int na, nb, nd;
        c.store = tmp_path("ucf.h5");
        c.threads = 2;
        epoch_hashes(&c, mode, a, &na);
        c.store = NULL;
        c.root = tmp_path("ds");
        c.splits = lists;
        c.threads = 1;
        epoch_hashes(&c, mode, b, &nb);
        c.threads = 4;
        epoch_hashes(&c, mode, d, &nd);
        ck_assert_int_eq(na, nb);
        ck_assert_int_eq(na, nd);
        for (int i = 0; i < na; i++) {
            ck_assert_msg(a[i] == b[i], "mode %d batch %d: raw differs from store", mode, i);
            ck_assert_msg(b[i] == d[i], "mode %d batch %d: raw 1 vs 4 threads", mode, i);
        }
    }
    ck_assert_int_eq(W.n, 0);
    rm_tmp();
}
END_TEST

/* Four kinds of broken file: missing, empty, garbage, truncated header. */
START_TEST(broken_files)
{
    mk_tmp();
    make_vsynth();
    const char *broken[4] = {"MoveLeft/v_MoveLeft_g02_c01.avi", "MoveRight/v_MoveRight_g01_c02.avi",
                             "Still/v_Still_g02_c02.avi", "MoveRight/v_MoveRight_g02_c01.avi"};
    ck_assert_int_eq(remove(tmp_path("ds/MoveLeft/v_MoveLeft_g02_c01.avi")), 0);
    FILE *f = fopen(tmp_path("ds/MoveRight/v_MoveRight_g01_c02.avi"), "wb");
    fclose(f);
    f = fopen(tmp_path("ds/Still/v_Still_g02_c02.avi"), "wb");
    for (int i = 0; i < 20000; i++)
        fputc((int)(vt_hash64(1, 2, (uint64_t)i) & 255), f);
    fclose(f);
    ck_assert_int_eq(truncate(tmp_path("ds/MoveRight/v_MoveRight_g02_c01.avi"), 600), 0);

    /* --check: each listed once, exit status 1. */
    ck_assert_int_eq(vprep("--check", "check"), 1);
    char *out = slurp(tmp_path("check.out"));
    printf("%s", out);
    ck_assert_int_eq(count_substr(out, "missing: "), 1);
    ck_assert_int_eq(count_substr(out, "unreadable: "), 3);
    for (int k = 0; k < 4; k++)
        ck_assert_msg(count_substr(out, broken[k]) == 1, "%s not listed once", broken[k]);
    ck_assert_ptr_nonnull(strstr(out, "8 ok, 1 missing, 3 unreadable"));
    free(out);

    /* vprep: one warning line per broken file, the rest stored. */
    char args[1024];
    snprintf(args, sizeof args, "--out %s/b.h5 --threads 2", tmpdir);
    ck_assert_int_eq(vprep(args, "prep"), 0);
    char *errs = slurp(tmp_path("prep.err"));
    printf("%s", errs);
    ck_assert_int_eq(count_substr(errs, "warning: "), 4);
    ck_assert_int_eq(count_substr(errs, "\n"), 4);
    for (int k = 0; k < 4; k++)
        ck_assert_msg(count_substr(errs, broken[k]) == 1, "%s not warned once", broken[k]);
    free(errs);
    out = slurp(tmp_path("prep.out"));
    ck_assert_ptr_nonnull(strstr(out, "8 videos stored"));
    ck_assert_ptr_nonnull(strstr(out, "4 skipped"));
    free(out);
    vt_clipstore *s;
    char err[512] = "";
    ck_assert_int_eq(vt_clipstore_open(tmp_path("b.h5"), &s, err, sizeof err), 0);
    int unstored = 0;
    for (int i = 0; i < vt_clipstore_meta(s)->n_videos; i++)
        unstored += vt_clipstore_meta(s)->frames[i] == 0 &&
                    vt_clipstore_meta(s)->errors[i] != NULL;
    ck_assert_int_eq(unstored, 4);
    vt_clipstore_close(s);

    /* The raw loader: each broken video reported once (whichever thread
     * meets it first), training batches stay full by deterministic
     * replacement, test views of broken videos are dropped. */
    vt_split sp;
    ck_assert_int_eq(vt_split_load(tmp_path("ds/ucfTrainTestlist"), 1, &sp, err, sizeof err), 0);
    int broken_train = 0, broken_test = 0;
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < sp.n_train; i++)
            broken_train += !strcmp(sp.train[i].path, broken[k]);
        for (int i = 0; i < sp.n_test; i++)
            broken_test += !strcmp(sp.test[i].path, broken[k]);
    }
    ck_assert_int_eq(broken_train + broken_test, 4);
    ck_assert(broken_train > 0 && broken_test > 0);
    warnings W = {0};
    vt_data_config c;
    vt_data_config_default(&c);
    c.root = tmp_path("ds");
    c.splits = tmp_path("ds/ucfTrainTestlist");
    c.clip_len = 8;
    c.batch = 2;
    c.threads = 2;
    c.warn = on_warn;
    c.warn_ud = &W;
    uint64_t h1[MAX_HASHES], h2[MAX_HASHES];
    int n1, n2;
    vt_loader *l;
    ck_assert_int_eq(vt_loader_open(&c, VT_TRAIN, &l, err, sizeof err), 0);
    for (int e = 0; e < 3; e++) {
        const vt_batch *b;
        int r;
        while ((r = vt_loader_next(l, &b, err, sizeof err)) == 1) {
            ck_assert_int_eq(b->n, 2);
            for (int i = 0; i < b->n; i++)
                for (int k = 0; k < 4; k++)
                    ck_assert_str_ne(vt_loader_video_path(l, b->video[i]) + strlen(c.root) + 1,
                                     broken[k]);
        }
        ck_assert_msg(r == 0, "%s", err);
    }
    vt_loader_stats st;
    vt_loader_stats_get(l, &st);
    vt_loader_close(l);
    ck_assert_int_eq(W.n, broken_train);
    ck_assert_int_eq(st.skipped, broken_train);
    for (int i = 0; i < W.n; i++)
        ck_assert_msg(strstr(W.msg[i], "skipped"), "%s", W.msg[i]);
    /* Replacement is deterministic: 1 and 4 threads agree. */
    c.threads = 1;
    epoch_hashes(&c, VT_TRAIN, h1, &n1);
    c.threads = 4;
    epoch_hashes(&c, VT_TRAIN, h2, &n2);
    ck_assert_int_eq(n1, n2);
    for (int i = 0; i < n1; i++)
        ck_assert(h1[i] == h2[i]);
    W.n = 0;
    c.clips_per_video = 2;
    c.crops = 1;
    c.batch = 3;
    ck_assert_int_eq(vt_loader_open(&c, VT_TEST, &l, err, sizeof err), 0);
    const vt_batch *b;
    int total = 0, r;
    while ((r = vt_loader_next(l, &b, err, sizeof err)) == 1)
        total += b->n;
    ck_assert_int_eq(r, 0);
    ck_assert_int_eq(total, 2 * (sp.n_test - broken_test));
    ck_assert_int_eq(W.n, broken_test);
    vt_loader_close(l);
    vt_split_free(&sp);
    rm_tmp();
}
END_TEST

static Suite *loader_suite(void)
{
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("sampling");
    tcase_add_test(tc, clip_indices_rules);
    tcase_add_test(tc, crop_offsets);
    tcase_add_test(tc, float_conversion);
    suite_add_tcase(s, tc);
    tc = tcase_create("store");
    tcase_add_test(tc, store_roundtrip);
    tcase_add_test(tc, store_resume);
    suite_add_tcase(s, tc);
    tc = tcase_create("loader");
    tcase_add_test(tc, loader_training_clips);
    tcase_add_test(tc, loader_test_views);
    tcase_add_test(tc, loader_deterministic_across_threads);
    tcase_add_test(tc, loader_resume_position);
    tcase_add_test(tc, loader_config_errors);
    tcase_add_test(tc, loader_c3d_mean_cube);
    suite_add_tcase(s, tc);
    tc = tcase_create("videos");
    tcase_add_test(tc, vprep_on_vsynth);
    tcase_add_test(tc, broken_files);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(loader_suite)
