/* test_video.c - FFmpeg decoding and encoding (vt_video.h), broken files,
 * and the synthetic dataset (vt_synth.h, vsynth).
 *
 * Every file is made inside the test, in a mkdtemp directory: with
 * vt_video_encode, with the ffmpeg program when it is installed (that part
 * is skipped with a message otherwise), or byte by byte. Frame counts are
 * compared with what ffprobe decodes (-count_frames). */
#define _XOPEN_SOURCE 700 /* nftw */
#include "vt_test.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libavformat/avformat.h>

#include "vt_synth.h"
#include "vt_video.h"

/* ==== Helpers ============================================================ */

static char tmpdir[512];

static void make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/vt_video_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_msg(mkdtemp(tmpdir) != NULL, "mkdtemp failed");
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb, (void)flag, (void)f;
    return remove(p);
}
static void remove_tmpdir(void)
{
    if (tmpdir[0])
        nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    tmpdir[0] = '\0';
}

static const char *tpath(char *buf, const char *name)
{
    snprintf(buf, 1024, "%s/%s", tmpdir, name);
    return buf;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int have_program(const char *name)
{
    /* Starting ffmpeg costs ~0.1 s of dynamic linking: ask once. */
    static char asked[4][16];
    static int answer[4], n_asked;
    for (int i = 0; i < n_asked; i++)
        if (!strcmp(asked[i], name))
            return answer[i];
    char cmd[256];
    snprintf(cmd, sizeof cmd, "%s -version >/dev/null 2>&1", name);
    int ok = system(cmd) == 0;
    if (n_asked < 4 && strlen(name) < sizeof asked[0]) {
        strcpy(asked[n_asked], name);
        answer[n_asked++] = ok;
    }
    return ok;
}

/* Runs ffmpeg quietly; 0 on success. */
static int ffmpeg(const char *args, const char *out)
{
    char cmd[4096];
    if (snprintf(cmd, sizeof cmd, "ffmpeg -nostdin -v error -y %s '%s' >/dev/null 2>&1", args,
                 out) >= (int)sizeof cmd)
        return -1;
    return system(cmd);
}

/* The number of frames ffprobe decodes from the first video stream, or -1. */
static int ffprobe_count(const char *path)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
             "stream=nb_read_frames -of csv=p=0 '%s' 2>/dev/null", path);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    int n = -1;
    if (fscanf(p, "%d", &n) != 1)
        n = -1;
    pclose(p);
    return n;
}

/* A smooth, moving, colourful test pattern (n, h, w, 3). */
static uint8_t *pattern(int n, int h, int w)
{
    uint8_t *d = malloc((size_t)n * h * w * 3);
    for (int t = 0; t < n; t++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                uint8_t *p = d + (((size_t)t * h + y) * w + x) * 3;
                double bx = w * (0.3 + 0.01 * t), by = h * 0.5;
                double blob = exp(-((x - bx) * (x - bx) + (y - by) * (y - by)) / (0.02 * w * w));
                p[0] = (uint8_t)(40 + 150.0 * x / w + 60 * blob);
                p[1] = (uint8_t)(30 + 180.0 * y / h);
                p[2] = (uint8_t)(200 - 150 * blob);
            }
    return d;
}

static double psnr(const uint8_t *a, const uint8_t *b, size_t n)
{
    double se = 0;
    for (size_t i = 0; i < n; i++)
        se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return se == 0 ? 99 : 10 * log10(255.0 * 255.0 / (se / n));
}

static int decode(const char *path, const vt_decode_opts *o, vt_frames *f, char *err)
{
    return vt_video_decode(path, o, f, err, 512);
}

/* Codec id and tag of the video stream, read with libavformat directly. */
static void stream_info(const char *path, enum AVCodecID *id, uint32_t *tag, int *index)
{
    AVFormatContext *fc = NULL;
    ck_assert_int_eq(avformat_open_input(&fc, path, NULL, NULL), 0);
    ck_assert_int_ge(avformat_find_stream_info(fc, NULL), 0);
    int s = av_find_best_stream(fc, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    ck_assert_int_ge(s, 0);
    *id = fc->streams[s]->codecpar->codec_id;
    *tag = fc->streams[s]->codecpar->codec_tag;
    *index = s;
    avformat_close_input(&fc);
}

static void expect_broken(const char *path, const char *reason);

/* ==== Encode / decode round trips ======================================= */

START_TEST(roundtrip_our_encoder)
{
    make_tmpdir();
    struct {
        const char *name, *codec;
        enum AVCodecID id;
        double min_psnr;
    } cases[] = {
        {"xvid.avi", "mpeg4", AV_CODEC_ID_MPEG4, 32},
        {"mjpeg.avi", "mjpeg", AV_CODEC_ID_MJPEG, 32},
        {"h264.mp4", "h264", AV_CODEC_ID_H264, 32},
        {"default.mkv", NULL, AV_CODEC_ID_NONE, 32},
    };
    int n = 30, h = 64, w = 96;
    uint8_t *src = pattern(n, h, w);
    int probe = have_program("ffprobe");
    if (!probe)
        printf("roundtrip: ffprobe not installed, frame counts checked against the encoder only\n");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char p[1024], err[512];
        tpath(p, cases[c].name);
        ck_assert_msg(vt_video_encode(p, cases[c].codec, src, n, h, w, 25, err, sizeof err) == 0,
                      "encode %s: %s", cases[c].name, err);
        enum AVCodecID id;
        uint32_t tag;
        int index;
        stream_info(p, &id, &tag, &index);
        if (cases[c].id != AV_CODEC_ID_NONE)
            ck_assert_int_eq(id, cases[c].id);
        if (cases[c].id == AV_CODEC_ID_MPEG4) /* like UCF101's files */
            ck_assert_uint_eq(tag, MKTAG('X', 'V', 'I', 'D'));
        vt_frames f;
        ck_assert_msg(decode(p, NULL, &f, err) == 0, "%s", err);
        ck_assert_int_eq(f.n, n);
        ck_assert_int_eq(f.w, w);
        ck_assert_int_eq(f.h, h);
        ck_assert_int_eq(f.src_w, w);
        ck_assert(fabs(f.fps - 25) < 1e-6 && fabs(f.src_fps - 25) < 1e-6);
        double q = psnr(src, f.data, (size_t)n * h * w * 3);
        int ff = probe ? ffprobe_count(p) : n;
        printf("roundtrip %-12s %s: %d frames (ffprobe %d), PSNR %.1f dB\n", cases[c].name,
               avcodec_get_name(id), f.n, ff, q);
        ck_assert_int_eq(f.n, ff);
        ck_assert_msg(q > cases[c].min_psnr, "%s: PSNR %.1f dB", cases[c].name, q);
        vt_frames_free(&f);
    }
    /* Same input, same bytes: the encoders run single-threaded, bit-exact. */
    char a[1024], b[1024], err[512];
    tpath(a, "det1.avi");
    tpath(b, "det2.avi");
    ck_assert_int_eq(vt_video_encode(a, "mpeg4", src, n, h, w, 25, err, sizeof err), 0);
    ck_assert_int_eq(vt_video_encode(b, "mpeg4", src, n, h, w, 25, err, sizeof err), 0);
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = 1, ca, cb;
    do {
        ca = fgetc(fa), cb = fgetc(fb);
        same &= ca == cb;
    } while (ca != EOF && cb != EOF);
    fclose(fa), fclose(fb);
    ck_assert_msg(same, "two encodes of the same frames differ");
    free(src);
    remove_tmpdir();
}
END_TEST

