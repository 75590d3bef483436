/* vpredict.c - class predictions of a checkpoint for video files: the top
 * classes of each video (clip probabilities averaged), a timeline of
 * per-clip (and, for per-frame models, per-frame) predictions, a copy of
 * the first video with the predicted label drawn on every frame, and the
 * raw logits of a tensor from an HDF5 file (parity checks with PyTorch).
 * Exit status: 0 done, 1 some video or file could not be processed,
 * 2 bad arguments or config. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "bitfont.h"
#include "toolcommon.h"
#include "vt_h5.h"
#include "vt_ops.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vpredict --checkpoint CKPT [options] VIDEO...\n"
            "       vpredict --checkpoint CKPT --tensor IN.h5:DATASET --out OUT.h5\n"
            "\n"
            "Classifies video files with a trained checkpoint. Each video is decoded\n"
            "as in training ([data] resize or short_side, fps of the run config), K\n"
            "clips are taken uniformly spread over it (centre crop) and their class\n"
            "probabilities averaged. Prints the top classes and a timeline: the top\n"
            "class of each clip by its start time, and for per-frame models\n"
            "(single-frame, LRCN many-to-many) the class at every frame.\n"
            "\n"
            "options:\n"
            "  --checkpoint CKPT     a vtrain checkpoint (e.g. runs/c3d/best.h5)\n"
            "  --top K               classes to list per video (default 5)\n"
            "  --clips K             clips per video (default [data] clips_per_video)\n"
            "  --json                print JSON instead of text (stdout)\n"
            "  --annotate OUT.mp4    write the first video with the predicted label\n"
            "                        drawn on each frame (h264; mpeg4 for .avi)\n"
            "  --tensor IN.h5:DSET   run the model (eval mode) on a float32\n"
            "                        (N, C, T, H, W) dataset; needs --out\n"
            "  --out OUT.h5          where --tensor writes 'logits' (N, classes) or\n"
            "                        (N, T, classes) for per-frame models, and 'probs'\n"
            "                        (N, classes)\n"
            "  --config FILE         run config instead of the checkpoint's own (its\n"
            "                        model must match the checkpoint exactly)\n"
            "  --set SEC.KEY=VAL     override a config value (repeatable)\n"
            "  --batch N             clips per forward pass ([train] batch_size)\n"
            "  --threads N           compute threads ([train] threads; 0: every core)\n"
            "  -h, --help            this text\n"
            "\n"
            "A video that cannot be read gets one message and the others are still\n"
            "processed. exit status: 0 done, 1 some video or file failed (damaged\n"
            "checkpoint, unreadable video), 2 bad arguments or config\n");
}

static int bad_arg(const char *fmt, const char *a)
{
    fprintf(stderr, "vpredict: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n(see vpredict --help)\n");
    return 2;
}

/* ==== Running the model ================================================= */

typedef struct {
    vt_model *m;
    vt_ctx c;
    int batch;
} runner;

/* Forward pass of n clips x (N, C, T, H, W) in eval mode. The returned
 * logits live in the runner's arena until the next call. */
static vt_tensor *forward(runner *r, float *x, int n)
{
    const int *s = r->m->in_shape;
    vt_ctx_reset(&r->c);
    vt_tensor *t = vt_tensor_wrap(&r->c, x, 5, (int[]){n, s[0], s[1], s[2], s[3]});
    return vt_model_forward(r->m, &r->c, t);
}

/* ==== Clips of a video ================================================== */

typedef struct {
    char err[1200];
    int ok;
    int n_clips, T, C;
    int t_out;          /* per-frame models: frames of the output, else 0 */
    int frames;         /* decoded (after fps resampling) */
    double fps;
    int *idx;           /* [n_clips * T] frame of each clip position */
    float *clip_probs;  /* [n_clips * C] */
    float *frame_probs; /* [n_clips * t_out * C], per-frame models only */
    double *avg;        /* [C] mean of clip_probs */
} prediction;

static void prediction_free(prediction *p)
{
    free(p->idx);
    free(p->clip_probs);
    free(p->frame_probs);
    free(p->avg);
}

static inline int clampi(int v, int n) { return v < 0 ? 0 : v >= n ? n - 1 : v; }

