/* vt_synth.h - the synthetic motion dataset (vsynth): real video files in
 * exactly the UCF101 layout, whose classes differ only in how a textured
 * object moves, so that no single frame tells the members of a pair apart
 * (see docs/data.md, "Synthetic dataset"). */
#ifndef VT_SYNTH_H
#define VT_SYNTH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *out_dir;
    const char *classes;  /* comma-separated subset, NULL = every class */
    int videos_per_class; /* default 20 */
    int groups;           /* per class, 0 = about 4 videos a group (<= 25) */
    int width, height;    /* default 160x120; even, >= 32 */
    int frames;           /* per video, default 40 */
    int fps;              /* default 25 */
    uint64_t seed;        /* default 1 */
    const char *codec;    /* "mpeg4" (XviD tag, default) or "mjpeg"; AVI */
} vt_synth_opts;

typedef struct {
    int n_classes, n_videos;
    int groups, test_groups, clips_per_group;
    int n_train, n_test; /* split 1 */
} vt_synth_info;

void vt_synth_defaults(vt_synth_opts *o);

/* The built-in classes, in classInd order: paired classes are adjacent
 * (MoveLeft/MoveRight, MoveUp/MoveDown, RotateCW/RotateCCW, Grow/Shrink),
 * then Still and Flicker. */
int vt_synth_n_classes(void);
const char *vt_synth_class_name(int k);
const char *vt_synth_class_help(int k);
int vt_synth_class_find(const char *name); /* -1 when unknown */

/* Where the object is in one frame (pixels, radians; gain = brightness
 * factor), for tests and for looking at the data. */
typedef struct {
    float cx, cy, radius, angle, gain;
} vt_synth_state;

/* Renders video (group, clip) of class k (both 1-based, as in the file
 * names): n frames (n, h, w, 3) RGB24 into rgb, and the object's state in
 * each frame into st (may be NULL). fps sets the speeds (they are defined
 * per second). A function of its arguments only. Returns 0, or -1 for bad
 * arguments. */
int vt_synth_render(int k, uint64_t seed, int group, int clip, int w, int h,
                    int n, int fps, uint8_t *rgb, vt_synth_state *st);

/* Writes the whole dataset: out_dir/<Class>/v_<Class>_gXX_cYY.avi and
 * out_dir/ucfTrainTestlist/{classInd,trainlist0S,testlist0S}.txt for
 * S = 1, 2, 3, byte for byte in the format of the official UCF101 files.
 * Returns 0, -2 for invalid options, -1 for an I/O or encoder failure; err
 * gets one line. info may be NULL. */
int vt_synth_generate(const vt_synth_opts *o, vt_synth_info *info, char *err,
                      size_t errlen);

#endif