/* Flat colours survive the YUV round trip (range and matrix are right). */
START_TEST(colours_survive_roundtrip)
{
    make_tmpdir();
    static const uint8_t cols[4][3] = {{220, 30, 30}, {30, 200, 40}, {40, 50, 210}, {128, 128, 128}};
    int n = 3, h = 64, w = 64;
    uint8_t *src = malloc((size_t)n * h * w * 3);
    for (int t = 0; t < n; t++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                memcpy(src + (((size_t)t * h + y) * w + x) * 3, cols[(y >= 32) * 2 + (x >= 32)], 3);
    const char *names[] = {"c.avi", "c_mjpeg.avi", "c.mp4"};
    const char *codecs[] = {"mpeg4", "mjpeg", "h264"};
    for (int c = 0; c < 3; c++) {
        char p[1024], err[512];
        tpath(p, names[c]);
        ck_assert_int_eq(vt_video_encode(p, codecs[c], src, n, h, w, 25, err, sizeof err), 0);
        vt_frames f;
        ck_assert_msg(decode(p, NULL, &f, err) == 0, "%s", err);
        int worst = 0;
        for (int q = 0; q < 4; q++) {
            const uint8_t *px = f.data + ((size_t)(16 + 32 * (q / 2)) * w + 16 + 32 * (q % 2)) * 3;
            for (int i = 0; i < 3; i++) {
                int d = abs((int)px[i] - cols[q][i]);
                worst = d > worst ? d : worst;
            }
        }
        printf("colours %s: worst channel error %d\n", codecs[c], worst);
        ck_assert_int_le(worst, 6);
        vt_frames_free(&f);
    }
    free(src);
    remove_tmpdir();
}
END_TEST

/* ==== Files made by the ffmpeg program ================================== */

START_TEST(ffmpeg_made_files)
{
    if (!have_program("ffmpeg") || !have_program("ffprobe")) {
        printf("ffmpeg_made_files: SKIPPED, the ffmpeg/ffprobe programs are not installed\n");
        return;
    }
    make_tmpdir();
    struct {
        const char *name, *args;
        int w, h, frames, video_index;
    } cases[] = {
        /* UCF101-like: XviD-tagged MPEG-4 Part 2 with B-frames, 320x240. */
        {"xvid_bframes.avi",
         "-f lavfi -i testsrc=size=320x240:rate=25:duration=2 -c:v mpeg4 -vtag XVID "
         "-bf 2 -q:v 4", 320, 240, 50, 0},
        {"mjpeg.avi", "-f lavfi -i testsrc=size=160x120:rate=25:duration=2 -c:v mjpeg "
                      "-q:v 4 -pix_fmt yuvj420p", 160, 120, 50, 0},
        {"h264_bframes.mp4", "-f lavfi -i testsrc=size=160x120:rate=25:duration=2 "
                             "-c:v libx264 -bf 3 -pix_fmt yuv420p", 160, 120, 50, 0},
        /* The video is the second stream, after an audio stream. */
        {"audio_first.mp4", "-f lavfi -i sine=frequency=440:duration=2 -f lavfi "
                            "-i testsrc=size=160x120:rate=30:duration=2 -map 0:a -map 1:v "
                            "-c:a aac -c:v libx264 -pix_fmt yuv420p", 160, 120, 60, 1},
        {"vp9.mkv", "-f lavfi -i testsrc=size=160x120:rate=25:duration=1 -c:v libvpx-vp9 "
                    "-deadline realtime -cpu-used 8 -b:v 300k", 160, 120, 25, 0},
        /* No header: streams are found by probing the packets. */
        {"mpeg2.ts", "-f lavfi -i testsrc=size=160x120:rate=25:duration=1 -c:v mpeg2video "
                     "-q:v 4", 160, 120, 25, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char p[1024], err[512];
        tpath(p, cases[c].name);
        if (ffmpeg(cases[c].args, p)) {
            printf("ffmpeg_made_files: %s SKIPPED, this ffmpeg cannot write it\n", cases[c].name);
            continue;
        }
        enum AVCodecID id;
        uint32_t tag;
        int index;
        stream_info(p, &id, &tag, &index);
        ck_assert_int_eq(index, cases[c].video_index);
        vt_frames f;
        double t = now();
        ck_assert_msg(decode(p, NULL, &f, err) == 0, "%s", err);
        t = now() - t;
        int ff = ffprobe_count(p);
        printf("ffmpeg-made %-17s %-10s stream %d: %d frames %dx%d (ffprobe %d) %.1f ms\n",
               cases[c].name, avcodec_get_name(id), index, f.n, f.w, f.h, ff, t * 1e3);
        ck_assert_int_eq(f.n, ff);
        ck_assert_int_eq(f.n, cases[c].frames);
        ck_assert_int_eq(f.w, cases[c].w);
        ck_assert_int_eq(f.h, cases[c].h);
        /* Resampling by time stamps works on reordered (B-frame) streams:
         * 2 s at 10 fps is 20 frames whatever the source rate. */
        vt_frames g;
        vt_decode_opts o = {.fps = 10};
        ck_assert_msg(decode(p, &o, &g, err) == 0, "%s", err);
        ck_assert_int_eq(g.n, cases[c].frames * 10 / (cases[c].video_index ? 30 : 25));
        vt_frames_free(&g);
        vt_frames_free(&f);
    }
    /* Audio with cover art: the picture is a "video stream" of one frame
     * marked attached_pic, not a video. */
    char png[1024], mp3[1024];
    tpath(png, "cover.png");
    tpath(mp3, "cover.mp3");
    if (ffmpeg("-f lavfi -i testsrc=size=64x64 -frames:v 1", png)) {
        printf("ffmpeg_made_files: cover art SKIPPED, this ffmpeg cannot write PNG\n");
    } else {
        char args[2048];
        snprintf(args, sizeof args, "-f lavfi -i sine=duration=1 -i '%s' -map 0:a -map 1:v "
                 "-c:a libmp3lame -c:v mjpeg -disposition:v attached_pic", png);
        if (ffmpeg(args, mp3) == 0)
            expect_broken(mp3, "no video stream");
        else
            printf("ffmpeg_made_files: cover art SKIPPED, this ffmpeg cannot write it\n");
    }
    remove_tmpdir();
}
END_TEST

/* ==== Resizing ========================================================== */

/* Halving with an antialiased bilinear (triangle) filter is the kernel
 * [1 3 3 1] / 8, renormalised where it leaves the image. */
static double tri2(const uint8_t *img, int w, int h, int ox, int oy, int ch)
{
    static const double k[4] = {1, 3, 3, 1};
    double s = 0, ws = 0;
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < 4; i++) {
            int x = 2 * ox - 1 + i, y = 2 * oy - 1 + j;
            if (x < 0 || y < 0 || x >= w || y >= h)
                continue;
            s += k[i] * k[j] * img[((size_t)y * w + x) * 3 + ch];
            ws += k[i] * k[j];
        }
    return s / ws;
}

START_TEST(resize_sizes_and_filter)
{
    make_tmpdir();
    char p[1024], err[512];
    int n = 4, h = 240, w = 320;
    uint8_t *src = pattern(n, h, w);
    /* Add texture so the filter shape matters. */
    for (size_t i = 0; i < (size_t)n * h * w * 3; i++)
        src[i] = (uint8_t)(src[i] / 2 + ((uint32_t)(i * 2654435761u) >> 27) * 4);
    tpath(p, "big.avi");
    ck_assert_int_eq(vt_video_encode(p, "mjpeg", src, n, h, w, 25, err, sizeof err), 0);

    vt_frames full, half, c3d, ss;
    ck_assert_msg(decode(p, NULL, &full, err) == 0, "%s", err);
    vt_decode_opts o = {.width = 160, .height = 120};
    ck_assert_msg(decode(p, &o, &half, err) == 0, "%s", err);
    ck_assert(half.w == 160 && half.h == 120 && half.n == n);
    double worst = 0, sum = 0;
    for (int t = 0; t < n; t++)
        for (int y = 0; y < 120; y++)
            for (int x = 0; x < 160; x++)
                for (int c = 0; c < 3; c++) {
                    double want = tri2(full.data + (size_t)t * w * h * 3, w, h, x, y, c);
                    double d = fabs(half.data[(((size_t)t * 120 + y) * 160 + x) * 3 + c] - want);
                    worst = d > worst ? d : worst;
                    sum += d;
                }
    printf("resize 320x240 -> 160x120 vs [1 3 3 1]/8: max error %.2f, mean %.3f levels\n",
           worst, sum / (n * 120.0 * 160 * 3));
    ck_assert(worst <= 1.01); /* two 8-bit passes, each rounding once */

    /* C3D's exact 171x128, and the short side 128 (which is the same here). */
    o = (vt_decode_opts){.width = 171, .height = 128};
    ck_assert_msg(decode(p, &o, &c3d, err) == 0, "%s", err);
    ck_assert(c3d.w == 171 && c3d.h == 128 && c3d.src_w == 320 && c3d.src_h == 240);
    o = (vt_decode_opts){.short_side = 128};
    ck_assert_msg(decode(p, &o, &ss, err) == 0, "%s", err);
    ck_assert(ss.w == 171 && ss.h == 128);
    ck_assert(memcmp(ss.data, c3d.data, (size_t)n * 171 * 128 * 3) == 0);
    vt_frames_free(&full), vt_frames_free(&half), vt_frames_free(&c3d), vt_frames_free(&ss);

    /* A portrait video: the short side is the width. Flat stays flat. */
    int pw = 48, ph = 64;
    uint8_t *flat = malloc((size_t)2 * pw * ph * 3);
    for (int i = 0; i < 2 * pw * ph; i++)
        flat[3 * i] = 90, flat[3 * i + 1] = 160, flat[3 * i + 2] = 220;
    tpath(p, "portrait.avi");
    ck_assert_int_eq(vt_video_encode(p, "mjpeg", flat, 2, ph, pw, 25, err, sizeof err), 0);
    vt_frames pf, pr;
    ck_assert_msg(decode(p, NULL, &pf, err) == 0, "%s", err);
    o = (vt_decode_opts){.short_side = 32};
    ck_assert_msg(decode(p, &o, &pr, err) == 0, "%s", err);
    ck_assert_int_eq(pr.w, 32);
    ck_assert_int_eq(pr.h, 43); /* 64 * 32 / 48 = 42.7 */
    int fdev = 0;
    for (int i = 0; i < pr.n * pr.w * pr.h * 3; i++) {
        int d = abs((int)pr.data[i] - pf.data[i % 3]);
        fdev = d > fdev ? d : fdev;
    }
    ck_assert_int_le(fdev, 1);
    o = (vt_decode_opts){.width = 24}; /* height follows the aspect */
    vt_frames pa;
    ck_assert_msg(decode(p, &o, &pa, err) == 0, "%s", err);
    ck_assert(pa.w == 24 && pa.h == 32);
    vt_frames_free(&pa), vt_frames_free(&pf), vt_frames_free(&pr);
    free(flat);
    free(src);
    remove_tmpdir();
}
END_TEST

/* ==== Frame-rate resampling ============================================ */

START_TEST(fps_resampling_picks_nearest_frames)
{
    make_tmpdir();
    /* Frame i is flat grey 30 + 7 i, so a decoded value names its frame. */
    int n = 30, h = 32, w = 32;
    uint8_t *src = malloc((size_t)n * h * w * 3);
    for (int t = 0; t < n; t++)
        memset(src + (size_t)t * h * w * 3, 30 + 7 * t, (size_t)h * w * 3);
    char p[1024], err[512];
    tpath(p, "ramp.avi");
    ck_assert_int_eq(vt_video_encode(p, "mjpeg", src, n, h, w, 25, err, sizeof err), 0);
    struct {
        double fps;
        int max, want_n;
    } cases[] = {{0, 0, 30}, {12.5, 0, 15}, {10, 0, 12}, {50, 0, 60}, {10, 5, 5}, {0, 7, 7}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        vt_decode_opts o = {.fps = cases[c].fps, .max_frames = cases[c].max};
        vt_frames f;
        ck_assert_msg(decode(p, &o, &f, err) == 0, "%s", err);
        ck_assert_int_eq(f.n, cases[c].want_n);
        double fps = cases[c].fps > 0 ? cases[c].fps : 25;
        ck_assert(fabs(f.fps - fps) < 1e-9);
        for (int k = 0; k < f.n; k++) {
            /* Output instant k / fps shows source frame round(k * 25 / fps),
             * halves going to the earlier frame. */
            double x = k * 25.0 / fps;
            int want = (int)ceil(x - 0.5 - 1e-9);
            int v = f.data[(size_t)k * h * w * 3 + (h / 2 * w + w / 2) * 3];
            int got = (int)lround((v - 30) / 7.0);
            ck_assert_msg(got == want, "fps %.1f: output %d shows frame %d (value %d), want %d",
                          fps, k, got, v, want);
        }
        vt_frames_free(&f);
    }
    free(src);
    remove_tmpdir();
}
END_TEST

/* Starting at a time seeks to the keyframe before it: the frames are the
 * same as those of a full decode. */
START_TEST(start_time_gives_the_same_frames)
{
    make_tmpdir();
    int n = 30, h = 32, w = 48;
    uint8_t *src = malloc((size_t)n * h * w * 3);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < h * w * 3; i++) /* frame t: grey 30 + 7 t, some grain */
            src[(size_t)t * h * w * 3 + i] = (uint8_t)(30 + 7 * t + (i * 7 % 5));
    const char *codecs[] = {"mpeg4", "mjpeg"}; /* keyframe every 12th / every frame */
    for (int c = 0; c < 2; c++) {
        char p[1024], err[512];
        snprintf(p, sizeof p, "%s/ramp_%s.avi", tmpdir, codecs[c]);
        ck_assert_int_eq(vt_video_encode(p, codecs[c], src, n, h, w, 25, err, sizeof err), 0);
        vt_frames full, part, sub;
        ck_assert_msg(decode(p, NULL, &full, err) == 0, "%s", err);
        ck_assert_int_eq(full.n, n);
        size_t fs = (size_t)h * w * 3;
        /* Frame 20 is at 0.80 s, the nearest to 0.81 s. */
        vt_decode_opts o = {.start_time = 0.81, .max_frames = 5};
        ck_assert_msg(decode(p, &o, &part, err) == 0, "%s", err);
        ck_assert_int_eq(part.n, 5);
        ck_assert(memcmp(part.data, full.data + 20 * fs, 5 * fs) == 0);
        /* Resampled: instants 0.80 + 0.08 k before the end at 1.2 s. */
        o = (vt_decode_opts){.start_time = 0.8, .fps = 12.5};
        ck_assert_msg(decode(p, &o, &sub, err) == 0, "%s", err);
        ck_assert_int_eq(sub.n, 5);
        for (int k = 0; k < 5; k++) {
            ck_assert(memcmp(sub.data + k * fs, full.data + (20 + 2 * k) * fs, fs) == 0);
            int v = sub.data[k * fs + 3 * (h / 2 * w + w / 2)];
            ck_assert_int_eq((int)lround((v - 31) / 7.0), 20 + 2 * k);
        }
        vt_frames_free(&full), vt_frames_free(&part), vt_frames_free(&sub);
        o = (vt_decode_opts){.start_time = 5};
        ck_assert_int_eq(decode(p, &o, &part, err), -1);
        ck_assert_msg(strstr(err, "no frame at or after the start time"), "%s", err);
    }
    free(src);
    remove_tmpdir();
}
END_TEST