/* (T, ch, cw, 3) from frames (F, h, w, 3) at indices idx; coordinates are
 * clamped to the frame (a frame smaller than the crop), as the loader does. */
static void copy_crop(const uint8_t *fr, int h, int w, const int *idx, int T, int y0, int x0,
                      int ch, int cw, uint8_t *dst)
{
    size_t fsz = (size_t)h * (size_t)w * 3;
    for (int t = 0; t < T; t++)
        for (int y = 0; y < ch; y++) {
            const uint8_t *row = fr + (size_t)idx[t] * fsz + (size_t)clampi(y0 + y, h) * w * 3;
            uint8_t *d = dst + ((size_t)t * ch + y) * cw * 3;
            for (int x = 0; x < cw; x++)
                memcpy(d + (size_t)x * 3, row + (size_t)clampi(x0 + x, w) * 3, 3);
        }
}

static double clip_start(const prediction *p, int k) { return p->idx[(size_t)k * p->T] / p->fps; }
static double clip_end(const prediction *p, int k)
{
    return (p->idx[(size_t)k * p->T + p->T - 1] + 1) / p->fps;
}
/* Source frame of output frame j of clip k (outputs may be fewer than
 * input frames when the model pools over time before its sequence). */
static int out_frame(const prediction *p, int k, int j)
{
    return p->idx[(size_t)k * p->T + (size_t)j * p->T / p->t_out];
}

static int argmax_f(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b])
            b = i;
    return b;
}

static int predict_video(runner *r, const vt_data_config *d, const vt_norm *norm,
                         const char *path, int K, prediction *p)
{
    memset(p, 0, sizeof *p);
    vt_model *m = r->m;
    int T = m->in_shape[1], ch = m->in_shape[2], cw = m->in_shape[3], C = m->classes;
    vt_decode_opts o = {.width = d->resize_w, .height = d->resize_h,
                        .short_side = d->short_side, .fps = d->fps};
    vt_frames fr;
    if (vt_video_decode(path, &o, &fr, p->err, sizeof p->err))
        return -1;
    p->n_clips = K;
    p->T = T;
    p->C = C;
    p->frames = fr.n;
    p->fps = fr.fps > 0 ? fr.fps : 25.0;
    p->idx = malloc((size_t)K * T * sizeof *p->idx);
    p->clip_probs = malloc((size_t)K * C * sizeof *p->clip_probs);
    p->avg = calloc((size_t)C, sizeof *p->avg);
    int B = K < r->batch ? K : r->batch;
    size_t per = (size_t)m->in_shape[0] * T * ch * cw;
    float *x = malloc((size_t)B * per * sizeof *x);
    uint8_t *clip = malloc((size_t)T * ch * cw * 3);
    VT_ASSERT(p->idx && p->clip_probs && p->avg && x && clip, "out of memory");
    for (int k0 = 0; k0 < K; k0 += B) {
        int nb = K - k0 < B ? K - k0 : B;
        for (int j = 0; j < nb; j++) {
            int k = k0 + j, y0, x0;
            int *idx = p->idx + (size_t)k * T;
            vt_clip_indices(fr.n, T, d->frame_stride, (k + 0.5) / K, idx);
            vt_crop_offset(fr.h, fr.w, ch, cw, 0, 0, 0, &y0, &x0);
            copy_crop(fr.data, fr.h, fr.w, idx, T, y0, x0, ch, cw, clip);
            vt_clip_to_float(clip, T, ch, cw, 0, norm, y0, x0, x + (size_t)j * per);
        }
        vt_tensor *y = forward(r, x, nb);
        vt_model_probs(m, y, p->clip_probs + (size_t)k0 * C);
        if (m->per_frame) {
            if (!p->frame_probs) {
                p->t_out = y->shape[1];
                p->frame_probs = malloc((size_t)K * p->t_out * C * sizeof *p->frame_probs);
                VT_ASSERT(p->frame_probs, "out of memory");
            }
            vt_softmax_rows(y->data, p->frame_probs + (size_t)k0 * p->t_out * C, nb * p->t_out, C);
        }
    }
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++)
            p->avg[c] += p->clip_probs[(size_t)k * C + c] / K;
    free(x);
    free(clip);
    vt_frames_free(&fr);
    p->ok = 1;
    return 0;
}

