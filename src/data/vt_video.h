/* vt_video.h - decoding video files with FFmpeg (libavformat, libavcodec,
 * libswscale) into RGB frames, and encoding frames (for vsynth and
 * vpredict --annotate). Library code: returns 0 / -1 with a message that
 * names the file and the reason; never exits, never crashes on a broken
 * file. */
#ifndef VT_VIDEO_H
#define VT_VIDEO_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    /* Output size. Both 0: keep the source size. width and height set:
     * exactly that (e.g. 171x128 as C3D). short_side set (and width/height
     * 0): scale so the shorter side has this many pixels, keep aspect. */
    int width, height;
    int short_side;
    /* Resample to this frame rate by picking the nearest source frame in
     * presentation time (0 = keep every decoded frame). */
    double fps;
    /* Stop after this many output frames (0 = all). */
    int max_frames;
    /* libavcodec decoder threads (0 or 1 = decode in the calling thread,
     * the right choice when several files are decoded in parallel; > 1 lets
     * the codec use frame/slice threads). The output is identical either
     * way: FFmpeg's decoders are bit-exact across thread counts. */
    int threads;
    /* A truncated file (its container declares more data than the file
     * holds, or the last packet is cut short) is an error by default, like
     * every other broken file. Set this to return the frames that decode
     * before the cut instead (vt_frames.truncated is then 1). */
    int allow_truncated;
    /* Start here (seconds from the start of the stream) instead of at the
     * first frame: the decoder seeks to the keyframe before it and drops
     * what precedes it, so a short clip from a long video costs little.
     * With fps = 0 the first frame returned is the one nearest to
     * start_time (or the first after it); with fps > 0 the output instants
     * are start_time + k / fps. */
    double start_time;
} vt_decode_opts;

typedef struct {
    uint8_t *data;  /* (n, h, w, 3) RGB24, malloc'd */
    int n, h, w;
    double fps;     /* of the returned frames */
    int src_w, src_h;
    double src_fps;
    int truncated;  /* the file is cut short (only with allow_truncated) */
} vt_frames;

/* Decodes every frame of the file's video stream, wherever it is (the
 * frame count is what actually decodes, not the header's). o may be NULL
 * (source size, every frame). A missing, empty, non-media, video-less,
 * truncated or undecodable file returns -1 with one line "<path>: <reason>"
 * in err and out->data NULL (docs/data.md lists the reasons); the work on a
 * damaged stream is bounded, so it never hangs. Thread-safe. */
int vt_video_decode(const char *path, const vt_decode_opts *o, vt_frames *out,
                    char *err, size_t errlen);
void vt_frames_free(vt_frames *f);

/* Writes RGB24 frames (n, h, w, 3) to a video file. codec: "mpeg4" (XviD-
 * like MPEG-4 Part 2, AVI), "mjpeg" (AVI), "h264" (MP4, if the encoder is
 * available) or NULL for the container's default; the container follows the
 * file extension. */
int vt_video_encode(const char *path, const char *codec, const uint8_t *rgb,
                    int n, int h, int w, int fps, char *err, size_t errlen);

#endif