/* ==== Threads =========================================================== */

START_TEST(decoder_threads_give_identical_frames)
{
    make_tmpdir();
    int n = 40, h = 96, w = 128;
    uint8_t *src = pattern(n, h, w);
    char p[1024], err[512];
    tpath(p, "t.mp4");
    ck_assert_int_eq(vt_video_encode(p, "h264", src, n, h, w, 25, err, sizeof err), 0);
    vt_frames a, b;
    vt_decode_opts o1 = {.short_side = 64}, o3 = {.short_side = 64, .threads = 3};
    ck_assert_msg(decode(p, &o1, &a, err) == 0, "%s", err);
    ck_assert_msg(decode(p, &o3, &b, err) == 0, "%s", err);
    ck_assert_int_eq(a.n, n);
    ck_assert_int_eq(b.n, n);
    ck_assert(memcmp(a.data, b.data, (size_t)n * a.w * a.h * 3) == 0);
    vt_frames_free(&a), vt_frames_free(&b);
    free(src);
    remove_tmpdir();
}
END_TEST

/* ==== Broken files ====================================================== */

static void write_bytes(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(d, 1, n, f), n);
    fclose(f);
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc(*n);
    ck_assert_uint_eq(fread(d, 1, *n, f), *n);
    fclose(f);
    return d;
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Expects a failure naming the file and `reason`, on one line, quickly. */
static void expect_broken(const char *path, const char *reason)
{
    vt_frames f;
    char err[512] = "";
    double t = now();
    int r = vt_video_decode(path, NULL, &f, err, sizeof err);
    t = now() - t;
    printf("broken: %s (%.1f ms)\n", err, t * 1e3);
    ck_assert_msg(r == -1, "%s: decoded %d frames, expected '%s'", path, f.n, reason);
    ck_assert_ptr_null(f.data);
    ck_assert_msg(strncmp(err, path, strlen(path)) == 0, "message does not name the file: %s", err);
    ck_assert_msg(strstr(err, reason), "'%s' does not give the reason '%s'", err, reason);
    ck_assert_msg(!strchr(err, '\n'), "message is not one line: %s", err);
    ck_assert_msg(t < 5, "%s took %.1f s", path, t);
}

