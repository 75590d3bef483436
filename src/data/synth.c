/* synth.c - the synthetic motion dataset (see vt_synth.h, docs/data.md).
 *
 * Every video shows one textured object (disk or square, random two-colour
 * wave texture) on a random static background with per-frame pixel noise.
 * The class is only in the motion. To keep single frames uninformative
 * within a pair, every random draw is made in the same order for every
 * class (appearance distributions are identical), and every motion is
 * stationary: positions along the motion wrap around the frame (a torus)
 * from a uniform start, angles start uniform, and the log-size of
 * Grow/Shrink runs as a sawtooth with a uniform phase. The distribution of what one frame shows is then the same
 * at every frame index for both members of a pair.
 *
 * Frames (n, h, w, 3) RGB24. Speeds are defined per second and converted
 * with fps, sizes scale with min(w, h) / 120. */
#include "vt_synth.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vt_autograd.h" /* vt_hash64 */
#include "vt_video.h"

#define TWO_PI 6.283185307179586

/* ==== Classes ============================================================ */

typedef struct {
    const char *name, *help;
    int dx, dy;  /* translation direction (screen: y down) */
    int rot;     /* +1 clockwise on screen */
    int grow;    /* +1 grow, -1 shrink */
    int flicker;
} synth_class;

static const synth_class classes[] = {
    {"MoveLeft", "the object slides left (wrapping around the frame)", -1, 0, 0, 0, 0},
    {"MoveRight", "the object slides right (wrapping around the frame)", 1, 0, 0, 0, 0},
    {"MoveUp", "the object slides up (wrapping around the frame)", 0, -1, 0, 0, 0},
    {"MoveDown", "the object slides down (wrapping around the frame)", 0, 1, 0, 0, 0},
    {"RotateCW", "the object turns clockwise in place", 0, 0, 1, 0, 0},
    {"RotateCCW", "the object turns counter-clockwise in place", 0, 0, -1, 0, 0},
    {"Grow", "the object grows, and restarts small after reaching the largest size",
     0, 0, 0, 1, 0},
    {"Shrink", "the object shrinks, and restarts large after reaching the smallest size",
     0, 0, 0, -1, 0},
    {"Still", "nothing moves (only the sensor noise changes)", 0, 0, 0, 0, 0},
    {"Flicker", "the object's brightness pulses at 2-4 Hz", 0, 0, 0, 0, 1},
};
#define N_CLASSES ((int)(sizeof classes / sizeof classes[0]))

int vt_synth_n_classes(void) { return N_CLASSES; }
const char *vt_synth_class_name(int k)
{
    return k >= 0 && k < N_CLASSES ? classes[k].name : NULL;
}
const char *vt_synth_class_help(int k)
{
    return k >= 0 && k < N_CLASSES ? classes[k].help : NULL;
}
int vt_synth_class_find(const char *name)
{
    for (int k = 0; k < N_CLASSES; k++)
        if (!strcmp(classes[k].name, name))
            return k;
    return -1;
}

void vt_synth_defaults(vt_synth_opts *o)
{
    memset(o, 0, sizeof *o);
    o->videos_per_class = 20;
    o->width = 160;
    o->height = 120;
    o->frames = 40;
    o->fps = 25;
    o->seed = 1;
    o->codec = "mpeg4";
}

/* ==== Random draws ======================================================= */

/* A video's draws depend on (seed, group, clip) only, not on its class: the
 * videos with the same group and clip number in every class show the same
 * scene, the same object, from the same start, with the same noise, and
 * differ only in how the object moves (minimal pairs). Nothing but the
 * motion then predicts the class, so a model cannot reach a low training
 * loss by remembering backgrounds or objects, and a class looks the same
 * whatever other classes are generated with it. */
typedef struct {
    uint64_t seed, key, i;
} srng;

#define SCENE_KEY 0x5ce9e5eedULL /* stands where the class name's hash was */

static double ru(srng *r)
{
    return (double)(vt_hash64(r->seed, r->key, r->i++) >> 11) * (1.0 / 9007199254740992.0);
}
static double rr(srng *r, double lo, double hi) { return lo + (hi - lo) * ru(r); }

static double lum(const double *c) { return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]; }

/* A random hue at luminance about L. */
static void colour_at(srng *r, double L, double *c)
{
    for (int i = 0; i < 3; i++)
        c[i] = rr(r, 0.15, 1.0);
    double s = L / lum(c);
    for (int i = 0; i < 3; i++) {
        c[i] *= s;
        c[i] = c[i] < 0 ? 0 : c[i] > 1 ? 1 : c[i];
    }
}

