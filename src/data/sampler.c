/* sampler.c - which frames and which pixels make a clip, and the uint8 ->
 * float conversion with flip and normalisation.
 *
 *   clip in  (T, ch, cw, 3) uint8 RGB, as read from a store or a decoder
 *   clip out (3, T, ch, cw) float32, one sample of the (N, C, T, H, W) batch
 *
 * Everything here is a pure function of its arguments: the loader draws
 * the random numbers (pos, uy, ux, flip) from hash(seed, epoch, batch). */
#include "vt_data.h"

#include <math.h>
#include <string.h>

void vt_clip_indices(int n_frames, int T, double step, double pos, int *idx)
{
    if (n_frames <= 0) {
        memset(idx, 0, (size_t)T * sizeof *idx);
        return;
    }
    if (!(step > 0))
        step = 1;
    int span = (int)lround((T - 1) * step) + 1;
    if (n_frames >= span) {
        int room = n_frames - span + 1;
        int t0 = (int)floor(pos * room);
        t0 = t0 < 0 ? 0 : t0 >= room ? room - 1 : t0;
        for (int i = 0; i < T; i++)
            idx[i] = t0 + (int)lround(i * step);
    } else {
        /* Too short for one clip: loop the video rather than freeze it, so
         * the clip keeps the motion of a normal one. */
        for (int i = 0; i < T; i++)
            idx[i] = (int)(lround(i * step) % n_frames);
    }
}

static int random_offset(int size, int crop, float u)
{
    if (size < crop)
        return (size - crop) / 2;
    int room = size - crop + 1;
    int o = (int)floorf(u * (float)room);
    return o < 0 ? 0 : o >= room ? room - 1 : o;
}

void vt_crop_offset(int h, int w, int ch, int cw, int which, float uy, float ux,
                    int *y0, int *x0)
{
    if (which < 0) {
        *y0 = random_offset(h, ch, uy);
        *x0 = random_offset(w, cw, ux);
        return;
    }
    *y0 = (h - ch) / 2;
    *x0 = (w - cw) / 2;
    if (which == 0)
        return;
    /* 3 crops along the longer side: start, centre, end. */
    int *o = w >= h ? x0 : y0;
    int room = w >= h ? w - cw : h - ch;
    if (room < 0)
        return;
    *o = which == 1 ? 0 : which == 2 ? room / 2 : room;
}

void vt_norm_init(vt_norm *n, int mode, const float mean[3], const float std[3],
                  const float *cube, int cube_t, int cube_h, int cube_w)
{
    memset(n, 0, sizeof *n);
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            if (mode == VT_NORM_C3D)
                n->lut[c][v] = (float)v - (cube ? 0.0f : 255.0f * mean[c]);
            else
                n->lut[c][v] = ((float)v * (1.0f / 255.0f) - mean[c]) / std[c];
        }
    if (mode == VT_NORM_C3D && cube) {
        n->cube = cube;
        n->cube_t = cube_t;
        n->cube_h = cube_h;
        n->cube_w = cube_w;
    }
}

static inline int clampi(int v, int hi) { return v < 0 ? 0 : v >= hi ? hi - 1 : v; }

void vt_clip_to_float(const uint8_t *src, int T, int ch, int cw, int flip,
                      const vt_norm *n, int y0, int x0, float *dst)
{
    size_t plane = (size_t)T * (size_t)ch * (size_t)cw;
    for (int c = 0; c < 3; c++) {
        const float *lut = n->lut[c];
        float *d = dst + (size_t)c * plane;
        for (int t = 0; t < T; t++)
            for (int y = 0; y < ch; y++) {
                const uint8_t *row = src + (((size_t)t * ch + y) * cw) * 3 + c;
                if (flip) {
                    for (int x = 0; x < cw; x++)
                        d[x] = lut[row[(size_t)(cw - 1 - x) * 3]];
                } else {
                    for (int x = 0; x < cw; x++)
                        d[x] = lut[row[(size_t)x * 3]];
                }
                if (n->cube) {
                    /* The cube is indexed in source coordinates, so the
                     * same pixel loses the same mean flipped or not. */
                    const float *m =
                        n->cube + (((size_t)c * n->cube_t + (size_t)clampi(t, n->cube_t)) *
                                   n->cube_h + (size_t)clampi(y0 + y, n->cube_h)) *
                                      n->cube_w;
                    for (int x = 0; x < cw; x++) {
                        int sx = flip ? cw - 1 - x : x;
                        d[x] -= m[clampi(x0 + sx, n->cube_w)];
                    }
                }
                d += cw;
            }
    }
}
