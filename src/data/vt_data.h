/* vt_data.h - the video clip pipeline: split lists (UCF101's format), the
 * HDF5 clip store, clip sampling and augmentation, and the batch loader that
 * assembles (B, 3, T, H, W) float batches in background threads.
 *
 * Library code: functions return 0 on success and -1 with a message in err
 * (file:line for list files); nothing here exits. Decoding is vt_video.h's.
 * docs/data.md describes the list formats, the store layout and the
 * sampling rules in full. */
#ifndef VT_DATA_H
#define VT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "vt_video.h"

/* ==== Split lists ======================================================= */

/* One line of a train/test list. */
typedef struct {
    char *path;  /* as written, relative to the dataset root ("Class/v.avi") */
    int label;   /* 0-based: the classInd.txt number minus one */
    int group;   /* the XX of "_gXX_" in the file name, -1 when absent */
    int line;    /* 1-based line in its list file */
} vt_list_entry;

/* classInd.txt: "<number> <name>" per line, numbers 1..N each exactly once.
 * *names is malloc'd, [n] entries, index = number - 1. */
int vt_classes_read(const char *path, char ***names, int *n, char *err,
                    size_t errlen);
void vt_classes_free(char **names, int n);

/* A trainlist/testlist file: "<path>[ <number>]" per line. The label column
 * is optional; the folder part of the path must name a class (exactly, or
 * failing that case-insensitively), and a label, when given, must agree
 * with it. CRLF or LF, blank lines, trailing blanks and a UTF-8 BOM are
 * accepted; duplicates and unknown classes are errors naming file:line. */
int vt_list_read(const char *path, char *const *classes, int n_classes,
                 vt_list_entry **out, int *n, char *err, size_t errlen);
void vt_list_free(vt_list_entry *e, int n);

typedef struct {
    int split;             /* 1-based: trainlist%02d.txt / testlist%02d.txt */
    int n_classes;
    char **classes;        /* [n_classes], index = label */
    vt_list_entry *train;  /* [n_train], in list order */
    vt_list_entry *test;   /* [n_test] */
    int n_train, n_test;
} vt_split;

/* Reads classInd.txt and split `split`'s two lists from dir. */
int vt_split_load(const char *dir, int split, vt_split *s, char *err,
                  size_t errlen);
void vt_split_free(vt_split *s);
/* Number of splits 1..n for which both list files exist in dir. */
int vt_split_count(const char *dir);
/* Test videos whose (class, group) also occurs among the training videos,
 * and videos listed in both lists. Both 0 for a group-disjoint split. */
void vt_split_overlap(const vt_split *s, int *shared_groups, int *shared_videos);

/* Every video of every split in a directory, for building a store. */
typedef struct {
    int n_classes;
    char **classes;
    int n_splits;
    int n;                /* distinct videos over all lists */
    vt_list_entry *v;     /* [n], sorted by path (byte order) */
    signed char *member;  /* [n * n_splits]: 0 not listed, 1 train, 2 test */
} vt_catalog;

int vt_catalog_load(const char *dir, vt_catalog *c, char *err, size_t errlen);
void vt_catalog_free(vt_catalog *c);

/* ==== Clip store ======================================================== */

/* How the frames of a store were (or are to be) made. */
typedef struct {
    int height, width;  /* exactly this size; both 0 = see short_side */
    int short_side;     /* shorter side this long, aspect kept; 0 = source */
    double fps;         /* resampled to this rate; 0 = every decoded frame */
    int compress;       /* gzip level 0..9 of the frame chunks (0 = none) */
    int chunk_frames;   /* frames per chunk; 0 = 16 */
} vt_store_opts;

/* Everything a store knows besides the pixels; arrays are [n_videos]
 * in the store's order (sorted by path). */
typedef struct {
    int n_videos, n_classes, n_splits;
    char **classes;       /* [n_classes] */
    char **paths;         /* relative to the dataset root */
    int *labels;          /* 0-based */
    int *frames;          /* frames stored; 0 = not stored (see errors) */
    int *heights, *widths;
    double *fps;          /* of the stored frames */
    signed char *split;   /* [n_videos * n_splits]: 0, 1 train, 2 test */
    char **errors;        /* why a video is not stored; NULL when stored */
    vt_store_opts opts;
} vt_store_meta;

typedef struct vt_clipstore vt_clipstore;

/* Opens a complete store read-only. */
int vt_clipstore_open(const char *path, vt_clipstore **s, char *err,
                      size_t errlen);
