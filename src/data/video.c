/* video.c - FFmpeg decoding into RGB24 frames and encoding RGB24 frames to
 * video files (see vt_video.h).
 *
 * Decoding is written for broken input: every failure returns -1 with one
 * line "<file>: <reason>", and the work is bounded (consecutive decode errors,
 * packets without any picture) so that a damaged file can neither crash nor
 * hang a training run. FFmpeg's own log is silenced; reasons come back
 * through err. */
#include "vt_video.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>


/* swscale's vector code may store up to a vector past the end of a line;
 * lines are written top to bottom, so only the last line of a buffer can
 * spill: every buffer it writes gets this much slack. */
#define SWS_PAD 64

/* A damaged stream produces runs of rejected packets; a healthy one never
 * more than a handful (a cut GOP). Past these limits the rest of the file is
 * treated as unreadable. */
#define MAX_CONSECUTIVE_ERRORS 64
#define MAX_PACKETS_WITHOUT_FRAME 1024
/* Larger outputs are certainly a garbage header, not a video. */
#define MAX_DIM 16384

static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static void quiet_log(void) { av_log_set_level(AV_LOG_QUIET); }

static void set_err(char *err, size_t errlen, const char *path,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void set_err(char *err, size_t errlen, const char *path,
                    const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    int k = snprintf(err, errlen, "%s: ", path);
    if (k < 0 || (size_t)k >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
    /* One line, whatever FFmpeg's strings contain. */
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

static const char *averr(int e, char *buf, size_t n)
{
    av_strerror(e, buf, n);
    return buf;
}

/* ==== Container-level truncation check ================================== */

static uint32_t rd_le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
           (uint32_t)b[3] << 24;
}
static uint64_t rd_be(const unsigned char *b, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | b[i];
    return v;
}

/* Reads an EBML variable-length integer at *pos; -1 on error, -2 for the
 * reserved "unknown size" value. */
static int64_t ebml_vint(FILE *f, int64_t *pos, int strip_marker)
{
    unsigned char b[8];
    if (fseeko(f, *pos, SEEK_SET) || fread(b, 1, 1, f) != 1 || b[0] == 0)
        return -1;
    int len = 1;
    while (!(b[0] & (0x80 >> (len - 1))))
        len++;
    if (len > 1 && fread(b + 1, 1, (size_t)len - 1, f) != (size_t)len - 1)
        return -1;
    uint64_t v = strip_marker ? (b[0] & (0xff >> len)) : b[0];
    int all_ones = strip_marker && v == (uint64_t)(0xff >> len);
    for (int i = 1; i < len; i++) {
        v = v << 8 | b[i];
        all_ones = all_ones && b[i] == 0xff;
    }
    *pos += len;
    return all_ones ? -2 : (int64_t)v;
}

/* Does the container declare more bytes than the file holds? Checks the
 * top-level structure of RIFF (AVI), ISO-BMFF (MP4/MOV) and Matroska/WebM,
 * which between them carry nearly every video file; other containers rely on
 * the demuxer's cut-packet flag. A writer that finished the file always makes
 * these sizes add up; a copy or download that stopped early never does. */
static int container_truncated(const char *path, int64_t *declared,
                               int64_t *actual)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    int trunc = 0;
    unsigned char h[16];
    struct stat sb;
    if (fstat(fileno(f), &sb) || fread(h, 1, 12, f) != 12)
        goto done;
    int64_t size = (int64_t)sb.st_size;
    *actual = size;
    if (!memcmp(h, "RIFF", 4)) {
        /* The first RIFF's own chunks (hdrl, movi, idx1): a file whose RIFF
         * size was patched, or never written, still has a cut movi list. */
        int64_t pos = 12;
        for (int i = 0; i < 64 && pos + 8 <= size; i++) {
            if (fseeko(f, pos, SEEK_SET) || fread(h, 1, 8, f) != 8)
                break;
            int64_t end = pos + 8 + rd_le32(h + 4);
            if (end > size) {
                trunc = 1, *declared = end;
                goto done;
            }
            pos = end + (end & 1);
        }
        /* AVI > 1 GB continues in further RIFF AVIX chunks. */
        pos = 0;
        for (int i = 0; i < 4096 && pos + 8 <= size; i++) {
            if (fseeko(f, pos, SEEK_SET) || fread(h, 1, 8, f) != 8 ||
                memcmp(h, "RIFF", 4))
                break;
            int64_t end = pos + 8 + rd_le32(h + 4);
            if (end > size) {
                trunc = 1, *declared = end;
                break;
            }
            pos = end + (end & 1);
        }
    } else if (!memcmp(h + 4, "ftyp", 4) || !memcmp(h + 4, "moov", 4) ||
               !memcmp(h + 4, "mdat", 4) || !memcmp(h + 4, "wide", 4) ||
               !memcmp(h + 4, "free", 4)) {
        int64_t pos = 0;
        for (int i = 0; i < 4096 && pos + 8 <= size; i++) {
            if (fseeko(f, pos, SEEK_SET) || fread(h, 1, 8, f) != 8)
                break;
            uint64_t bs = rd_be(h, 4);
            if (bs == 1) {
                if (fread(h + 8, 1, 8, f) != 8)
                    break;
                bs = rd_be(h + 8, 8);
            } else if (bs == 0) {
                break; /* box runs to the end of the file */
            }
            if (bs < 8 || bs > (uint64_t)INT64_MAX / 2)
                break;
            int64_t end = pos + (int64_t)bs;
            if (end > size) {
                trunc = 1, *declared = end;
                break;
            }
            pos = end;
        }
    } else if (rd_be(h, 4) == 0x1A45DFA3) {
        int64_t pos = 4;
        int64_t hs = ebml_vint(f, &pos, 1);
        if (hs < 0)
            goto done;
        pos += hs;
        int64_t id = ebml_vint(f, &pos, 0);
        if (id != 0x18538067) /* Segment, with its length marker kept */
            goto done;
        int64_t ss = ebml_vint(f, &pos, 1);
        if (ss >= 0 && pos + ss > size)
            trunc = 1, *declared = pos + ss;
    }
done:
    fclose(f);
    return trunc;
}

/* ==== Resizing =========================================================== */

/* Antialiased bilinear (a triangle filter widened by the scale factor when
 * shrinking, as PIL and torchvision's antialias=True do), separable, in
 * 14-bit fixed point so results are the same on every run and thread count.
 * It runs after an unscaled swscale YUV->RGB conversion: swscale's own
 * scalers take 0.5-1 ms per 320x240 frame for odd output widths such as 171
 * (no SIMD path), this takes a fraction of that. */
#define RS_BITS 14

typedef struct {
    int in, out;
    int taps;        /* per output pixel (the widest support) */
    int *start;      /* (out) first input index; start + taps <= in */
    int16_t *w;      /* (out, taps) weights summing to 1 << RS_BITS */
} resize_axis;

static void axis_free(resize_axis *a)
{
    free(a->start);
    free(a->w);
    memset(a, 0, sizeof *a);
}

static int axis_init(resize_axis *a, int in, int out)
{
    axis_free(a);
    double scale = (double)in / out;
    double support = scale > 1 ? scale : 1; /* triangle half-width, input px */
    /* Inputs j with |j + 0.5 - center| < support have a non-zero weight. */
    int taps = 1;
    for (int i = 0; i < out; i++) {
        double center = (i + 0.5) * scale;
        int lo = (int)floor(center - support - 0.5) + 1;
        int hi = (int)ceil(center + support - 0.5);
        lo = lo < 0 ? 0 : lo;
        hi = hi > in ? in : hi;
        if (hi - lo > taps)
            taps = hi - lo;
    }
    a->in = in, a->out = out, a->taps = taps;
    a->start = malloc((size_t)out * sizeof *a->start);
    a->w = calloc((size_t)out * taps, sizeof *a->w);
    double *wd = malloc((size_t)taps * sizeof *wd);
    if (!a->start || !a->w || !wd) {
        free(wd);
        axis_free(a);
        return -1;
    }
    for (int i = 0; i < out; i++) {
        double center = (i + 0.5) * scale;
        int lo = (int)floor(center - support - 0.5) + 1;
        int hi = (int)ceil(center + support - 0.5);
        lo = lo < 0 ? 0 : lo;
        hi = hi > in ? in : hi;
        int n = hi - lo;
        double sum = 0;
        for (int k = 0; k < n; k++) {
            double x = (lo + k + 0.5 - center) / support;
            wd[k] = 1 - fabs(x);
            sum += wd[k];
        }
        if (n < 1 || sum <= 0) { /* cannot happen for in, out >= 1 */
            lo = (int)center < in ? (int)center : in - 1;
            n = 1, wd[0] = sum = 1;
        }
        /* Slide the window left at the right edge so it stays inside. */
        int shift = lo + taps > in ? lo + taps - in : 0;
        a->start[i] = lo - shift;
        int16_t *w = a->w + (size_t)i * taps + shift;
        int32_t acc = 0;
        int kmax = 0;
        for (int k = 0; k < n; k++) {
            w[k] = (int16_t)lround(wd[k] / sum * (1 << RS_BITS));
            acc += w[k];
            if (w[k] > w[kmax])
                kmax = k;
        }
        /* Rounding leftovers go to the largest tap: flat stays flat. */
        w[kmax] = (int16_t)(w[kmax] + (1 << RS_BITS) - acc);
    }
    free(wd);
    return 0;
}

static inline uint8_t clamp_px(int32_t v)
{
    v = (v + (1 << (RS_BITS - 1))) >> RS_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* One row through the horizontal filter. */
static inline __attribute__((always_inline)) void
hpass(const resize_axis *ax, const uint8_t *row, uint8_t *o, int taps)
{
    for (int i = 0; i < ax->out; i++) {
        const uint8_t *p = row + (size_t)ax->start[i] * 3;
        const int16_t *w = ax->w + (size_t)i * taps;
        int32_t r = 0, g = 0, b = 0;
        for (int k = 0; k < taps; k++, p += 3) {
            r += p[0] * w[k];
            g += p[1] * w[k];
            b += p[2] * w[k];
        }
        o[3 * i] = clamp_px(r);
        o[3 * i + 1] = clamp_px(g);
        o[3 * i + 2] = clamp_px(b);
    }
}

/* src (ay.in, ax.in, 3) -> dst (ay.out, ax.out, 3). Rows first, through
 * tmp (ay.out, ax.in, 3) and acc (ax.in * 3): the row pass runs over whole
 * contiguous rows (vectorised), and the column pass, which is not, then has
 * only the output rows to do. */
static void resize_rgb(const resize_axis *ax, const resize_axis *ay,
                       const uint8_t *src, uint8_t *tmp, int32_t *acc,
                       uint8_t *dst)
{
    int iw = ax->in, ow = ax->out, oh = ay->out;
    int rl = iw * 3;
    for (int j = 0; j < oh; j++) {
        const int16_t *w = ay->w + (size_t)j * ay->taps;
        const uint8_t *col = src + (size_t)ay->start[j] * rl;
        for (int i = 0; i < rl; i++)
            acc[i] = 0;
        for (int k = 0; k < ay->taps; k++) {
            const uint8_t *r = col + (size_t)k * rl;
            int16_t wk = w[k];
            if (!wk)
                continue;
            for (int i = 0; i < rl; i++)
                acc[i] += (int16_t)r[i] * wk;
        }
        uint8_t *o = tmp + (size_t)j * rl;
        for (int i = 0; i < rl; i++)
            o[i] = clamp_px(acc[i]);
    }
    for (int y = 0; y < oh; y++)
        switch (ax->taps) { /* constant tap counts unroll: 2x faster */
        case 2: hpass(ax, tmp + (size_t)y * rl, dst + (size_t)y * ow * 3, 2); break;
        case 3: hpass(ax, tmp + (size_t)y * rl, dst + (size_t)y * ow * 3, 3); break;
        case 4: hpass(ax, tmp + (size_t)y * rl, dst + (size_t)y * ow * 3, 4); break;
        case 5: hpass(ax, tmp + (size_t)y * rl, dst + (size_t)y * ow * 3, 5); break;
        default:
            hpass(ax, tmp + (size_t)y * rl, dst + (size_t)y * ow * 3, ax->taps);
        }
}

/* ==== Decoding =========================================================== */

typedef struct {
    const char *path;
    const vt_decode_opts *o;
    AVStream *st;
    struct SwsContext *sws;
    int sws_w, sws_h, sws_fmt, sws_range, sws_cs; /* what sws was built for */
    int out_w, out_h;
    /* Resizing: RGB at the source size, the horizontally resized rows, and
     * the filter of each axis (built for sws_w x sws_h). */
    uint8_t *rgb, *tmp;
    int32_t *acc;
    resize_axis ax, ay;
    double src_fps, out_fps;
    /* Resampling state: the previous picture (and its time), the index of
     * the next output instant, the time of the first picture. */
    AVFrame *prev;
    double t_prev, t0;
    double t_start; /* o->start_time on the stream's clock */
    int have_prev;
    long next_k;
    /* Output frames. */
    uint8_t *data;
    size_t cap, n;
    int done; /* max_frames reached */
} dec_state;

static int full_range(const AVFrame *fr)
{
    switch (fr->format) {
    case AV_PIX_FMT_YUVJ420P:
    case AV_PIX_FMT_YUVJ422P:
    case AV_PIX_FMT_YUVJ444P:
    case AV_PIX_FMT_YUVJ440P:
    case AV_PIX_FMT_YUVJ411P:
        return 1;
    default:
        return fr->color_range == AVCOL_RANGE_JPEG;
    }
}

static void out_size(const dec_state *s, int w, int h, int *ow, int *oh)
{
    const vt_decode_opts *o = s->o;
    if (o->width > 0 && o->height > 0) {
        *ow = o->width, *oh = o->height;
    } else if (o->width > 0) {
        *ow = o->width, *oh = (int)lround((double)h * o->width / w);
    } else if (o->height > 0) {
        *oh = o->height, *ow = (int)lround((double)w * o->height / h);
    } else if (o->short_side > 0) {
        if (w <= h)
            *ow = o->short_side, *oh = (int)lround((double)h * o->short_side / w);
        else
            *oh = o->short_side, *ow = (int)lround((double)w * o->short_side / h);
    } else {
        *ow = w, *oh = h;
    }
    if (*ow < 1)
        *ow = 1;
    if (*oh < 1)
        *oh = 1;
}

/* Converts fr to RGB24 and appends it to the output. */
static int emit(dec_state *s, const AVFrame *fr, char *err, size_t errlen)
{
    if (s->done)
        return 0;
    if (!s->out_w)
        out_size(s, fr->width, fr->height, &s->out_w, &s->out_h);
    if (s->out_w > MAX_DIM || s->out_h > MAX_DIM) {
        set_err(err, errlen, s->path, "output size %dx%d is too large",
                s->out_w, s->out_h);
        return -1;
    }
    int range = full_range(fr);
    int cs = fr->colorspace == AVCOL_SPC_UNSPECIFIED ? SWS_CS_DEFAULT
                                                     : (int)fr->colorspace;
    int same = s->out_w == fr->width && s->out_h == fr->height;
    if (!s->sws || fr->width != s->sws_w || fr->height != s->sws_h ||
        fr->format != s->sws_fmt || range != s->sws_range || cs != s->sws_cs) {
        /* Unscaled: swscale's fast YUV->RGB path. */
        sws_freeContext(s->sws);
        s->sws = sws_getContext(fr->width, fr->height, fr->format, fr->width,
                                fr->height, AV_PIX_FMT_RGB24, SWS_BILINEAR, NULL,
                                NULL, NULL);
        if (!s->sws) {
            const char *name = av_get_pix_fmt_name(fr->format);
            set_err(err, errlen, s->path, "cannot convert pixel format %s",
                    name ? name : "(unknown)");
            return -1;
        }
        /* yuvj formats are full range by definition and swscale knows it;
         * other formats carry their range and matrix in the frame. */
        sws_setColorspaceDetails(s->sws, sws_getCoefficients(cs), range,
                                 sws_getCoefficients(SWS_CS_DEFAULT), 1, 0,
                                 1 << 16, 1 << 16);
        if (!same && (axis_init(&s->ax, fr->width, s->out_w) ||
                      axis_init(&s->ay, fr->height, s->out_h))) {
            set_err(err, errlen, s->path, "out of memory");
            return -1;
        }
        free(s->rgb);
        free(s->tmp);
        free(s->acc);
        s->rgb = s->tmp = NULL;
        s->acc = NULL;
        if (!same) {
            s->rgb = malloc((size_t)fr->width * fr->height * 3 + SWS_PAD);
            s->tmp = malloc((size_t)s->out_h * fr->width * 3);
            s->acc = malloc((size_t)fr->width * 3 * sizeof *s->acc);
            if (!s->rgb || !s->tmp || !s->acc) {
                set_err(err, errlen, s->path, "out of memory");
                return -1;
            }
        }
        s->sws_w = fr->width, s->sws_h = fr->height, s->sws_fmt = fr->format;
        s->sws_range = range, s->sws_cs = cs;
    }
    size_t fsz = (size_t)s->out_w * s->out_h * 3;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        if (s->o->max_frames > 0 && cap > (size_t)s->o->max_frames)
            cap = (size_t)s->o->max_frames;
        uint8_t *d = realloc(s->data, cap * fsz + SWS_PAD);
        if (!d) {
            set_err(err, errlen, s->path, "out of memory after %zu frames", s->n);
            return -1;
        }
        s->data = d, s->cap = cap;
    }
    uint8_t *out = s->data + s->n * fsz;
    uint8_t *dst[4] = {same ? out : s->rgb, NULL, NULL, NULL};
    int dst_stride[4] = {fr->width * 3, 0, 0, 0};
    sws_scale(s->sws, (const uint8_t *const *)fr->data, fr->linesize, 0,
              fr->height, dst, dst_stride);
    if (!same)
        resize_rgb(&s->ax, &s->ay, s->rgb, s->tmp, s->acc, out);
    s->n++;
    if (s->o->max_frames > 0 && s->n >= (size_t)s->o->max_frames)
        s->done = 1;
    return 0;
}

/* Takes a decoded picture: either keeps every one (from the start time on),
 * or emits, for each output instant t0 + k / fps up to this picture's time,
 * the nearer of the previous and this picture. Pictures without a usable
 * time stamp (missing, or not after the previous one) are placed one source
 * frame after it. */
static int take(dec_state *s, AVFrame *fr, char *err, size_t errlen)
{
    int64_t ts = fr->best_effort_timestamp;
    double t = ts == AV_NOPTS_VALUE ? NAN : ts * av_q2d(s->st->time_base);
    int from_start = s->o->start_time > 0;
    if (!s->have_prev) {
        if (isnan(t))
            t = from_start ? s->t_start : 0;
        s->t0 = from_start ? s->t_start : t;
    } else if (isnan(t) || t <= s->t_prev) {
        t = s->t_prev + 1.0 / s->src_fps;
    }
    if (s->o->fps <= 0) {
        s->t_prev = t;
        s->have_prev = 1;
        /* The frame nearest to the start time and everything after it. */
        if (from_start && t <= s->t_start - 0.5 / s->src_fps)
            return 0;
        return emit(s, fr, err, errlen);
    }
    const double eps = 1e-9;
    for (;;) {
        double tk = s->t0 + (double)s->next_k / s->out_fps;
        if (tk > t + eps || s->done)
            break;
        /* Ties go to the earlier picture. */
        const AVFrame *pick =
            s->have_prev && tk - s->t_prev <= t - tk + eps ? s->prev : fr;
        if (emit(s, pick, err, errlen))
            return -1;
        s->next_k++;
    }
    av_frame_unref(s->prev);
    av_frame_move_ref(s->prev, fr);
    s->t_prev = t;
    s->have_prev = 1;
    return 0;
}

/* After the last picture: its display lasts one source frame, so output
 * instants before t_last + 1 / src_fps still show it. */
static int finish(dec_state *s, char *err, size_t errlen)
{
    if (s->o->fps <= 0 || !s->have_prev)
        return 0;
    double end = s->t_prev + 1.0 / s->src_fps;
    for (;;) {
        double tk = s->t0 + (double)s->next_k / s->out_fps;
        if (tk >= end - 1e-9 || s->done)
            break;
        if (emit(s, s->prev, err, errlen))
            return -1;
        s->next_k++;
    }
    return 0;
}

/* Pulls every available picture out of the decoder. Returns -1 on a fatal
 * (our) error, else the number of decoder errors seen (0 or 1). */
static int drain(dec_state *s, AVCodecContext *dec, AVFrame *fr, int *got,
                 char *err, size_t errlen)
{
    for (;;) {
        int r = avcodec_receive_frame(dec, fr);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
            return 0;
        if (r < 0)
            return 1;
        (*got)++;
        int e = take(s, fr, err, errlen);
        av_frame_unref(fr);
        if (e)
            return -1;
        if (s->done)
            return 0;
    }
}

static int text_art(enum AVCodecID id)
{
    /* FFmpeg shows text files with these extensions as ANSI art "video". */
    return id == AV_CODEC_ID_ANSI || id == AV_CODEC_ID_BINTEXT ||
           id == AV_CODEC_ID_XBIN || id == AV_CODEC_ID_IDF;
}

int vt_video_decode(const char *path, const vt_decode_opts *o, vt_frames *out,
                    char *err, size_t errlen)
{
    pthread_once(&log_once, quiet_log);
    memset(out, 0, sizeof *out);
    vt_decode_opts defaults = {0};
    if (!o)
        o = &defaults;
    if (!path) {
        set_err(err, errlen, "(null)", "no file name");
        return -1;
    }
    if (o->width < 0 || o->height < 0 || o->short_side < 0 || o->max_frames < 0 ||
        o->threads < 0 || !(o->fps >= 0) || o->fps > 1e4 || !(o->start_time >= 0) ||
        o->start_time > 1e9 || o->width > MAX_DIM ||
        o->height > MAX_DIM || o->short_side > MAX_DIM) {
        set_err(err, errlen, path, "invalid decode options");
        return -1;
    }

    AVFormatContext *fmt = NULL;
    AVCodecContext *dec = NULL;
    AVPacket *pkt = NULL;
    AVFrame *fr = NULL;
    AVDictionary *dict = NULL;
    char *url = NULL;
    char eb[AV_ERROR_MAX_STRING_SIZE];
    dec_state s = {.path = path, .o = o};
    int ret = -1;

    struct stat sb;
    if (stat(path, &sb)) {
        set_err(err, errlen, path, "%s", strerror(errno));
        return -1;
    }
    if (S_ISDIR(sb.st_mode)) {
        set_err(err, errlen, path, "is a directory");
        return -1;
    }
    if (sb.st_size == 0) {
        set_err(err, errlen, path, "empty file");
        return -1;
    }
    int64_t declared = 0, actual = 0;
    int truncated = container_truncated(path, &declared, &actual);
    if (truncated && !o->allow_truncated) {
        set_err(err, errlen, path,
                "truncated (the container declares %lld bytes, the file has %lld)",
                (long long)declared, (long long)actual);
        return -1;
    }

    /* "file:" so that a name containing ':' is never taken for a protocol;
     * the whitelist keeps playlists from reaching out to the network. */
    size_t ul = strlen(path) + 6;
    url = malloc(ul);
    if (!url) {
        set_err(err, errlen, path, "out of memory");
        return -1;
    }
    snprintf(url, ul, "file:%s", path);
    av_dict_set(&dict, "protocol_whitelist", "file", 0);
    int r = avformat_open_input(&fmt, url, NULL, &dict);
    av_dict_free(&dict);
    if (r < 0) {
        set_err(err, errlen, path, "not a readable media file (%s)",
                averr(r, eb, sizeof eb));
        goto fail;
    }
    /* Stream info costs a few decoded frames; containers whose header names
     * the video codec and size (AVI, MP4, MKV) do not need it. */
    int need_info = (fmt->ctx_flags & AVFMTCTX_NOHEADER) || fmt->nb_streams == 0;
    for (unsigned i = 0; i < fmt->nb_streams && !need_info; i++) {
        AVCodecParameters *p = fmt->streams[i]->codecpar;
        if (p->codec_type == AVMEDIA_TYPE_VIDEO &&
            (p->codec_id == AV_CODEC_ID_NONE || p->width <= 0 || p->height <= 0))
            need_info = 1;
    }
    if (need_info && (r = avformat_find_stream_info(fmt, NULL)) < 0) {
        set_err(err, errlen, path, "cannot read stream information (%s)",
                averr(r, eb, sizeof eb));
        goto fail;
    }
    const AVCodec *codec = NULL;
    int vs = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (vs >= 0 && (fmt->streams[vs]->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
        /* Cover art of an audio file is a one-picture "video stream". */
        vs = AVERROR_STREAM_NOT_FOUND;
        for (unsigned i = 0; i < fmt->nb_streams; i++) {
            AVStream *st = fmt->streams[i];
            if (st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
                !(st->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
                vs = (int)i;
                codec = avcodec_find_decoder(st->codecpar->codec_id);
                break;
            }
        }
    }
    if (vs == AVERROR_STREAM_NOT_FOUND) {
        set_err(err, errlen, path, "no video stream");
        goto fail;
    }
    if (vs < 0 || !codec) {
        enum AVCodecID id = vs >= 0 ? fmt->streams[vs]->codecpar->codec_id
                                    : AV_CODEC_ID_NONE;
        set_err(err, errlen, path, "no decoder for the video codec %s",
                avcodec_get_name(id));
        goto fail;
    }
    s.st = fmt->streams[vs];
    if (text_art(codec->id)) {
        set_err(err, errlen, path, "not a video (text file)");
        goto fail;
    }
    for (unsigned i = 0; i < fmt->nb_streams; i++)
        if ((int)i != vs)
            fmt->streams[i]->discard = AVDISCARD_ALL;

    dec = avcodec_alloc_context3(codec);
    if (!dec || avcodec_parameters_to_context(dec, s.st->codecpar) < 0) {
        set_err(err, errlen, path, "cannot set up the %s decoder", codec->name);
        goto fail;
    }
    dec->pkt_timebase = s.st->time_base;
    dec->thread_count = o->threads > 1 ? o->threads : 1;
    if ((r = avcodec_open2(dec, codec, NULL)) < 0) {
        set_err(err, errlen, path, "cannot open the %s decoder (%s)", codec->name,
                averr(r, eb, sizeof eb));
        goto fail;
    }

    AVRational fr_guess = av_guess_frame_rate(fmt, s.st, NULL);
    s.src_fps = fr_guess.num > 0 && fr_guess.den > 0 ? av_q2d(fr_guess) : 0;
    if (!(s.src_fps > 0 && s.src_fps < 1000))
        s.src_fps = 25; /* a guess: it only places pictures without time
                         * stamps and sets how long the last one lasts */
    s.out_fps = o->fps > 0 ? o->fps : s.src_fps;
    if (o->start_time > 0) {
        /* Seek to the last keyframe before the start, decode from there and
         * drop what precedes the start. If the container cannot seek, the
         * whole beginning is decoded and dropped: slower, same frames. */
        AVRational tb = s.st->time_base;
        int64_t st0 = s.st->start_time != AV_NOPTS_VALUE ? s.st->start_time : 0;
        s.t_start = st0 * av_q2d(tb) + o->start_time;
        int64_t target = st0 + (int64_t)llround(o->start_time / av_q2d(tb));
        av_seek_frame(fmt, vs, target, AVSEEK_FLAG_BACKWARD);
    }

    pkt = av_packet_alloc();
    fr = av_frame_alloc();
    s.prev = av_frame_alloc();
    if (!pkt || !fr || !s.prev) {
        set_err(err, errlen, path, "out of memory");
        goto fail;
    }

    int got = 0, consecutive = 0, since_frame = 0, n_pkts = 0, last_err = 0;
    int read_err = 0, cut_packet = 0;
    while (!s.done) {
        r = av_read_frame(fmt, pkt);
        if (r == AVERROR(EAGAIN)) {
            if (++consecutive > MAX_CONSECUTIVE_ERRORS)
                break;
            continue;
        }
        if (r < 0) {
            if (r != AVERROR_EOF)
                read_err = r;
            break;
        }
        if (pkt->stream_index != vs) {
            av_packet_unref(pkt);
            continue;
        }
        n_pkts++;
        /* Only the last packet being cut means truncation; damaged packets
         * in the middle are the decoder's business. */
        cut_packet = (pkt->flags & AV_PKT_FLAG_CORRUPT) != 0;
        int before = got;
        r = avcodec_send_packet(dec, pkt);
        if (r == AVERROR(EAGAIN)) {
            /* Output was pending: take it, then the packet fits. */
            int d = drain(&s, dec, fr, &got, err, errlen);
            if (d < 0)
                goto fail;
            r = avcodec_send_packet(dec, pkt);
        }
        av_packet_unref(pkt);
        int bad = r < 0 && r != AVERROR(EAGAIN);
        if (bad)
            last_err = r;
        int d = drain(&s, dec, fr, &got, err, errlen);
        if (d < 0)
            goto fail;
        bad |= d;
        consecutive = bad ? consecutive + 1 : 0;
        since_frame = got > before ? 0 : since_frame + 1;
        if (consecutive > MAX_CONSECUTIVE_ERRORS ||
            since_frame > MAX_PACKETS_WITHOUT_FRAME)
            break;
    }
    if (!s.done) {
        /* Flush the frames the decoder still holds (B-frames, threads). */
        if (avcodec_send_packet(dec, NULL) >= 0 &&
            drain(&s, dec, fr, &got, err, errlen) < 0)
            goto fail;
    }
    if (finish(&s, err, errlen))
        goto fail;

    if (got == 0) {
        if (n_pkts == 0)
            set_err(err, errlen, path, "the video stream holds no data%s%s",
                    read_err ? ": " : "", read_err ? averr(read_err, eb, sizeof eb) : "");
        else
            set_err(err, errlen, path, "no frame decodes (%d packets%s%s)", n_pkts,
                    last_err ? ", " : "", last_err ? averr(last_err, eb, sizeof eb) : "");
        goto fail;
    }
    if (!s.done && (cut_packet || read_err))
        truncated = 1;
    if (truncated && !o->allow_truncated) {
        set_err(err, errlen, path, "truncated (%s after %d frames)",
                cut_packet ? "the last packet is cut short"
                           : averr(read_err, eb, sizeof eb),
                got);
        goto fail;
    }

    out->data = s.data;
    s.data = NULL;
    out->n = (int)s.n;
    out->h = s.out_h;
    out->w = s.out_w;
    out->fps = s.out_fps;
    out->src_w = s.sws_w;
    out->src_h = s.sws_h;
    out->src_fps = s.src_fps;
    out->truncated = truncated;
    if (out->n == 0) {
        set_err(err, errlen, path, "no frame at or after the start time %.3f s "
                "(the video ends at %.3f s)", o->start_time,
                s.t_prev - (s.st->start_time != AV_NOPTS_VALUE
                                ? s.st->start_time * av_q2d(s.st->time_base) : 0) +
                    1.0 / s.src_fps);
        goto fail;
    }
    ret = 0;
fail:
    free(url);
    free(s.data);
    sws_freeContext(s.sws);
    free(s.rgb);
    free(s.tmp);
    free(s.acc);
    axis_free(&s.ax);
    axis_free(&s.ay);
    av_frame_free(&s.prev);
    av_frame_free(&fr);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    return ret;
}

void vt_frames_free(vt_frames *f)
{
    if (!f)
        return;
    free(f->data);
    f->data = NULL;
    f->n = 0;
}

/* ==== Encoding =========================================================== */

static const AVCodec *pick_encoder(const char *name, const AVOutputFormat *of)
{
    if (!name)
        name = avcodec_get_name(of->video_codec);
    if (!strcmp(name, "h264") || !strcmp(name, "libx264")) {
        const AVCodec *c = avcodec_find_encoder_by_name("libx264");
        return c ? c : avcodec_find_encoder(AV_CODEC_ID_H264);
    }
    const AVCodec *c = avcodec_find_encoder_by_name(name);
    if (!c) {
        const AVCodecDescriptor *d = avcodec_descriptor_get_by_name(name);
        if (d)
            c = avcodec_find_encoder(d->id);
    }
    return c && c->type == AVMEDIA_TYPE_VIDEO ? c : NULL;
}

static enum AVPixelFormat pick_pix_fmt(const AVCodec *c)
{
    if (!c->pix_fmts)
        return AV_PIX_FMT_YUV420P;
    /* MJPEG lists yuv420p too, but only for non-standard (limited range)
     * files that strict decoders reject. */
    enum AVPixelFormat pref[2] = {AV_PIX_FMT_YUV420P, AV_PIX_FMT_YUVJ420P};
    if (c->id == AV_CODEC_ID_MJPEG)
        pref[0] = AV_PIX_FMT_YUVJ420P, pref[1] = AV_PIX_FMT_YUV420P;
    for (size_t k = 0; k < sizeof pref / sizeof pref[0]; k++)
        for (const enum AVPixelFormat *p = c->pix_fmts; *p != AV_PIX_FMT_NONE; p++)
            if (*p == pref[k])
                return *p;
    return c->pix_fmts[0];
}

static int write_packets(AVCodecContext *enc, AVFormatContext *oc, AVStream *st,
                         AVPacket *pkt)
{
    for (;;) {
        int r = avcodec_receive_packet(enc, pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
            return 0;
        if (r < 0)
            return r;
        av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
        pkt->stream_index = st->index;
        r = av_interleaved_write_frame(oc, pkt);
        if (r < 0)
            return r;
    }
}

int vt_video_encode(const char *path, const char *codec, const uint8_t *rgb,
                    int n, int h, int w, int fps, char *err, size_t errlen)
{
    pthread_once(&log_once, quiet_log);
    if (!path || !rgb || n < 1 || h < 2 || w < 2 || h > MAX_DIM || w > MAX_DIM ||
        fps < 1 || fps > 1000) {
        set_err(err, errlen, path ? path : "(null)",
                "invalid encode arguments (%d frames of %dx%d at %d fps)", n, w, h, fps);
        return -1;
    }
    AVFormatContext *oc = NULL;
    AVCodecContext *enc = NULL;
    AVFrame *fr = NULL;
    AVPacket *pkt = NULL;
    struct SwsContext *sws = NULL;
    AVDictionary *opts = NULL;
    char eb[AV_ERROR_MAX_STRING_SIZE];
    int ret = -1, opened = 0, header = 0;

    int r = avformat_alloc_output_context2(&oc, NULL, NULL, path);
    if (r < 0 || !oc) {
        set_err(err, errlen, path, "no container for this file name extension");
        goto fail;
    }
    const AVCodec *c = pick_encoder(codec, oc->oformat);
    if (!c) {
        set_err(err, errlen, path, "no encoder for '%s'", codec ? codec : "(default)");
        goto fail;
    }
    AVStream *st = avformat_new_stream(oc, NULL);
    enc = avcodec_alloc_context3(c);
    pkt = av_packet_alloc();
    fr = av_frame_alloc();
    if (!st || !enc || !pkt || !fr) {
        set_err(err, errlen, path, "out of memory");
        goto fail;
    }
    enc->width = w;
    enc->height = h;
    enc->time_base = (AVRational){1, fps};
    enc->framerate = (AVRational){fps, 1};
    enc->pix_fmt = pick_pix_fmt(c);
    enc->gop_size = 12;
    enc->max_b_frames = 0;
    /* One thread and bit-exact mode: the same frames make the same file. */
    enc->thread_count = 1;
    enc->flags |= AV_CODEC_FLAG_BITEXACT;
    int jpeg_range = enc->pix_fmt == AV_PIX_FMT_YUVJ420P;
    enc->color_range = jpeg_range ? AVCOL_RANGE_JPEG : AVCOL_RANGE_MPEG;
    enc->colorspace = AVCOL_SPC_BT470BG;
    enc->color_primaries = AVCOL_PRI_BT470BG;
    enc->color_trc = AVCOL_TRC_GAMMA28;
    if (c->id == AV_CODEC_ID_MPEG4 || c->id == AV_CODEC_ID_MJPEG) {
        /* Constant quantiser 3: close to what XviD gives UCF101, and
         * independent of the (small) default bit rate. */
        enc->flags |= AV_CODEC_FLAG_QSCALE;
        enc->global_quality = FF_QP2LAMBDA * 3;
    }
    if (c->id == AV_CODEC_ID_MPEG4 && !strcmp(oc->oformat->name, "avi"))
        enc->codec_tag = MKTAG('X', 'V', 'I', 'D');
    if (c->id == AV_CODEC_ID_H264) {
        av_dict_set(&opts, "crf", "18", 0);
        av_dict_set(&opts, "preset", "veryfast", 0);
    }
    if (oc->oformat->flags & AVFMT_GLOBALHEADER)
        enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if ((r = avcodec_open2(enc, c, &opts)) < 0) {
        set_err(err, errlen, path, "cannot open the %s encoder for %dx%d (%s)",
                c->name, w, h, averr(r, eb, sizeof eb));
        goto fail;
    }
    if ((r = avcodec_parameters_from_context(st->codecpar, enc)) < 0) {
        set_err(err, errlen, path, "cannot set stream parameters");
        goto fail;
    }
    st->time_base = enc->time_base;
    st->avg_frame_rate = enc->framerate;
    oc->flags |= AVFMT_FLAG_BITEXACT;
    if ((r = avio_open(&oc->pb, path, AVIO_FLAG_WRITE)) < 0) {
        set_err(err, errlen, path, "cannot create (%s)", averr(r, eb, sizeof eb));
        goto fail;
    }
    opened = 1;
    if ((r = avformat_write_header(oc, NULL)) < 0) {
        set_err(err, errlen, path, "cannot write the header (%s)",
                averr(r, eb, sizeof eb));
        goto fail;
    }
    header = 1;

    fr->format = enc->pix_fmt;
    fr->width = w;
    fr->height = h;
    fr->color_range = enc->color_range;
    fr->colorspace = enc->colorspace;
    if (av_frame_get_buffer(fr, 0) < 0) {
        set_err(err, errlen, path, "out of memory");
        goto fail;
    }
    sws = sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, enc->pix_fmt,
                         SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP,
                         NULL, NULL, NULL);
    if (!sws) {
        set_err(err, errlen, path, "cannot convert RGB24 to %s",
                av_get_pix_fmt_name(enc->pix_fmt));
        goto fail;
    }
    const int *coef = sws_getCoefficients(SWS_CS_ITU601);
    sws_setColorspaceDetails(sws, coef, 1, coef, jpeg_range, 0, 1 << 16, 1 << 16);
    size_t fsz = (size_t)w * h * 3;
    for (int i = 0; i < n; i++) {
        if (av_frame_make_writable(fr) < 0) {
            set_err(err, errlen, path, "out of memory");
            goto fail;
        }
        const uint8_t *src[4] = {rgb + i * fsz, NULL, NULL, NULL};
        int src_stride[4] = {w * 3, 0, 0, 0};
        sws_scale(sws, src, src_stride, 0, h, fr->data, fr->linesize);
        fr->pts = i;
        if ((r = avcodec_send_frame(enc, fr)) < 0 ||
            (r = write_packets(enc, oc, st, pkt)) < 0) {
            set_err(err, errlen, path, "encoding frame %d failed (%s)", i,
                    averr(r, eb, sizeof eb));
            goto fail;
        }
    }
    if ((r = avcodec_send_frame(enc, NULL)) < 0 ||
        (r = write_packets(enc, oc, st, pkt)) < 0) {
        set_err(err, errlen, path, "flushing the encoder failed (%s)",
                averr(r, eb, sizeof eb));
        goto fail;
    }
    if ((r = av_write_trailer(oc)) < 0) {
        set_err(err, errlen, path, "cannot finish the file (%s)",
                averr(r, eb, sizeof eb));
        goto fail;
    }
    header = 0;
    if ((r = avio_closep(&oc->pb)) < 0) {
        opened = 0;
        set_err(err, errlen, path, "write error (%s)", averr(r, eb, sizeof eb));
        unlink(path);
        goto fail;
    }
    opened = 0;
    ret = 0;
fail:
    if (opened) {
        if (header)
            av_write_trailer(oc);
        avio_closep(&oc->pb);
        unlink(path); /* never leave a half-written video behind */
    }
    av_dict_free(&opts);
    sws_freeContext(sws);
    av_frame_free(&fr);
    av_packet_free(&pkt);
    avcodec_free_context(&enc);
    avformat_free_context(oc);
    return ret;
}