/* Class indices by decreasing averaged probability (ties: lower index). */
static void top_k(const double *p, int C, int k, int *out)
{
    char *used = calloc((size_t)C, 1);
    VT_ASSERT(used, "out of memory");
    for (int i = 0; i < k; i++) {
        int b = -1;
        for (int c = 0; c < C; c++)
            if (!used[c] && (b < 0 || p[c] > p[b]))
                b = c;
        used[b] = 1;
        out[i] = b;
    }
    free(used);
}

/* ==== Reports =========================================================== */

static void print_text(FILE *f, const char *path, const prediction *p, int top,
                       char *const *names)
{
    int C = p->C, nw = 5;
    for (int c = 0; c < C; c++)
        nw = (int)strlen(names[c]) > nw ? (int)strlen(names[c]) : nw;
    fprintf(f, "%s: %d frames at %.4g fps (%.2f s), %d clip%s of %d frames\n", path, p->frames,
            p->fps, p->frames / p->fps, p->n_clips, p->n_clips > 1 ? "s" : "", p->T);
    int order[top];
    top_k(p->avg, C, top, order);
    for (int i = 0; i < top; i++)
        fprintf(f, "  %2d. %-*s %6.2f%%\n", i + 1, nw, names[order[i]], 100 * p->avg[order[i]]);
    fprintf(f, "  timeline (clip start: top class):\n");
    for (int k = 0; k < p->n_clips; k++) {
        const float *cp = p->clip_probs + (size_t)k * C;
        int b = argmax_f(cp, C);
        fprintf(f, "    %8.2f s  %-*s %6.2f%%\n", clip_start(p, k), nw, names[b], 100 * cp[b]);
        if (!p->frame_probs)
            continue;
        /* Runs of equal per-frame classes: "frames 0-7 A, 8-15 B". */
        fprintf(f, "      frames");
        int j = 0;
        while (j < p->t_out) {
            const float *fp = p->frame_probs + ((size_t)k * p->t_out + j) * C;
            int cls = argmax_f(fp, C), e = j;
            while (e + 1 < p->t_out &&
                   argmax_f(p->frame_probs + ((size_t)k * p->t_out + e + 1) * C, C) == cls)
                e++;
            if (e > j)
                fprintf(f, "%s %d-%d %s", j ? "," : "", out_frame(p, k, j), out_frame(p, k, e),
                        names[cls]);
            else
                fprintf(f, "%s %d %s", j ? "," : "", out_frame(p, k, j), names[cls]);
            j = e + 1;
        }
        fputc('\n', f);
    }
}

static void json_class(FILE *f, char *const *names, int c, double prob)
{
    fputs("\"class\": ", f);
    vt_json_str(f, names[c]);
    fprintf(f, ", \"index\": %d, \"prob\": ", c);
    vt_json_num(f, prob);
}

static void print_json_video(FILE *f, const char *path, const prediction *p, int top,
                             char *const *names)
{
    fputs("    {\"path\": ", f);
    vt_json_str(f, path);
    if (!p->ok) {
        fputs(", \"error\": ", f);
        vt_json_str(f, p->err);
        fputc('}', f);
        return;
    }
    int C = p->C;
    fprintf(f, ", \"frames\": %d, \"fps\": ", p->frames);
    vt_json_num(f, p->fps);
    fputs(", \"duration\": ", f);
    vt_json_num(f, p->frames / p->fps);
    fprintf(f, ", \"clips\": %d,\n     \"top\": [", p->n_clips);
    int order[top];
    top_k(p->avg, C, top, order);
    for (int i = 0; i < top; i++) {
        fputs(i ? ", {" : "{", f);
        json_class(f, names, order[i], p->avg[order[i]]);
        fputc('}', f);
    }
    fputs("],\n     \"timeline\": [", f);
    for (int k = 0; k < p->n_clips; k++) {
        const float *cp = p->clip_probs + (size_t)k * C;
        int b = argmax_f(cp, C);
        fprintf(f, "%s\n       {\"clip\": %d, \"start\": ", k ? "," : "", k);
        vt_json_num(f, clip_start(p, k));
        fputs(", \"end\": ", f);
        vt_json_num(f, clip_end(p, k));
        fputs(", ", f);
        json_class(f, names, b, cp[b]);
        if (p->frame_probs) {
            fputs(", \"frames\": [", f);
            for (int j = 0; j < p->t_out; j++) {
                const float *fp = p->frame_probs + ((size_t)k * p->t_out + j) * C;
                int fb = argmax_f(fp, C), fi = out_frame(p, k, j);
                fprintf(f, "%s{\"frame\": %d, \"time\": ", j ? ", " : "", fi);
                vt_json_num(f, fi / p->fps);
                fputs(", ", f);
                json_class(f, names, fb, fp[fb]);
                fputc('}', f);
            }
            fputc(']', f);
        }
        fputc('}', f);
    }
    fputs("]}", f);
}