/* ==== Rendering ========================================================== */

#define TEX 64 /* texture samples across the object's [-1, 1]^2 */
#define SQUARE_HALF 0.886 /* half side of a square with a unit disk's area */

typedef struct {
    /* scene (shared by the clips of a group, like UCF101's groups) */
    double b1[3], b2[3], bw[4][4]; /* colours; waves: fx, fy, amp, phase */
    /* object */
    int square;
    double lr0, lmin, lmax, cx0, cy0, angle0;
    double speed, omega, rate, f_amp, f_freq, f_phase, noise;
    float tex[TEX * TEX * 3];
} video_params;

static void draw_params(const synth_class *c, uint64_t seed, int group, int clip,
                        int w, int h, int fps, video_params *p)
{
    uint64_t ck = SCENE_KEY;
    srng sr = {seed, vt_hash64(ck, (uint64_t)group, 0), 0};
    for (int i = 0; i < 3; i++)
        p->b1[i] = rr(&sr, 0.1, 0.9);
    for (int i = 0; i < 3; i++)
        p->b2[i] = rr(&sr, 0.1, 0.9);
    for (int k = 0; k < 4; k++) {
        p->bw[k][0] = rr(&sr, -3, 3);
        p->bw[k][1] = rr(&sr, -3, 3);
        p->bw[k][2] = rr(&sr, 0.3, 1.0);
        p->bw[k][3] = rr(&sr, 0, TWO_PI);
    }

    srng r = {seed, vt_hash64(ck, (uint64_t)group, (uint64_t)clip + 1), 0};
    double unit = (w < h ? w : h) / 120.0;
    double per_frame = 1.0 / fps;
    p->square = ru(&r) < 0.5;
    p->lmin = log(0.08 * (w < h ? w : h));
    p->lmax = log(0.32 * (w < h ? w : h));
    p->lr0 = rr(&r, p->lmin, p->lmax);
    /* Along the direction of motion the start is uniform on the torus;
     * across it (and for objects that stay in place) the centre keeps a
     * margin so that the object is at most a little cut by the border. */
    double m = 0.6 * exp(p->lmax);
    p->cx0 = rr(&r, 0, 1);
    p->cy0 = rr(&r, 0, 1);
    p->cx0 = c->dx ? p->cx0 * w : m + p->cx0 * (w - 2 * m);
    p->cy0 = c->dy ? p->cy0 * h : m + p->cy0 * (h - 2 * m);
    p->angle0 = rr(&r, 0, TWO_PI);
    p->speed = rr(&r, 25, 62.5) * unit * per_frame;                /* px */
    p->omega = rr(&r, 75, 175) * (TWO_PI / 360) * per_frame;       /* rad */
    p->rate = rr(&r, 0.5, 1.0) * per_frame;                        /* log px */
    p->f_amp = rr(&r, 0.25, 0.4);
    p->f_freq = rr(&r, 2, 4) * per_frame;                          /* cycles */
    p->f_phase = rr(&r, 0, TWO_PI);
    p->noise = rr(&r, 2, 6) / 255;

    /* Object colours: clearly brighter or darker than the background. */
    double bm[3];
    for (int i = 0; i < 3; i++)
        bm[i] = 0.5 * (p->b1[i] + p->b2[i]);
    double lb = lum(bm);
    double sign = ru(&r) < 0.5 ? -1 : 1, delta = rr(&r, 0.25, 0.45);
    double lo = lb + sign * delta;
    if (lo < 0.1 || lo > 0.9)
        lo = lb - sign * delta;
    lo = lo < 0.1 ? 0.1 : lo > 0.9 ? 0.9 : lo;
    double tc = rr(&r, 0.2, 0.45), c1[3], c2[3];
    colour_at(&r, lo + tc / 2, c1);
    colour_at(&r, lo - tc / 2, c2);
    double tw[3][4];
    for (int k = 0; k < 3; k++) {
        double f = rr(&r, 0.6, 2.0), th = rr(&r, 0, TWO_PI);
        tw[k][0] = f * cos(th);
        tw[k][1] = f * sin(th);
        tw[k][2] = rr(&r, 0.5, 1.0);
        tw[k][3] = rr(&r, 0, TWO_PI);
    }
    /* sin(a u + b v + phase) = sin(a u) cos(b v + phase)
     *                        + cos(a u) sin(b v + phase): tables per axis. */
    double sx[3][TEX], cx[3][TEX], sy[3][TEX], cy[3][TEX];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < TEX; i++) {
            double u = -1 + 2.0 * i / (TEX - 1);
            sx[k][i] = sin(TWO_PI * tw[k][0] * u);
            cx[k][i] = cos(TWO_PI * tw[k][0] * u);
            sy[k][i] = sin(TWO_PI * tw[k][1] * u + tw[k][3]);
            cy[k][i] = cos(TWO_PI * tw[k][1] * u + tw[k][3]);
        }
    for (int y = 0; y < TEX; y++)
        for (int x = 0; x < TEX; x++) {
            double s = 0;
            for (int k = 0; k < 3; k++)
                s += tw[k][2] * (sx[k][x] * cy[k][y] + cx[k][x] * sy[k][y]);
            double t = 0.5 + 0.5 * tanh(1.5 * s);
            for (int i = 0; i < 3; i++)
                p->tex[(y * TEX + x) * 3 + i] = (float)(c2[i] + (c1[i] - c2[i]) * t);
        }
}

