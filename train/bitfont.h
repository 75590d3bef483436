/* bitfont.h - text on RGB24 frames (n, h, w, 3) with a built-in 5x7
 * bitmap font; everything outside the frame is clipped. */
#ifndef VT_BITFONT_H
#define VT_BITFONT_H

#include <stdint.h>

#define VT_GLYPH_W 6 /* cell size at scale 1, spacing included */
#define VT_GLYPH_H 8

/* Width in pixels of s drawn at this scale. */
int vt_text_width(const char *s, int scale);
/* Top-left corner at (x, y); characters outside ' '..'~' are drawn as '?'. */
void vt_draw_text(uint8_t *rgb, int h, int w, int x, int y, const char *s, int scale,
                  const uint8_t fg[3]);
/* Blends colour c over the rectangle with weight alpha (1: opaque). */
void vt_fill_rect(uint8_t *rgb, int h, int w, int x, int y, int rw, int rh, const uint8_t c[3],
                  float alpha);

#endif