/* ==== --annotate ======================================================== */

/* The video at its source size and rate, each frame labelled with the
 * prediction nearest in time (the clip whose centre is closest; for
 * per-frame models that clip's nearest frame) above the video's overall
 * top class. */
static int annotate(const char *src, const char *out, const prediction *p, char *const *names,
                    char *err, size_t errlen)
{
    vt_decode_opts o = {0};
    vt_frames fr;
    if (vt_video_decode(src, &o, &fr, err, errlen))
        return -1;
    /* yuv420p needs even sizes: drop a last odd row/column. */
    int h = fr.h & ~1, w = fr.w & ~1;
    if (h < 2 || w < 2) {
        snprintf(err, errlen, "%s: frames of %dx%d are too small to annotate", src, fr.w, fr.h);
        vt_frames_free(&fr);
        return -1;
    }
    uint8_t *rgb = fr.data;
    if (h != fr.h || w != fr.w) {
        rgb = malloc((size_t)fr.n * h * w * 3);
        VT_ASSERT(rgb, "out of memory");
        for (int i = 0; i < fr.n; i++)
            for (int y = 0; y < h; y++)
                memcpy(rgb + (((size_t)i * h + y) * w) * 3,
                       fr.data + (((size_t)i * fr.h + y) * fr.w) * 3, (size_t)w * 3);
    }
    double fps = fr.fps > 0 ? fr.fps : 25.0;
    int scale = w >= 200 ? 2 : 1, C = p->C, best = 0;
    for (int c = 1; c < C; c++)
        if (p->avg[c] > p->avg[best])
            best = c;
    char video_line[256];
    snprintf(video_line, sizeof video_line, "video: %s %.0f%%", names[best], 100 * p->avg[best]);
    const uint8_t white[3] = {255, 255, 255}, yellow[3] = {255, 230, 60}, black[3] = {0, 0, 0};
    int pad = 2 * scale, lh = VT_GLYPH_H * scale;
    for (int i = 0; i < fr.n; i++) {
        double t = i / fps;
        int k = 0;
        for (int q = 1; q < p->n_clips; q++)
            if (fabs((clip_start(p, q) + clip_end(p, q)) / 2 - t) <
                fabs((clip_start(p, k) + clip_end(p, k)) / 2 - t))
                k = q;
        const float *cp = p->clip_probs + (size_t)k * C;
        if (p->frame_probs) {
            int j = 0;
            for (int q = 1; q < p->t_out; q++)
                if (fabs(out_frame(p, k, q) / p->fps - t) < fabs(out_frame(p, k, j) / p->fps - t))
                    j = q;
            cp = p->frame_probs + ((size_t)k * p->t_out + j) * C;
        }
        int c = argmax_f(cp, C);
        char now_line[256];
        snprintf(now_line, sizeof now_line, "%s %.0f%%", names[c], 100 * cp[c]);
        int tw = vt_text_width(now_line, scale), vw = vt_text_width(video_line, scale);
        uint8_t *img = rgb + (size_t)i * h * w * 3;
        vt_fill_rect(img, h, w, 0, 0, (tw > vw ? tw : vw) + 2 * pad, 2 * lh + 2 * pad, black, 0.6f);
        vt_draw_text(img, h, w, pad, pad, now_line, scale, white);
        vt_draw_text(img, h, w, pad, pad + lh, video_line, scale, yellow);
    }
    size_t ol = strlen(out);
    const char *codec = ol >= 4 && !strcasecmp(out + ol - 4, ".avi") ? "mpeg4" : "h264";
    int ifps = (int)lround(fps);
    int rc = vt_video_encode(out, codec, rgb, fr.n, h, w, ifps < 1 ? 1 : ifps, err, errlen);
    if (rgb != fr.data)
        free(rgb);
    vt_frames_free(&fr);
    return rc;
}