static void state_at(const synth_class *c, const video_params *p, int t, int w,
                     int h, vt_synth_state *s)
{
    double cx = fmod(p->cx0 + c->dx * p->speed * t, w);
    double cy = fmod(p->cy0 + c->dy * p->speed * t, h);
    s->cx = (float)(cx < 0 ? cx + w : cx);
    s->cy = (float)(cy < 0 ? cy + h : cy);
    double a = fmod(p->angle0 + c->rot * p->omega * t, TWO_PI);
    s->angle = (float)(a < 0 ? a + TWO_PI : a);
    double lr = p->lr0;
    if (c->grow) {
        double L = p->lmax - p->lmin;
        double ph = fmod(p->lr0 - p->lmin + c->grow * p->rate * t, L);
        lr = p->lmin + (ph < 0 ? ph + L : ph);
    }
    s->radius = (float)exp(lr);
    s->gain = c->flicker ? (float)(1 + p->f_amp * sin(TWO_PI * p->f_freq * t + p->f_phase))
                         : 1.0f;
}

static inline uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

/* Draws the object centred at (ox, oy) into the float frame f (h, w, 3). */
static void draw_object(const video_params *p, const vt_synth_state *s, double ox,
                        double oy, float *f, int w, int h)
{
    double r = s->radius;
    double ext = (p->square ? SQUARE_HALF * 1.4143 : 1.0) * r + 1.5;
    int x0 = (int)floor(ox - ext), x1 = (int)ceil(ox + ext);
    int y0 = (int)floor(oy - ext), y1 = (int)ceil(oy + ext);
    x0 = x0 < 0 ? 0 : x0;
    y0 = y0 < 0 ? 0 : y0;
    x1 = x1 > w ? w : x1;
    y1 = y1 > h ? h : y1;
    double ca = cos(s->angle), sa = sin(s->angle);
    double edge_px = p->square ? SQUARE_HALF * r : r;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            double dx = x + 0.5 - ox, dy = y + 0.5 - oy;
            /* Object coordinates: the texture turns with the object. */
            double u = (ca * dx + sa * dy) / r, v = (-sa * dx + ca * dy) / r;
            double d = p->square ? fmax(fabs(u), fabs(v)) / SQUARE_HALF
                                 : sqrt(u * u + v * v);
            double alpha = (1 - d) * edge_px + 0.5; /* ~1 px soft edge */
            if (alpha <= 0)
                continue;
            alpha = alpha > 1 ? 1 : alpha;
            double tx = (u + 1) * 0.5 * (TEX - 1), ty = (v + 1) * 0.5 * (TEX - 1);
            tx = tx < 0 ? 0 : tx > TEX - 1.001 ? TEX - 1.001 : tx;
            ty = ty < 0 ? 0 : ty > TEX - 1.001 ? TEX - 1.001 : ty;
            int ix = (int)tx, iy = (int)ty;
            double fx = tx - ix, fy = ty - iy;
            const float *t00 = p->tex + (iy * TEX + ix) * 3, *t01 = t00 + 3;
            const float *t10 = t00 + TEX * 3, *t11 = t10 + 3;
            float *o = f + ((size_t)y * w + x) * 3;
            for (int i = 0; i < 3; i++) {
                double c = (1 - fy) * ((1 - fx) * t00[i] + fx * t01[i]) +
                           fy * ((1 - fx) * t10[i] + fx * t11[i]);
                c *= s->gain;
                o[i] = (float)(o[i] * (1 - alpha) + alpha * c);
            }
        }
}

