/* vsynth.c - writes the synthetic motion dataset in the UCF101 layout.
 * Exit status: 0 done, 1 I/O or encoder failure, 2 bad arguments. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vt_synth.h"

static void usage(FILE *f)
{
    vt_synth_opts d;
    vt_synth_defaults(&d);
    fprintf(f,
            "usage: vsynth --out DIR [options]\n"
            "\n"
            "Writes a synthetic video classification dataset in exactly the UCF101\n"
            "layout: DIR/<Class>/v_<Class>_gXX_cYY.avi and DIR/ucfTrainTestlist/\n"
            "{classInd,trainlist01-03,testlist01-03}.txt (CRLF lines, as the official\n"
            "files). Videos are split by group like UCF101 (split 1 tests the first\n"
            "~28%% of the groups). Paired classes differ only in the direction of the\n"
            "motion: a single frame cannot tell them apart, a few frames can.\n"
            "\n"
            "options:\n"
            "  --out DIR               output directory (created if missing)\n"
            "  --classes A,B,...       subset of the classes below (default: all)\n"
            "  --videos-per-class N    default %d\n"
            "  --groups G              groups per class (default: about 4 videos a\n"
            "                          group, at most 25)\n"
            "  --size WxH              frame size, even numbers (default %dx%d)\n"
            "  --frames N              frames per video (default %d)\n"
            "  --fps F                 frame rate (default %d); speeds are per second\n"
            "  --seed S                random seed (default %llu); the same seed gives\n"
            "                          byte-identical files\n"
            "  --codec mpeg4|mjpeg     video codec in the AVI files (default mpeg4,\n"
            "                          tagged XVID like UCF101)\n"
            "  -h, --help              this text\n"
            "\n"
            "classes:\n",
            d.videos_per_class, d.width, d.height, d.frames, d.fps,
            (unsigned long long)d.seed);
    for (int k = 0; k < vt_synth_n_classes(); k++)
        fprintf(f, "  %-10s %s\n", vt_synth_class_name(k), vt_synth_class_help(k));
}

static int bad_arg(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "vsynth: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n(see vsynth --help)\n");
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

int main(int argc, char **argv)
{
    vt_synth_opts o;
    vt_synth_defaults(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (strncmp(a, "--", 2))
            return bad_arg("unexpected argument '%s'%s", a, "");
        if (i + 1 >= argc)
            return bad_arg("%s needs a value%s", a, "");
        const char *v = argv[++i];
        if (!strcmp(a, "--out")) {
            o.out_dir = v;
        } else if (!strcmp(a, "--classes")) {
            o.classes = v;
        } else if (!strcmp(a, "--videos-per-class")) {
            if (parse_int(v, 2, 10000, &o.videos_per_class))
                return bad_arg("--videos-per-class: '%s' is not a number in 2..10000%s", v, "");
        } else if (!strcmp(a, "--groups")) {
            if (parse_int(v, 2, 10000, &o.groups))
                return bad_arg("--groups: '%s' is not a number in 2..10000%s", v, "");
        } else if (!strcmp(a, "--size")) {
            int w, h, k = -1;
            if (sscanf(v, "%dx%d%n", &w, &h, &k) != 2 || k != (int)strlen(v))
                return bad_arg("--size: '%s' is not WxH%s", v, "");
            o.width = w, o.height = h;
        } else if (!strcmp(a, "--frames")) {
            if (parse_int(v, 1, 100000, &o.frames))
                return bad_arg("--frames: '%s' is not a number in 1..100000%s", v, "");
        } else if (!strcmp(a, "--fps")) {
            if (parse_int(v, 1, 240, &o.fps))
                return bad_arg("--fps: '%s' is not a number in 1..240%s", v, "");
        } else if (!strcmp(a, "--seed")) {
            char *e;
            errno = 0;
            unsigned long long s = strtoull(v, &e, 10);
            if (errno || e == v || *e || v[0] == '-')
                return bad_arg("--seed: '%s' is not a non-negative integer%s", v, "");
            o.seed = s;
        } else if (!strcmp(a, "--codec")) {
            o.codec = v;
        } else {
            return bad_arg("unknown option '%s'%s", a, "");
        }
    }
    if (!o.out_dir)
        return bad_arg("--out DIR is required%s%s", "", "");

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char err[1024];
    vt_synth_info info;
    int r = vt_synth_generate(&o, &info, err, sizeof err);
    if (r == -2)
        return bad_arg("%s%s", err, "");
    if (r) {
        fprintf(stderr, "vsynth: %s\n", err);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("vsynth: %d videos (%d classes x %d, %d groups of up to %d; split 1: %d train, "
           "%d test) of %d frames %dx%d at %d fps in %s, %.1f s\n",
           info.n_videos, info.n_classes, o.videos_per_class, info.groups,
           info.clips_per_group, info.n_train, info.n_test, o.frames, o.width, o.height,
           o.fps, o.out_dir,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return 0;
}