const vt_store_meta *vt_clipstore_meta(const vt_clipstore *s);
/* Copies frames t[0..n-1] (each in [0, frames)) of `video`, cropped to the
 * window (y0, x0, h, w) that must lie inside the frame, into dst as
 * (n, h, w, 3) uint8. Safe to call from several threads. */
int vt_clipstore_read(vt_clipstore *s, int video, const int *t, int n, int y0,
                      int x0, int h, int w, uint8_t *dst, char *err,
                      size_t errlen);
void vt_clipstore_close(vt_clipstore *s);

/* Writing: frames go into "<path>.partial", which is renamed to path by
 * vt_storewriter_finish(). Opening resumes an existing .partial (or a
 * complete store, which is moved back to .partial until finish) when it
 * was made with the same options; videos already stored are reported by
 * vt_storewriter_has() so the caller can skip them. Single-threaded. */
typedef struct vt_storewriter vt_storewriter;

int vt_storewriter_open(const char *path, const vt_store_opts *o,
                        vt_storewriter **w, int *resumed, char *err,
                        size_t errlen);
int vt_storewriter_has(vt_storewriter *w, const char *relpath);
int vt_storewriter_put(vt_storewriter *w, const char *relpath, int label,
                       const vt_frames *f, char *err, size_t errlen);
/* Writes the metadata for the catalog's videos (errors[i] is the reason
 * video i could not be stored, or NULL), then closes and renames. */
int vt_storewriter_finish(vt_storewriter *w, const vt_catalog *c,
                          char *const *errors, char *err, size_t errlen);
/* Closes without finishing; the .partial stays for a later resume. */
void vt_storewriter_abort(vt_storewriter *w);

/* ==== Sampling and augmentation ========================================= */

/* Frame indices of one clip of T frames taken every `step` source frames
 * (fractional steps round to the nearest frame). The clip spans
 * L = round((T-1)*step) + 1 frames and starts at
 * floor(pos * (n_frames - L + 1)), pos in [0, 1): training draws pos
 * uniformly, test clip k of K uses pos = (k + 0.5) / K.
 * Short-video rule: when n_frames < L the clip starts at frame 0 and the
 * indices wrap around (the video loops), so every index is in range. */
void vt_clip_indices(int n_frames, int T, double step, double pos, int *idx);

/* Top-left corner of a (ch, cw) crop of an (h, w) frame.
 * which < 0: random, at floor(u * (h - ch + 1)) and likewise for x.
 * which = 0: centre. For 3-crop testing, which = 1, 2, 3 give start,
 * centre and end along the longer side (centred on the other).
 * A frame smaller than the crop gives a negative offset (centred); the
 * pixel copy then clamps coordinates to the frame (edge replication). */
void vt_crop_offset(int h, int w, int ch, int cw, int which, float uy, float ux,
                    int *y0, int *x0);

enum { VT_NORM_MEAN_STD = 0, VT_NORM_C3D = 1 };

/* Per-channel lookup tables built from the config: out = lut[c][v]. */
typedef struct {
    float lut[3][256];
    /* C3D mean cube (3, T, H, W) subtracted at the crop's source position,
     * or NULL. */
    const float *cube;
    int cube_t, cube_h, cube_w;
} vt_norm;

/* mode VT_NORM_MEAN_STD: (v / 255 - mean[c]) / std[c].
 * mode VT_NORM_C3D:      v - 255 * mean[c], or v - cube when cube is set. */
void vt_norm_init(vt_norm *n, int mode, const float mean[3], const float std[3],
                  const float *cube, int cube_t, int cube_h, int cube_w);

/* (T, ch, cw, 3) RGB uint8 -> (3, T, ch, cw) float, mirrored left-right
 * when flip; (y0, x0) is the crop's source position (for the mean cube). */
void vt_clip_to_float(const uint8_t *src, int T, int ch, int cw, int flip,
                      const vt_norm *n, int y0, int x0, float *dst);

/* ==== Loader ============================================================ */