int vt_synth_render(int k, uint64_t seed, int group, int clip, int w, int h,
                    int n, int fps, uint8_t *rgb, vt_synth_state *st)
{
    if (k < 0 || k >= N_CLASSES || group < 1 || clip < 1 || w < 8 || h < 8 ||
        n < 1 || fps < 1 || !rgb)
        return -1;
    const synth_class *c = &classes[k];
    video_params *p = malloc(sizeof *p);
    size_t np = (size_t)w * h * 3;
    float *bg = malloc(np * sizeof *bg), *f = malloc(np * sizeof *f);
    if (!p || !bg || !f) {
        free(p), free(bg), free(f);
        return -1;
    }
    draw_params(c, seed, group, clip, w, h, fps, p);

    /* Background: two colours mixed by low-frequency waves (separable, as
     * the texture), fixed grain. */
    uint64_t gs = vt_hash64(seed, SCENE_KEY, (uint64_t)group << 32 | 0xb9u) | 1;
    double *tab = malloc((size_t)(w + h) * 4 * 2 * sizeof *tab);
    if (!tab) {
        free(p), free(bg), free(f);
        return -1;
    }
    double *bsx = tab, *bcx = tab + 4 * w, *bsy = tab + 8 * w, *bcy = bsy + 4 * h;
    for (int q = 0; q < 4; q++) {
        for (int x = 0; x < w; x++) {
            bsx[q * w + x] = sin(TWO_PI * p->bw[q][0] * x / w);
            bcx[q * w + x] = cos(TWO_PI * p->bw[q][0] * x / w);
        }
        for (int y = 0; y < h; y++) {
            bsy[q * h + y] = sin(TWO_PI * p->bw[q][1] * y / h + p->bw[q][3]);
            bcy[q * h + y] = cos(TWO_PI * p->bw[q][1] * y / h + p->bw[q][3]);
        }
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double s = 0;
            for (int q = 0; q < 4; q++)
                s += p->bw[q][2] * (bsx[q * w + x] * bcy[q * h + y] + bcx[q * w + x] * bsy[q * h + y]);
            double m = 0.5 + 0.45 * tanh(s);
            for (int i = 0; i < 3; i++) {
                double g = ((xorshift(&gs) >> 40) * (1.0 / 16777216.0) - 0.5) * 0.06;
                bg[((size_t)y * w + x) * 3 + i] = (float)(p->b1[i] + (p->b2[i] - p->b1[i]) * m + g);
            }
        }
    free(tab);

    for (int t = 0; t < n; t++) {
        vt_synth_state s;
        state_at(c, p, t, w, h, &s);
        if (st)
            st[t] = s;
        memcpy(f, bg, np * sizeof *f);
        /* Along the motion the frame is a torus: draw the copies that
         * overlap it. */
        for (int oy = -c->dy * c->dy; oy <= c->dy * c->dy; oy++)
            for (int ox = -c->dx * c->dx; ox <= c->dx * c->dx; ox++)
                draw_object(p, &s, s.cx + ox * w, s.cy + oy * h, f, w, h);
        uint64_t ns = vt_hash64(seed, vt_hash64(SCENE_KEY, (uint64_t)group,
                                                (uint64_t)clip + 1),
                                0x1000000u + (uint64_t)t) | 1;
        /* Triangular noise (sum of two 16-bit uniforms) with standard
         * deviation p->noise; one 64-bit draw serves two values. */
        float amp = (float)(p->noise / 0.40825 * 255);
        uint8_t *o = rgb + (size_t)t * np;
        for (size_t i = 0; i < np; i += 2) {
            uint64_t z = xorshift(&ns);
            for (size_t q = 0; q < 2 && i + q < np; q++, z >>= 32) {
                float e = (float)((z & 0xffff) + ((z >> 16) & 0xffff)) * (1.0f / 65536) - 1;
                float v = f[i + q] * 255 + e * amp + 0.5f;
                v = v > 0.0f ? v : 0.0f; /* minss/maxss, no branches */
                v = v < 255.0f ? v : 255.0f;
                o[i + q] = (uint8_t)v;
            }
        }
    }
    free(p), free(bg), free(f);
    return 0;
}

/* ==== Dataset ============================================================ */