/* ==== --tensor ========================================================== */

/* Returns 0, or the exit status with a message in err. */
static int run_tensor(runner *r, const char *spec, const char *out, char *err, size_t errlen)
{
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1]) {
        snprintf(err, errlen, "--tensor: '%s' is not FILE.h5:DATASET", spec);
        return 2;
    }
    char file[1024];
    snprintf(file, sizeof file, "%.*s", (int)(colon - spec), spec);
    const char *dset = colon + 1;
    if (access(file, R_OK) != 0) {
        snprintf(err, errlen, "%s: cannot open: no such file or not readable", file);
        return 2;
    }
    vt_h5_quiet();
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        snprintf(err, errlen, "%s: cannot open as HDF5", file);
        return 1;
    }
    float *data = NULL;
    int nd = 0, shape[VT_H5_MAX_DIMS];
    char e2[1024];
    int rc = vt_h5_read_f32(f, dset, &data, &nd, shape, e2, sizeof e2);
    H5Fclose(f);
    if (rc) {
        snprintf(err, errlen, "%s: %s", spec, e2);
        return 1;
    }
    const int *in = r->m->in_shape;
    if (nd != 5 || shape[1] != in[0] || shape[2] != in[1] || shape[3] != in[2] ||
        shape[4] != in[3] || shape[0] < 1) {
        char got[128] = "(";
        for (int i = 0; i < nd; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", i ? ", " : "", shape[i]);
        snprintf(err, errlen, "%s: shape %s), but the model takes (N, %d, %d, %d, %d)", spec, got,
                 in[0], in[1], in[2], in[3]);
        free(data);
        return 2;
    }
    int N = shape[0], C = r->m->classes, t_out = 0;
    size_t per = (size_t)in[0] * in[1] * in[2] * in[3];
    float *logits = NULL, *probs = malloc((size_t)N * C * sizeof *probs);
    VT_ASSERT(probs, "out of memory");
    for (int n0 = 0; n0 < N; n0 += r->batch) {
        int nb = N - n0 < r->batch ? N - n0 : r->batch;
        vt_tensor *y = forward(r, data + (size_t)n0 * per, nb);
        size_t row = y->numel / (size_t)nb;
        if (!logits) {
            t_out = y->ndim == 3 ? y->shape[1] : 0;
            logits = malloc((size_t)N * row * sizeof *logits);
            VT_ASSERT(logits, "out of memory");
        }
        memcpy(logits + (size_t)n0 * row, y->data, y->numel * sizeof *logits);
        vt_model_probs(r->m, y, probs + (size_t)n0 * C);
    }
    free(data);

    /* Written under a temporary name and renamed, so a failed run never
     * leaves a half-written OUT.h5 behind. */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
    rc = 1;
    hid_t o = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (o < 0) {
        snprintf(err, errlen, "%s: cannot create", out);
    } else {
        int ls[3] = {N, t_out ? t_out : C, C};
        if (vt_h5_write_f32(o, "logits", logits, t_out ? 3 : 2, ls, e2, sizeof e2) ||
            vt_h5_write_f32(o, "probs", probs, 2, (int[]){N, C}, e2, sizeof e2))
            snprintf(err, errlen, "%s: %s", out, e2);
        else
            rc = 0;
        if (H5Fclose(o) < 0 && !rc) {
            snprintf(err, errlen, "%s: write failed", out);
            rc = 1;
        }
        if (!rc && rename(tmp, out) != 0) {
            snprintf(err, errlen, "%s: cannot rename the finished file into place", out);
            rc = 1;
        }
        if (rc)
            unlink(tmp);
    }
    free(logits);
    free(probs);
    return rc;
}

/* ==== Normalisation ===================================================== */

/* As the loader: the config's mean/std, or C3D's mean cube from
 * [data] mean_file. Returns 0, or an exit status with a message. */