START_TEST(broken_files_fail_cleanly)
{
    make_tmpdir();
    char p[1024], q[1024], err[512];

    tpath(p, "empty.avi");
    write_bytes(p, "", 0);
    expect_broken(p, "empty file");

    tpath(p, "notes.avi");
    const char *text = "These are not the frames you are looking for.\nline two\n";
    write_bytes(p, text, strlen(text));
    expect_broken(p, "not a readable media file");

    /* Text shown as ANSI art by FFmpeg's tty demuxer is still not video. */
    tpath(p, "readme.nfo");
    write_bytes(p, text, strlen(text));
    expect_broken(p, "not a video");

    /* Audio only: a 0.1 s 8 kHz mono PCM WAV, written by hand. */
    uint8_t wav[44 + 1600];
    memset(wav, 0, sizeof wav);
    memcpy(wav, "RIFF", 4);
    uint32_t v = sizeof wav - 8;
    memcpy(wav + 4, &v, 4);
    memcpy(wav + 8, "WAVEfmt ", 8);
    v = 16, memcpy(wav + 16, &v, 4);
    uint16_t s16 = 1;
    memcpy(wav + 20, &s16, 2);               /* PCM */
    memcpy(wav + 22, &s16, 2);               /* mono */
    v = 8000, memcpy(wav + 24, &v, 4);       /* rate */
    v = 16000, memcpy(wav + 28, &v, 4);      /* bytes/s */
    s16 = 2, memcpy(wav + 32, &s16, 2);      /* block */
    s16 = 16, memcpy(wav + 34, &s16, 2);     /* bits */
    memcpy(wav + 36, "data", 4);
    v = 1600, memcpy(wav + 40, &v, 4);
    for (int i = 0; i < 800; i++) {
        int16_t smp = (int16_t)(8000 * sin(i * 0.3));
        memcpy(wav + 44 + 2 * i, &smp, 2);
    }
    tpath(p, "audio.wav");
    write_bytes(p, wav, sizeof wav);
    expect_broken(p, "no video stream");

    /* A valid file, then cut at 40%. Grain makes the frames, not the
     * header, the bulk of the file. */
    int n = 50, h = 64, w = 96;
    uint8_t *src = pattern(n, h, w);
    for (size_t i = 0; i < (size_t)n * h * w * 3; i++)
        src[i] = (uint8_t)(src[i] / 2 + ((uint32_t)(i * 2654435761u) >> 26));
    const char *good[] = {"good.avi", "good.mp4", "good.mkv"};
    const char *codec[] = {"mpeg4", "h264", "mpeg4"};
    for (int k = 0; k < 3; k++) {
        tpath(q, good[k]);
        ck_assert_int_eq(vt_video_encode(q, codec[k], src, n, h, w, 25, err, sizeof err), 0);
        size_t len;
        uint8_t *d = read_all(q, &len);
        snprintf(p, sizeof p, "%s/cut_%s", tmpdir, good[k]);
        write_bytes(p, d, len * 2 / 5);
        expect_broken(p, "truncated");
        free(d);
    }
    /* Cut, with the RIFF size patched to match: the movi list still
     * declares more than there is. */
    {
        tpath(q, "good.avi");
        size_t len;
        uint8_t *d = read_all(q, &len);
        size_t cut = len * 2 / 5;
        uint32_t riff = (uint32_t)cut - 8;
        memcpy(d + 4, &riff, 4);
        tpath(p, "cut_patched.avi");
        write_bytes(p, d, cut);
        expect_broken(p, "truncated");
        free(d);
    }
    /* On request, a truncated file gives the frames before the cut. */
    snprintf(p, sizeof p, "%s/cut_good.avi", tmpdir);
    vt_frames f;
    vt_decode_opts o = {.allow_truncated = 1};
    ck_assert_msg(vt_video_decode(p, &o, &f, err, sizeof err) == 0, "%s", err);
    printf("truncated at 40%% with allow_truncated: %d of %d frames\n", f.n, n);
    ck_assert(f.n > 0 && f.n < n && f.truncated);
    vt_frames_free(&f);

    /* Valid header and index, garbage in every video chunk: zero frames. */
    size_t len;
    tpath(q, "good.avi");
    uint8_t *d = read_all(q, &len);
    size_t pos = 0;
    while (pos + 4 <= len && memcmp(d + pos, "movi", 4))
        pos++;
    ck_assert(pos + 4 < len);
    pos += 4;
    int chunks = 0;
    uint64_t rs = 12345;
    while (pos + 8 <= len && memcmp(d + pos, "idx1", 4)) {
        uint32_t sz = le32(d + pos + 4);
        ck_assert(pos + 8 + sz <= len);
        if (d[pos + 2] == 'd' && d[pos + 3] == 'c') {
            for (uint32_t i = 0; i < sz; i++) {
                rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
                d[pos + 8 + i] = (uint8_t)(rs >> 56);
            }
            chunks++;
        }
        pos += 8 + sz + (sz & 1);
    }
    ck_assert_int_eq(chunks, n);
    tpath(p, "garbage.avi");
    write_bytes(p, d, len);
    free(d);
    expect_broken(p, "no frame decodes");

    tpath(p, "does_not_exist.avi");
    expect_broken(p, "No such file");
    expect_broken(tmpdir, "is a directory");

    /* Bad options are an error, not a crash. */
    tpath(q, "good.avi");
    o = (vt_decode_opts){.fps = -1};
    ck_assert_int_eq(vt_video_decode(q, &o, &f, err, sizeof err), -1);
    ck_assert(strstr(err, "invalid decode options"));
    free(src);
    remove_tmpdir();
}
END_TEST