typedef struct {
    /* Source: the clip store when `store` is set, else raw videos under
     * `root` listed by the files in `splits`. */
    const char *store;
    const char *root;
    const char *splits;
    int split;              /* 1..n */

    /* Temporal sampling. fps > 0 resamples to that rate first (raw: in the
     * decoder; store: by nearest frame from the stored rate), then every
     * frame_stride-th frame is taken. */
    int clip_len;           /* T, 16 */
    int frame_stride;       /* 1 */
    double fps;             /* 0 = as decoded / stored */

    /* Spatial. Raw videos are decoded to resize_h x resize_w (or short_side);
     * a store's frames are used at their stored size (resize must be 0 or
     * equal to it). */
    int resize_h, resize_w; /* 128 x 171 */
    int short_side;
    int crop_h, crop_w;     /* 112 x 112 */
    int flip;               /* training: mirror the whole clip with p = 0.5 */

    /* Normalisation (see vt_norm_init); mean_file: HDF5 file holding a
     * float dataset "mean" of shape (3, T, H, W) for VT_NORM_C3D. */
    int norm;
    float mean[3], std[3];
    const char *mean_file;

    /* Test views: K clips spread over each video, 1 (centre) or 3 crops. */
    int clips_per_video;
    int crops;

    int batch;
    int threads;            /* 0 = build batches in the caller's thread */
    int prefetch;           /* batches ready ahead of the consumer */
    uint64_t seed;
    int drop_last;          /* training: drop a last partial batch */
    int shuffle;            /* training: new video order every epoch */

    /* Data-parallel runs (N processes, docs/distributed.md): this process
     * is shard `shard` of `n_shards`; n_shards 0 or 1 = the whole data.
     * Training: batch b of epoch e is still the one-process batch (batch =
     * the global batch size); this process builds only its contiguous share
     * of it, clips [shard * n / N, (shard + 1) * n / N), with the random
     * numbers those clips get in the whole batch, so the shares of all
     * shards together are exactly the one-process batch.
     * Testing: the videos are cut into N contiguous blocks; this process
     * sees every view of its block only, in batches of `batch` views. */
    int shard, n_shards;

    /* Broken videos are reported through this once each (called from a
     * worker thread, never concurrently). NULL = a line on stderr. */
    void (*warn)(void *ud, const char *msg);
    void *warn_ud;
} vt_data_config;

void vt_data_config_default(vt_data_config *c);

enum { VT_TRAIN = 0, VT_TEST = 1 };

/* One batch; valid until the next call to vt_loader_next/seek/close. */
typedef struct {
    int n;          /* clips (< batch only for a last partial batch or when
                       test views of broken videos were dropped; may be 0) */
    int epoch, index;
    int t, h, w;    /* clip_len, crop_h, crop_w */
    float *x;       /* (n, 3, T, H, W) */
    int *label;     /* (n) 0-based */
    int *video;     /* (n) index into the loader's video list */
    int *clip;      /* (n) view within the video: k * crops + crop (test);
                       0 in training */
    int first;      /* training shard: index in the whole batch of this
                       share's first clip (0 without sharding) */
    int total;      /* training: clips in the whole batch (all shards) */
} vt_batch;

typedef struct {
    double wait_s;      /* time the consumer blocked waiting for data */
    long batches, clips;
    int n_videos;       /* in this loader's list */
    int skipped;        /* broken videos found so far (reported once each) */
    int missing;        /* listed for this split but absent from the store */
} vt_loader_stats;

typedef struct vt_loader vt_loader;

/* mode VT_TRAIN: the split's training list, random clips and crops.
 * mode VT_TEST: its test list, clips_per_video * crops views per video in
 * order (video, clip, crop), never shuffled or dropped.
 * The loader's videos are the list's, sorted by path (as in a store), minus
 * those a store does not hold. */
int vt_loader_open(const vt_data_config *c, int mode, vt_loader **l, char *err,
                   size_t errlen);
/* 1: *b holds the next batch. 0: the epoch ended (the next call starts the
 * next epoch). -1: error. Batch b of epoch e depends only on the seed, e, b
 * and the data, never on the number of threads or their timing. */
int vt_loader_next(vt_loader *l, const vt_batch **b, char *err, size_t errlen);
int vt_loader_batches_per_epoch(const vt_loader *l);
/* The batch the next call returns: checkpoint this, seek to it to resume. */
void vt_loader_position(const vt_loader *l, int *epoch, int *batch);
int vt_loader_seek(vt_loader *l, int epoch, int batch, char *err, size_t errlen);
void vt_loader_stats_get(vt_loader *l, vt_loader_stats *s);
int vt_loader_num_videos(const vt_loader *l);
const char *vt_loader_video_path(const vt_loader *l, int video);
int vt_loader_video_label(const vt_loader *l, int video);
int vt_loader_num_classes(const vt_loader *l);
/* n_shards of the config (1 without sharding). */
int vt_loader_num_shards(const vt_loader *l);
const char *vt_loader_class_name(const vt_loader *l, int label);
void vt_loader_close(vt_loader *l);

#endif