static int make_norm(const vt_tool_model *tm, vt_norm *n, float **cube, char *err, size_t errlen)
{
    const vt_data_config *d = &tm->run.data;
    const int *in = tm->run.model.in_shape;
    *cube = NULL;
    if (!(d->norm == VT_NORM_C3D && d->mean_file)) {
        vt_norm_init(n, d->norm, d->mean, d->std, NULL, 0, 0, 0);
        return 0;
    }
    if (!d->resize_h) {
        snprintf(err, errlen, "%s: mean_file needs a fixed frame size: set [data] resize",
                 tm->config_name);
        return 2;
    }
    vt_h5_quiet();
    hid_t f = H5Fopen(d->mean_file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        snprintf(err, errlen, "mean_file %s: cannot open as HDF5", d->mean_file);
        return 1;
    }
    int nd, s[VT_H5_MAX_DIMS];
    char e2[1024];
    int rc = vt_h5_read_f32(f, "mean", cube, &nd, s, e2, sizeof e2);
    H5Fclose(f);
    if (rc) {
        snprintf(err, errlen, "mean_file %s: %s", d->mean_file, e2);
        return 1;
    }
    if (nd != 4 || s[0] != 3 || s[1] != in[1] || s[2] != d->resize_h || s[3] != d->resize_w) {
        snprintf(err, errlen, "mean_file %s: dataset 'mean' must be (3, %d, %d, %d)",
                 d->mean_file, in[1], d->resize_h, d->resize_w);
        free(*cube);
        *cube = NULL;
        return 1;
    }
    vt_norm_init(n, VT_NORM_C3D, d->mean, d->std, *cube, in[1], d->resize_h, d->resize_w);
    return 0;
}

/* ==== Main ============================================================== */