START_TEST(encoder_errors_fail_cleanly)
{
    make_tmpdir();
    char p[1024], err[512];
    uint8_t px[16 * 16 * 3] = {0};
    tpath(p, "x.unknownext");
    ck_assert_int_eq(vt_video_encode(p, NULL, px, 1, 16, 16, 25, err, sizeof err), -1);
    printf("encode error: %s\n", err);
    ck_assert(strstr(err, p) && strstr(err, "container"));
    tpath(p, "x.avi");
    ck_assert_int_eq(vt_video_encode(p, "nosuchcodec", px, 1, 16, 16, 25, err, sizeof err), -1);
    ck_assert(strstr(err, "no encoder"));
    ck_assert_int_eq(vt_video_encode(p, "mpeg4", px, 0, 16, 16, 25, err, sizeof err), -1);
    ck_assert_int_eq(vt_video_encode(p, "mpeg4", px, 1, 16, 16, 0, err, sizeof err), -1);
    snprintf(p, sizeof p, "%s/no/such/dir/x.avi", tmpdir);
    ck_assert_int_eq(vt_video_encode(p, "mpeg4", px, 1, 16, 16, 25, err, sizeof err), -1);
    printf("encode error: %s\n", err);
    ck_assert(strstr(err, "cannot create"));
    struct stat sb;
    ck_assert_int_ne(stat(p, &sb), 0);
    remove_tmpdir();
}
END_TEST

/* ==== Synthetic dataset ================================================= */

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *d = malloc((size_t)len + 1);
    *n = fread(d, 1, (size_t)len, f);
    d[*n] = '\0';
    fclose(f);
    return d;
}

/* Splits text into lines ending in "\r\n"; fails on a bare "\n" or a last
 * line without its terminator, as the official files have neither. */
static int crlf_lines(char *text, size_t n, char **lines, int max)
{
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] != '\n')
            continue;
        ck_assert_msg(i > start && text[i - 1] == '\r', "line %d does not end in CRLF", k + 1);
        text[i - 1] = '\0';
        ck_assert_int_lt(k, max);
        lines[k++] = text + start;
        start = i + 1;
    }
    ck_assert_msg(start == n, "the last line has no CRLF");
    return k;
}

/* "Class/v_Class_gGG_cCC.avi[ label]"; returns the number of fields. */
static int parse_list_line(const char *s, char *cls, char *cls2, int *g, int *c, int *label)
{
    int used = -1;
    int k = sscanf(s, "%63[^/]/v_%63[^_]_g%2d_c%2d.avi%n", cls, cls2, g, c, &used);
    if (k != 4 || used < 0)
        return 0;
    if (s[used] == '\0')
        return 4;
    int used2 = -1;
    if (sscanf(s + used, " %d%n", label, &used2) == 1 && s[used + used2] == '\0' &&
        s[used] == ' ' && s[used + 1] != ' ')
        return 5;
    return 0;
}