static int mkdir_p(const char *path, char *err, size_t errlen)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        snprintf(err, errlen, "%s: bad directory name", path);
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char save = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST) {
            snprintf(err, errlen, "%s: cannot create directory (%s)", buf, strerror(errno));
            return -1;
        }
        buf[i] = save;
    }
    struct stat sb;
    if (stat(path, &sb) || !S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a directory", path);
        return -1;
    }
    return 0;
}

typedef struct {
    int n_cls, cls[64];
    int n, groups, per_group, test_groups;
} layout;

static void video_of(const layout *L, int j, int *group, int *clip)
{
    *group = j / L->per_group + 1;
    *clip = j % L->per_group + 1;
}

/* UCF101 puts groups 1-7 of 25 in split 1's test set, 8-14 in split 2's,
 * 15-21 in split 3's; the same at the dataset's scale, wrapping around. */
static int is_test(const layout *L, int split, int group)
{
    for (int j = 0; j < L->test_groups; j++)
        if (((split - 1) * L->test_groups + j) % L->groups + 1 == group)
            return 1;
    return 0;
}

static int parse_classes(const char *list, layout *L, char *err, size_t errlen)
{
    L->n_cls = 0;
    if (!list) {
        for (int k = 0; k < N_CLASSES; k++)
            L->cls[L->n_cls++] = k;
        return 0;
    }
    const char *p = list;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char name[64];
        if (len == 0 || len >= sizeof name) {
            snprintf(err, errlen, "--classes: empty or overlong class name in '%s'", list);
            return -1;
        }
        memcpy(name, p, len);
        name[len] = '\0';
        int k = vt_synth_class_find(name);
        if (k < 0) {
            int o = snprintf(err, errlen, "--classes: unknown class '%s' (known:", name);
            for (int i = 0; i < N_CLASSES && o > 0 && (size_t)o < errlen; i++)
                o += snprintf(err + o, errlen - (size_t)o, " %s", classes[i].name);
            if (o > 0 && (size_t)o < errlen)
                snprintf(err + o, errlen - (size_t)o, ")");
            return -1;
        }
        for (int i = 0; i < L->n_cls; i++)
            if (L->cls[i] == k) {
                snprintf(err, errlen, "--classes: '%s' given twice", name);
                return -1;
            }
        L->cls[L->n_cls++] = k;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

static int write_lists(const char *dir, const layout *L, char *err, size_t errlen)
{
    char path[4200];
    /* The official files end every line with CRLF, the last one too. */
    snprintf(path, sizeof path, "%.4000s/classInd.txt", dir);
    FILE *f = fopen(path, "wb");
    if (!f)
        goto io;
    for (int c = 0; c < L->n_cls; c++)
        fprintf(f, "%d %s\r\n", c + 1, classes[L->cls[c]].name);
    if (fclose(f))
        goto io;
    for (int split = 1; split <= 3; split++)
        for (int test = 0; test <= 1; test++) {
            snprintf(path, sizeof path, "%.4000s/%slist%02d.txt", dir, test ? "test" : "train",
                     split);
            f = fopen(path, "wb");
            if (!f)
                goto io;
            for (int c = 0; c < L->n_cls; c++)
                for (int j = 0; j < L->n; j++) {
                    int g, k;
                    video_of(L, j, &g, &k);
                    if (is_test(L, split, g) != test)
                        continue;
                    const char *name = classes[L->cls[c]].name;
                    fprintf(f, "%s/v_%s_g%02d_c%02d.avi", name, name, g, k);
                    if (!test)
                        fprintf(f, " %d", c + 1);
                    fputs("\r\n", f);
                }
            if (ferror(f) | fclose(f))
                goto io;
        }
    return 0;
io:
    snprintf(err, errlen, "%s: cannot write (%s)", path, strerror(errno));
    return -1;
}

int vt_synth_generate(const vt_synth_opts *o, vt_synth_info *info, char *err,
                      size_t errlen)
{
    char dummy[8];
    if (!err)
        err = dummy, errlen = sizeof dummy;
    layout L = {0};
    if (!o->out_dir || !*o->out_dir) {
        snprintf(err, errlen, "no output directory");
        return -2;
    }
    if (strlen(o->out_dir) > 4000) {
        snprintf(err, errlen, "output directory name too long");
        return -2;
    }
    if (parse_classes(o->classes, &L, err, errlen))
        return -2;
    if (o->videos_per_class < 2 || o->videos_per_class > 10000) {
        snprintf(err, errlen, "--videos-per-class must be in 2..10000 (train and test "
                              "groups need a video each), not %d", o->videos_per_class);
        return -2;
    }
    if (o->width < 32 || o->height < 32 || o->width > 4096 || o->height > 4096 ||
        o->width % 2 || o->height % 2) {
        snprintf(err, errlen, "--size must be even and within 32..4096, not %dx%d",
                 o->width, o->height);
        return -2;
    }
    if (o->frames < 1 || o->frames > 100000 || o->fps < 1 || o->fps > 240) {
        snprintf(err, errlen, "--frames must be in 1..100000 and --fps in 1..240");
        return -2;
    }
    const char *codec = o->codec ? o->codec : "mpeg4";
    if (strcmp(codec, "mpeg4") && strcmp(codec, "mjpeg")) {
        snprintf(err, errlen, "--codec must be mpeg4 or mjpeg, not '%s'", codec);
        return -2;
    }
    L.n = o->videos_per_class;
    int g = o->groups ? o->groups : (L.n + 3) / 4;
    if (!o->groups)
        g = g < 2 ? 2 : g > 25 ? 25 : g;
    if (g < 2 || g > L.n) {
        snprintf(err, errlen, "--groups must be in 2..videos-per-class (%d), not %d", L.n, g);
        return -2;
    }
    L.per_group = (L.n + g - 1) / g;
    L.groups = (L.n + L.per_group - 1) / L.per_group;
    if (L.groups < 2) {
        snprintf(err, errlen, "%d videos in groups of %d leave no test group", L.n,
                 L.per_group);
        return -2;
    }
    L.test_groups = (int)lround(L.groups * 7.0 / 25.0);
    L.test_groups = L.test_groups < 1 ? 1 : L.test_groups > L.groups - 1 ? L.groups - 1
                                                                          : L.test_groups;

    char path[4200];
    if (mkdir_p(o->out_dir, err, errlen))
        return -1;
    for (int c = 0; c < L.n_cls; c++) {
        snprintf(path, sizeof path, "%s/%s", o->out_dir, classes[L.cls[c]].name);
        if (mkdir_p(path, err, errlen))
            return -1;
    }
    snprintf(path, sizeof path, "%s/ucfTrainTestlist", o->out_dir);
    if (mkdir_p(path, err, errlen))
        return -1;

    int jobs = L.n_cls * L.n, w = o->width, h = o->height, n = o->frames;
    int first_fail = jobs;
    char fail_msg[512] = "";
    /* Videos are independent and each is a function of its own indices, so
     * the files are the same whatever the thread count. */
#pragma omp parallel for schedule(dynamic)
    for (int job = 0; job < jobs; job++) {
        int c = L.cls[job / L.n], grp, clip;
        video_of(&L, job % L.n, &grp, &clip);
        char file[4200], msg[512];
        snprintf(file, sizeof file, "%s/%s/v_%s_g%02d_c%02d.avi", o->out_dir,
                 classes[c].name, classes[c].name, grp, clip);
        uint8_t *rgb = malloc((size_t)n * w * h * 3);
        int bad = !rgb || vt_synth_render(c, o->seed, grp, clip, w, h, n, o->fps, rgb, NULL);
        if (bad)
            snprintf(msg, sizeof msg, "%.480s: out of memory", file);
        else
            bad = vt_video_encode(file, codec, rgb, n, h, w, o->fps, msg, sizeof msg) != 0;
        free(rgb);
        if (bad) {
#pragma omp critical(vt_synth_fail)
            if (job < first_fail) {
                first_fail = job;
                snprintf(fail_msg, sizeof fail_msg, "%s", msg);
            }
        }
    }
    if (first_fail < jobs) {
        snprintf(err, errlen, "%s", fail_msg);
        return -1;
    }
    if (write_lists(path, &L, err, errlen))
        return -1;
    if (info) {
        info->n_classes = L.n_cls;
        info->n_videos = jobs;
        info->groups = L.groups;
        info->test_groups = L.test_groups;
        info->clips_per_group = L.per_group;
        info->n_train = info->n_test = 0;
        for (int j = 0; j < L.n; j++) {
            int grp, clip;
            video_of(&L, j, &grp, &clip);
            if (is_test(&L, 1, grp))
                info->n_test += L.n_cls;
            else
                info->n_train += L.n_cls;
        }
    }
    return 0;
}