int main(int argc, char **argv)
{
    const char *ckpt = NULL, *config = NULL, *annot = NULL, *tensor = NULL, *out = NULL;
    int top = 5, clips = 0, json = 0, rc = 0;
    vt_tool_sets sets = {0}, flags = {0};
    const char **videos = calloc((size_t)argc, sizeof *videos);
    int n_videos = 0;
    VT_ASSERT(videos, "out of memory");
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        int n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = -1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (strncmp(a, "--", 2) || !strcmp(a, "-")) {
            videos[n_videos++] = a;
        } else if (i + 1 >= argc) {
            rc = bad_arg("%s needs a value", a);
        } else {
            const char *v = argv[++i];
            if (!strcmp(a, "--checkpoint")) {
                ckpt = v;
            } else if (!strcmp(a, "--config")) {
                config = v;
            } else if (!strcmp(a, "--set")) {
                vt_tool_sets_add(&sets, v);
            } else if (!strcmp(a, "--annotate")) {
                annot = v;
            } else if (!strcmp(a, "--tensor")) {
                tensor = v;
            } else if (!strcmp(a, "--out")) {
                out = v;
            } else if (!strcmp(a, "--top")) {
                if (vt_tool_parse_int(v, 1, 100000, &top))
                    rc = bad_arg("--top: '%s' is not a number >= 1", v);
            } else if (!strcmp(a, "--clips")) {
                if (vt_tool_parse_int(v, 1, 10000, &clips))
                    rc = bad_arg("--clips: '%s' is not a number in 1..10000", v);
            } else if (!strcmp(a, "--batch")) {
                if (vt_tool_parse_int(v, 1, 100000, &n))
                    rc = bad_arg("--batch: '%s' is not a number in 1..100000", v);
                else
                    vt_tool_sets_addf(&flags, "train.batch_size=%d", n);
            } else if (!strcmp(a, "--threads")) {
                if (vt_tool_parse_int(v, 0, 4096, &n))
                    rc = bad_arg("--threads: '%s' is not a number in 0..4096", v);
                else
                    vt_tool_sets_addf(&flags, "train.threads=%d", n);
            } else {
                rc = bad_arg("unknown option '%s'", a);
            }
        }
    }
    if (!rc) {
        if (!ckpt)
            rc = bad_arg("--checkpoint CKPT is required%s", "");
        else if (!n_videos && !tensor)
            rc = bad_arg("no VIDEO given (and no --tensor)%s", "");
        else if (tensor && !out)
            rc = bad_arg("--tensor needs --out OUT.h5%s", "");
        else if (out && !tensor)
            rc = bad_arg("--out goes with --tensor%s", "");
        else if (annot && !n_videos)
            rc = bad_arg("--annotate needs a VIDEO%s", "");
    }
    if (rc) {
        free(videos);
        vt_tool_sets_free(&sets);
        vt_tool_sets_free(&flags);
        return rc < 0 ? 0 : rc;
    }
    for (int i = 0; i < flags.n; i++)
        vt_tool_sets_add(&sets, flags.v[i]);

    char err[2048];
    vt_tool_model tm;
    prediction *pred = NULL;
    float *cube = NULL;
    runner r = {0};
    int status = vt_tool_model_open(&tm, ckpt, config, sets.v, sets.n, err, sizeof err);
    if (status) {
        fprintf(stderr, "vpredict: %s\n", err);
        goto done;
    }
    vt_model *m = &tm.run.model;
    r.m = m;
    r.batch = tm.run.train.batch_size;
    vt_ctx_init(&r.c, 0);
    r.c.training = 0;
    r.c.grad_enabled = 0;
    if (top > m->classes)
        top = m->classes;
    if (!clips)
        clips = tm.run.data.clips_per_video;

    if (tensor) {
        int trc = run_tensor(&r, tensor, out, err, sizeof err);
        if (trc) {
            fprintf(stderr, "vpredict: %s\n", err);
            status = trc;
            goto done;
        }
        if (!json)
            printf("vpredict: wrote %s (logits and probs of %s)\n", out, tensor);
    }
    if (n_videos) {
        vt_norm norm;
        int nrc = make_norm(&tm, &norm, &cube, err, sizeof err);
        if (nrc) {
            fprintf(stderr, "vpredict: %s\n", err);
            status = nrc;
            goto done;
        }
        pred = calloc((size_t)n_videos, sizeof *pred);
        VT_ASSERT(pred, "out of memory");
        vt_progress prog;
        vt_progress_init(&prog);
        for (int i = 0; i < n_videos; i++) {
            vt_progress_show(&prog, 1, "vpredict: %d/%d %s", i + 1, n_videos, videos[i]);
            if (predict_video(&r, &tm.run.data, &norm, videos[i], clips, &pred[i])) {
                vt_progress_clear(&prog);
                fprintf(stderr, "vpredict: %s\n", pred[i].err);
                status = 1;
                continue;
            }
            vt_progress_clear(&prog);
            if (!json)
                print_text(stdout, videos[i], &pred[i], top, tm.classes);
        }
        if (json) {
            printf("{\"checkpoint\": ");
            vt_json_str(stdout, ckpt);
            printf(", \"model\": ");
            vt_json_str(stdout, m->name);
            printf(", \"classes\": %d, \"per_frame\": %s, \"clips_per_video\": %d, "
                   "\"top\": %d,\n  \"videos\": [\n", m->classes,
                   m->per_frame ? "true" : "false", clips, top);
            for (int i = 0; i < n_videos; i++) {
                print_json_video(stdout, videos[i], &pred[i], top, tm.classes);
                fputs(i + 1 < n_videos ? ",\n" : "\n", stdout);
            }
            printf("  ]}\n");
        }
        if (annot) {
            if (!pred[0].ok) {
                fprintf(stderr, "vpredict: %s: not written: %s could not be read\n", annot,
                        videos[0]);
                status = 1;
            } else if (annotate(videos[0], annot, &pred[0], tm.classes, err, sizeof err)) {
                fprintf(stderr, "vpredict: %s\n", err);
                status = 1;
            } else {
                fprintf(json ? stderr : stdout, "vpredict: wrote %s\n", annot);
            }
        }
    }

done:
    if (pred)
        for (int i = 0; i < n_videos; i++)
            prediction_free(&pred[i]);
    free(pred);
    free(cube);
    if (r.m)
        vt_ctx_free(&r.c);
    vt_tool_model_close(&tm);
    vt_tool_sets_free(&sets);
    vt_tool_sets_free(&flags);
    free(videos);
    return status;
}