START_TEST(official_list_format_is_what_we_parse)
{
    const char *root = getenv("VT_SOURCE_ROOT");
    char p[1024];
    snprintf(p, sizeof p, "%s/../shared/data/ucfTrainTestlist/trainlist01.txt", root ? root : ".");
    size_t n;
    char *t = slurp(p, &n);
    if (!t) {
        printf("official_list_format: SKIPPED, %s not found\n", p);
        return;
    }
    static char *lines[20000];
    int k = crlf_lines(t, n, lines, 20000);
    ck_assert_int_eq(k, 9537);
    char a[64], b[64];
    int g, c, l;
    for (int i = 0; i < k; i++)
        ck_assert_msg(parse_list_line(lines[i], a, b, &g, &c, &l) == 5, "official: %s", lines[i]);
    free(t);
    snprintf(p, sizeof p, "%s/../shared/data/ucfTrainTestlist/testlist01.txt", root ? root : ".");
    t = slurp(p, &n);
    ck_assert_ptr_nonnull(t);
    k = crlf_lines(t, n, lines, 20000);
    ck_assert_int_eq(k, 3783);
    for (int i = 0; i < k; i++) {
        ck_assert_msg(parse_list_line(lines[i], a, b, &g, &c, &l) == 4, "official: %s", lines[i]);
        ck_assert(g >= 1 && g <= 7); /* split 1 tests groups 1-7 */
    }
    free(t);
    snprintf(p, sizeof p, "%s/../shared/data/ucfTrainTestlist/classInd.txt", root ? root : ".");
    t = slurp(p, &n);
    ck_assert_ptr_nonnull(t);
    k = crlf_lines(t, n, lines, 200);
    ck_assert_int_eq(k, 101);
    ck_assert_str_eq(lines[0], "1 ApplyEyeMakeup");
    free(t);
}
END_TEST

