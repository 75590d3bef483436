/* util.c - run-directory helpers: mkdir -p, atomic text files, SVG charts
 * (training curves, confusion matrices) with no plotting library. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vt_run.h"

int vt_mkdirs(const char *path, char *err, size_t errlen)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char save = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                snprintf(err, errlen, "%s: cannot create directory: %s", buf, strerror(errno));
                return -1;
            }
            *p = save;
            if (!save)
                break;
        }
    }
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: not a directory", path);
        return -1;
    }
    if (access(buf, W_OK) != 0) {
        snprintf(err, errlen, "%s: directory is not writable: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int vt_write_file_atomic(const char *path, const char *text, size_t len, char *err,
                         size_t errlen)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: cannot finish writing: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ==== SVG =============================================================== */

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k >= 0 && b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + (size_t)k + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        VT_ASSERT(s, "out of memory");
        b->s = s;
        b->cap = cap;
    }
}

static void xml_text(sbuf *b, const char *t)
{
    for (; *t; t++) {
        switch (*t) {
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '&': sb_printf(b, "&amp;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        default: sb_printf(b, "%c", *t);
        }
    }
}

static const char *const COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"};

/* One panel per series (their scales differ: loss vs accuracy). */
int vt_svg_lines(const char *path, const char *title, const char *xlabel,
                 const vt_series *s, int n_series, char *err, size_t errlen)
{
    const int W = 720, PH = 220, M = 60;
    int H = 40 + n_series * (PH + 40);
    sbuf b = {0};
    sb_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "font-family=\"sans-serif\" font-size=\"12\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                  "<text x=\"%d\" y=\"22\" font-size=\"15\">", W, H, M);
    xml_text(&b, title);
    sb_printf(&b, "</text>\n");
    for (int k = 0; k < n_series; k++) {
        const vt_series *se = &s[k];
        int top = 40 + k * (PH + 40), x0 = M, x1 = W - 20, y0 = top + PH, y1 = top + 10;
        double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
        for (int i = 0; i < se->n; i++) {
            if (!isfinite(se->y[i]))
                continue;
            xmin = fmin(xmin, se->x[i]);
            xmax = fmax(xmax, se->x[i]);
            ymin = fmin(ymin, se->y[i]);
            ymax = fmax(ymax, se->y[i]);
        }
        if (!(xmax > xmin)) {
            xmin = isfinite(xmin) ? xmin - 1 : 0;
            xmax = xmin + 2;
        }
        if (!(ymax > ymin)) {
            ymin = isfinite(ymin) ? ymin - 0.5 : 0;
            ymax = ymin + 1;
        }
        sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                      "stroke=\"#888\"/>\n", x0, y1, x1 - x0, y0 - y1);
        for (int g = 0; g <= 4; g++) {
            double v = ymin + (ymax - ymin) * g / 4;
            double y = y0 - (y0 - y1) * (double)g / 4;
            sb_printf(&b, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                          "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n",
                      x0, x1, y, y, x0 - 4, y + 4, v);
        }
        sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.0f</text>"
                      "<text x=\"%d\" y=\"%d\">%.0f</text>"
                      "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">",
                  x1, y0 + 15, xmax, x0, y0 + 15, xmin, (x0 + x1) / 2, y0 + 15);
        xml_text(&b, xlabel);
        sb_printf(&b, "</text>\n<text x=\"%d\" y=\"%d\" fill=\"%s\">", x0 + 6, y1 + 14,
                  COLORS[k % 4]);
        xml_text(&b, se->name);
        sb_printf(&b, "</text>\n<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                  COLORS[k % 4]);
        for (int i = 0; i < se->n; i++) {
            if (!isfinite(se->y[i]))
                continue;
            double x = x0 + (x1 - x0) * (se->x[i] - xmin) / (xmax - xmin);
            double y = y0 - (y0 - y1) * (se->y[i] - ymin) / (ymax - ymin);
            sb_printf(&b, "%.1f,%.1f ", x, y);
        }
        sb_printf(&b, "\"/>\n");
    }
    sb_printf(&b, "</svg>\n");
    int rc = vt_write_file_atomic(path, b.s, b.n, err, errlen);
    free(b.s);
    return rc;
}

int vt_svg_confusion(const char *path, const long *conf, int n, char *const *names,
                     char *err, size_t errlen)
{
    int cell = n <= 20 ? 24 : n <= 60 ? 10 : 6, label = n <= 60 ? 140 : 0;
    int W = label + 20 + n * cell, H = label + 40 + n * cell;
    sbuf b = {0};
    sb_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "font-family=\"sans-serif\" font-size=\"%d\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                  "<text x=\"10\" y=\"18\" font-size=\"14\">confusion matrix (rows: true class, "
                  "columns: predicted; shade: share of the row)</text>\n",
              W, H, cell > 12 ? 11 : 8);
    int ox = label + 10, oy = label + 30;
    for (int i = 0; i < n; i++) {
        long row = 0;
        for (int j = 0; j < n; j++)
            row += conf[(size_t)i * n + j];
        for (int j = 0; j < n; j++) {
            long v = conf[(size_t)i * n + j];
            double f = row ? (double)v / row : 0;
            int shade = (int)lround(255 * (1 - f));
            sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                          "fill=\"rgb(%d,%d,255)\"><title>%ld</title></rect>\n",
                      ox + j * cell, oy + i * cell, cell, cell, shade, shade, v);
        }
        if (label && names) {
            sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", ox - 4,
                      oy + i * cell + cell - 3);
            xml_text(&b, names[i]);
            sb_printf(&b, "</text>\n<text transform=\"translate(%d,%d) rotate(-60)\">",
                      ox + i * cell + cell / 2 + 3, oy - 4);
            xml_text(&b, names[i]);
            sb_printf(&b, "</text>\n");
        }
    }
    sb_printf(&b, "</svg>\n");
    int rc = vt_write_file_atomic(path, b.s, b.n, err, errlen);
    free(b.s);
    return rc;
}