START_TEST(vsynth_layout_lists_and_determinism)
{
    make_tmpdir();
    char out[1024], out2[1024], p[1200], err[512];
    tpath(out, "ds");
    vt_synth_opts o;
    vt_synth_defaults(&o);
    ck_assert_int_eq(o.width, 160);
    ck_assert_int_eq(o.height, 120);
    ck_assert_int_eq(o.frames, 40);
    ck_assert_int_eq(o.fps, 25);
    o.out_dir = out;
    o.classes = "MoveRight,MoveLeft,Grow";
    o.videos_per_class = 7;
    o.groups = 4; /* 2 clips a group, the last group has 1 */
    o.width = 64, o.height = 48, o.frames = 10;
    vt_synth_info info;
    ck_assert_msg(vt_synth_generate(&o, &info, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(info.n_videos, 21);
    ck_assert_int_eq(info.groups, 4);
    ck_assert_int_eq(info.clips_per_group, 2);
    ck_assert_int_eq(info.test_groups, 1); /* round(4 * 7 / 25) */
    ck_assert_int_eq(info.n_test, 6);
    ck_assert_int_eq(info.n_train, 15);

    size_t n;
    snprintf(p, sizeof p, "%s/ucfTrainTestlist/classInd.txt", out);
    char *t = slurp(p, &n);
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t, "1 MoveRight\r\n2 MoveLeft\r\n3 Grow\r\n"); /* --classes order */
    free(t);

    const char *names[] = {"MoveRight", "MoveLeft", "Grow"};
    for (int split = 1; split <= 3; split++) {
        int seen[3][5][3] = {{{0}}}; /* class, group, clip: 1 train, 2 test */
        for (int test = 0; test <= 1; test++) {
            snprintf(p, sizeof p, "%s/ucfTrainTestlist/%slist%02d.txt", out,
                     test ? "test" : "train", split);
            t = slurp(p, &n);
            ck_assert_ptr_nonnull(t);
            char *lines[64];
            int k = crlf_lines(t, n, lines, 64);
            ck_assert_int_eq(k, test ? 6 : 15);
            int prev = -1;
            for (int i = 0; i < k; i++) {
                char a[64], b[64];
                int g, c, l = 0;
                int fields = parse_list_line(lines[i], a, b, &g, &c, &l);
                ck_assert_msg(fields == (test ? 4 : 5), "%s", lines[i]);
                ck_assert_str_eq(a, b);
                int cls = -1;
                for (int q = 0; q < 3; q++)
                    if (!strcmp(a, names[q]))
                        cls = q;
                ck_assert_int_ge(cls, 0);
                if (!test)
                    ck_assert_int_eq(l, cls + 1);
                ck_assert(g >= 1 && g <= 4 && c >= 1 && c <= 2 && !(g == 4 && c == 2));
                ck_assert_int_eq(seen[cls][g][c], 0);
                seen[cls][g][c] = test ? 2 : 1;
                /* Ordered by class, group, clip, as the official lists. */
                int key = cls * 100 + g * 10 + c;
                ck_assert_int_gt(key, prev);
                prev = key;
                /* Lines in the files name real videos. */
                struct stat sb;
                snprintf(p, sizeof p, "%s/%s/v_%s_g%02d_c%02d.avi", out, a, a, g, c);
                ck_assert_msg(stat(p, &sb) == 0 && sb.st_size > 1000, "%s", p);
            }
            free(t);
        }
        /* Every video is listed once; a group is wholly train or wholly
         * test; split s tests group s. */
        for (int cls = 0; cls < 3; cls++)
            for (int g = 1; g <= 4; g++)
                for (int c = 1; c <= (g == 4 ? 1 : 2); c++) {
                    ck_assert_int_ne(seen[cls][g][c], 0);
                    ck_assert_int_eq(seen[cls][g][c], g == split ? 2 : 1);
                }
    }

    /* The files decode to what was rendered. */
    snprintf(p, sizeof p, "%s/MoveLeft/v_MoveLeft_g02_c01.avi", out);
    vt_frames f;
    ck_assert_msg(vt_video_decode(p, NULL, &f, err, sizeof err) == 0, "%s", err);
    ck_assert(f.n == 10 && f.w == 64 && f.h == 48 && fabs(f.fps - 25) < 1e-9);
    uint8_t *r = malloc((size_t)10 * 64 * 48 * 3);
    ck_assert_int_eq(vt_synth_render(vt_synth_class_find("MoveLeft"), o.seed, 2, 1, 64, 48, 10,
                                     25, r, NULL), 0);
    double q = psnr(r, f.data, (size_t)10 * 64 * 48 * 3);
    printf("vsynth: decoded vs rendered PSNR %.1f dB\n", q);
    ck_assert(q > 28);
    free(r);
    vt_frames_free(&f);

    /* Same seed: byte-identical files; another seed: different videos. */
    tpath(out2, "ds2");
    o.out_dir = out2;
    ck_assert_msg(vt_synth_generate(&o, NULL, err, sizeof err) == 0, "%s", err);
    const char *files[] = {"MoveRight/v_MoveRight_g01_c01.avi", "Grow/v_Grow_g04_c01.avi",
                           "ucfTrainTestlist/trainlist02.txt"};
    for (int i = 0; i < 3; i++) {
        size_t n1 = 0, n2 = 0;
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        char *a = slurp(p, &n1);
        snprintf(p, sizeof p, "%s/%s", out2, files[i]);
        char *b = slurp(p, &n2);
        ck_assert(a && b && n1 == n2 && memcmp(a, b, n1) == 0);
        free(a), free(b);
    }
    uint8_t *r1 = malloc((size_t)10 * 64 * 48 * 3), *r2 = malloc((size_t)10 * 64 * 48 * 3);
    vt_synth_render(0, 1, 1, 1, 64, 48, 10, 25, r1, NULL);
    vt_synth_render(0, 2, 1, 1, 64, 48, 10, 25, r2, NULL);
    ck_assert(memcmp(r1, r2, (size_t)10 * 64 * 48 * 3) != 0);
    free(r1), free(r2);

    /* Bad options: status -2 and a message, nothing written. */
    o.classes = "MoveLeft,Jump";
    ck_assert_int_eq(vt_synth_generate(&o, NULL, err, sizeof err), -2);
    ck_assert(strstr(err, "Jump"));
    o.classes = NULL, o.videos_per_class = 1;
    ck_assert_int_eq(vt_synth_generate(&o, NULL, err, sizeof err), -2);
    o.videos_per_class = 4, o.width = 63;
    ck_assert_int_eq(vt_synth_generate(&o, NULL, err, sizeof err), -2);
    remove_tmpdir();
}
END_TEST

static int run_status(const char *cmd)
{
    int s = system(cmd);
    return WIFEXITED(s) ? WEXITSTATUS(s) : -1;
}

START_TEST(vsynth_command_line)
{
    const char *build = getenv("VT_BUILD_ROOT");
    char exe[1024], cmd[3000];
    char rel[1024];
    snprintf(rel, sizeof rel, "%s/train/vsynth", build ? build : ".");
    if (access(rel, X_OK) || !realpath(rel, exe)) { /* absolute: we cd */
        printf("vsynth_command_line: SKIPPED, %s not built\n", exe);
        return;
    }
    make_tmpdir();
    snprintf(cmd, sizeof cmd, "'%s' --help >/dev/null", exe);
    ck_assert_int_eq(run_status(cmd), 0);
    const char *bad[] = {"", "--out", "--out x --size 64", "--out x --frames 0",
                         "--out x --classes Nope", "--out x --bogus 1", "--out x --seed -3",
                         "--out x --codec h263"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>/dev/null >/dev/null", tmpdir, exe, bad[i]);
        ck_assert_msg(run_status(cmd) == 2, "vsynth %s: not exit status 2", bad[i]);
    }
    /* The output directory cannot be created: an I/O failure. */
    char blocker[1024];
    tpath(blocker, "file");
    write_bytes(blocker, "x", 1);
    snprintf(cmd, sizeof cmd, "'%s' --out '%s/sub' 2>/dev/null >/dev/null", exe, blocker);
    ck_assert_int_eq(run_status(cmd), 1);
    snprintf(cmd, sizeof cmd,
             "'%s' --out '%s/ok' --classes Still,Flicker --videos-per-class 2 --size 32x32 "
             "--frames 3 --seed 7 --codec mjpeg >/dev/null", exe, tmpdir);
    ck_assert_int_eq(run_status(cmd), 0);
    char p[1200];
    snprintf(p, sizeof p, "%s/ok/Flicker/v_Flicker_g02_c01.avi", tmpdir);
    enum AVCodecID id;
    uint32_t tag;
    int index;
    stream_info(p, &id, &tag, &index);
    ck_assert_int_eq(id, AV_CODEC_ID_MJPEG);
    remove_tmpdir();
}
END_TEST

/* Two-sample Kolmogorov-Smirnov statistic. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double ks(double *a, double *b, int n)
{
    qsort(a, (size_t)n, sizeof *a, cmp_double);
    qsort(b, (size_t)n, sizeof *b, cmp_double);
    int i = 0, j = 0;
    double d = 0;
    while (i < n && j < n) {
        double x = a[i] < b[j] ? a[i] : b[j];
        while (i < n && a[i] <= x)
            i++;
        while (j < n && b[j] <= x)
            j++;
        d = fmax(d, fabs((double)(i - j) / n));
    }
    return d;
}

/* The paired classes: what one frame shows has the same distribution for
 * both members at every frame index (checked with a KS test on the object's
 * position, angle and size at the first, middle and last frame, and on the
 * mean image), while the motion between frames has opposite signs for every
 * single video. */
START_TEST(vsynth_pairs_differ_only_in_motion)
{
    enum { N = 120, T = 12, W = 48, H = 36 };
    static const char *pairs[4][2] = {{"MoveLeft", "MoveRight"},
                                      {"MoveUp", "MoveDown"},
                                      {"RotateCCW", "RotateCW"},
                                      {"Shrink", "Grow"}};
    uint8_t *rgb = malloc((size_t)T * W * H * 3);
    vt_synth_state st[T];
    /* Sums of the last frames, per class and per half of its groups. */
    static double feat[2][3][N], mean_img[2][2][W * H * 3];
    /* The KS critical value for two samples of N at p = 0.001. */
    const double ks_crit = 1.95 * sqrt(2.0 / N);
    for (int pr = 0; pr < 4; pr++) {
        memset(mean_img, 0, sizeof mean_img);
        double motion_min[2] = {1e9, 1e9}, motion_max[2] = {-1e9, -1e9};
        for (int m = 0; m < 2; m++) {
            int k = vt_synth_class_find(pairs[pr][m]);
            ck_assert_int_ge(k, 0);
            for (int v = 0; v < N; v++) {
                ck_assert_int_eq(vt_synth_render(k, 3, 1 + v / 6, 1 + v % 6, W, H, T, 25, rgb, st), 0);
                int fr[3] = {0, T / 2, T - 1};
                for (int q = 0; q < 3; q++) {
                    vt_synth_state *s = &st[fr[q]];
                    feat[m][q][v] = pr == 0 ? s->cx : pr == 1 ? s->cy
                                  : pr == 2 ? s->angle : s->radius;
                }
                /* Halves by group (6 videos a group share a background), so
                 * that they differ by as much as two classes do. */
                for (int i = 0; i < W * H * 3; i++)
                    mean_img[m][(v / 6) & 1][i] += rgb[(size_t)(T - 1) * W * H * 3 + i];
                /* Motion: the median per-frame change (unwrapped). */
                double d[T - 1];
                for (int t = 0; t + 1 < T; t++) {
                    double a = pr == 0 ? st[t + 1].cx - st[t].cx
                             : pr == 1 ? st[t + 1].cy - st[t].cy
                             : pr == 2 ? st[t + 1].angle - st[t].angle
                                       : log(st[t + 1].radius / st[t].radius);
                    double span = pr == 0 ? W : pr == 1 ? H : pr == 2 ? 2 * M_PI : 1e9;
                    if (a > span / 2)
                        a -= span;
                    if (a < -span / 2)
                        a += span;
                    d[t] = a;
                }
                qsort(d, T - 1, sizeof d[0], cmp_double);
                motion_min[m] = fmin(motion_min[m], d[(T - 1) / 2]);
                motion_max[m] = fmax(motion_max[m], d[(T - 1) / 2]);
            }
        }
        double worst = 0;
        for (int q = 0; q < 3; q++)
            worst = fmax(worst, ks(feat[0][q], feat[1][q], N));
        /* Mean last frames of the two classes differ no more than the mean
         * frames of two halves of one class (same number of videos). */
        double between = 0, within = 0;
        for (int i = 0; i < W * H * 3; i++) {
            double a = (mean_img[0][0][i] + mean_img[0][1][i]) / N;
            double b = (mean_img[1][0][i] + mean_img[1][1][i]) / N;
            double a0 = mean_img[0][0][i] / (N / 2), a1 = mean_img[0][1][i] / (N / 2);
            double b0 = mean_img[1][0][i] / (N / 2), b1 = mean_img[1][1][i] / (N / 2);
            between += (a - b) * (a - b);
            /* halves of each class: variance twice that of a class mean */
            within += 0.25 * ((a0 - a1) * (a0 - a1) + (b0 - b1) * (b0 - b1));
        }
        between = sqrt(between / (W * H * 3));
        within = sqrt(within / (W * H * 3));
        printf("vsynth %s/%s: single-frame KS max %.3f (crit %.3f), mean-image rms diff %.2f "
               "(class halves %.2f); median motion per frame %s [%.3f, %.3f] %s [%.3f, %.3f]\n",
               pairs[pr][0], pairs[pr][1], worst, ks_crit, between, within, pairs[pr][0],
               motion_min[0], motion_max[0], pairs[pr][1], motion_min[1], motion_max[1]);
        ck_assert_msg(worst < ks_crit, "%s/%s: a single frame tells them apart (KS %.3f)",
                      pairs[pr][0], pairs[pr][1], worst);
        ck_assert_msg(between < 1.5 * within, "%s/%s: mean images differ", pairs[pr][0],
                      pairs[pr][1]);
        /* Opposite, clearly non-zero motion in every video. */
        ck_assert_msg(motion_max[0] < 0 && motion_min[1] > 0, "%s/%s: motion overlaps",
                      pairs[pr][0], pairs[pr][1]);
    }
    free(rgb);
}
END_TEST

/* The motion is visible in the decoded pixels: the least-squares global
 * optical flow (Horn-Schunck constraint It + v . grad I = 0, summed over
 * the frame) of the decoded files has the class's sign in every video. */
START_TEST(vsynth_motion_visible_in_decoded_pixels)
{
    make_tmpdir();
    char out[1024], err[512];
    tpath(out, "ds");
    vt_synth_opts o;
    vt_synth_defaults(&o);
    o.out_dir = out;
    o.classes = "MoveLeft,MoveRight,MoveUp,MoveDown,RotateCW,RotateCCW,Grow,Shrink";
    o.videos_per_class = 4;
    o.groups = 2;
    o.width = 96, o.height = 72, o.frames = 12;
    ck_assert_msg(vt_synth_generate(&o, NULL, err, sizeof err) == 0, "%s", err);
    const char *names[] = {"MoveLeft", "MoveRight", "MoveUp", "MoveDown",
                           "RotateCW", "RotateCCW", "Grow", "Shrink"};
    const int sign[] = {-1, 1, -1, 1, 1, -1, 1, -1};
    int W = 96, H = 72, T = 12;
    vt_synth_state st[12];
    uint8_t *r = malloc((size_t)T * W * H * 3);
    for (int c = 0; c < 8; c++) {
        double lo = 1e9, hi = -1e9;
        for (int v = 0; v < 4; v++) {
            int g = 1 + v / 2, clip = 1 + v % 2;
            char p[1200];
            snprintf(p, sizeof p, "%s/%s/v_%s_g%02d_c%02d.avi", out, names[c], names[c], g, clip);
            vt_frames f;
            ck_assert_msg(vt_video_decode(p, NULL, &f, err, sizeof err) == 0, "%s", err);
            ck_assert_int_eq(f.n, T);
            /* The object's centre, to write rotation and scaling as flows. */
            vt_synth_render(vt_synth_class_find(names[c]), o.seed, g, clip, W, H, T, 25, r, st);
            double num = 0, den = 0;
            for (int t = 0; t + 1 < T; t++) {
                double pn = 0, pd = 0;
                for (int y = 1; y < H - 1; y++)
                    for (int x = 1; x < W - 1; x++) {
                        const uint8_t *a = f.data + (((size_t)t * H + y) * W + x) * 3;
                        const uint8_t *b = a + (size_t)W * H * 3;
                        double it = 0, ix = 0, iy = 0;
                        for (int ch = 0; ch < 3; ch++) {
                            it += b[ch] - a[ch];
                            ix += 0.25 * (a[ch + 3] - a[ch - 3] + b[ch + 3] - b[ch - 3]);
                            iy += 0.25 * (a[ch + 3 * W] - a[ch - 3 * W] + b[ch + 3 * W] -
                                          b[ch - 3 * W]);
                        }
                        double dx = x + 0.5 - st[t].cx, dy = y + 0.5 - st[t].cy;
                        /* Rotation and scaling: only the object itself, as
                         * the background would only add noise far from
                         * the centre, where these flows are largest. */
                        if (c >= 4 && dx * dx + dy * dy > 1.2 * 1.2 * st[t].radius * st[t].radius)
                            continue;
                        double basis = c < 2 ? ix : c < 4 ? iy
                                     : c < 6 ? -dy * ix + dx * iy : dx * ix + dy * iy;
                        pn -= it * basis;
                        pd += basis * basis;
                    }
                /* Grow/Shrink restart once per cycle; skip that frame pair. */
                if (c >= 6 && fabs(log(st[t + 1].radius / st[t].radius)) > 0.2)
                    continue;
                num += pn, den += pd;
            }
            double est = num / den * sign[c];
            lo = fmin(lo, est), hi = fmax(hi, est);
            vt_frames_free(&f);
        }
        printf("vsynth decoded %-9s: signed flow estimate in [%.4f, %.4f]\n", names[c], lo, hi);
        ck_assert_msg(lo > 0, "%s: motion not visible in the decoded pixels", names[c]);
    }
    free(r);
    remove_tmpdir();
}
END_TEST

static Suite *video_suite(void)
{
    Suite *s = suite_create("video");
    TCase *tc = tcase_create("video");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, roundtrip_our_encoder);
    tcase_add_test(tc, colours_survive_roundtrip);
    tcase_add_test(tc, ffmpeg_made_files);
    tcase_add_test(tc, resize_sizes_and_filter);
    tcase_add_test(tc, fps_resampling_picks_nearest_frames);
    tcase_add_test(tc, start_time_gives_the_same_frames);
    tcase_add_test(tc, decoder_threads_give_identical_frames);
    tcase_add_test(tc, broken_files_fail_cleanly);
    tcase_add_test(tc, encoder_errors_fail_cleanly);
    tcase_add_test(tc, official_list_format_is_what_we_parse);
    tcase_add_test(tc, vsynth_layout_lists_and_determinism);
    tcase_add_test(tc, vsynth_command_line);
    tcase_add_test(tc, vsynth_pairs_differ_only_in_motion);
    tcase_add_test(tc, vsynth_motion_visible_in_decoded_pixels);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(video_suite)
