/* store.c - the HDF5 clip store (layout in docs/data.md):
 *
 *   /videos/<path>   uint8 (F, H, W, 3) per video, chunked (<= 16, H, W, 3)
 *   /classes, /paths, /labels, /frames, /heights, /widths, /fps, /split,
 *   /errors          metadata, one entry per listed video, sorted by path
 *
 * Writing goes to "<out>.partial" and is renamed when complete; each stored
 * video is flushed with a "complete" attribute, so an interrupted run
 * resumes where it stopped. Reading a clip touches only the chunks of its
 * frames: uncompressed stores are read with pread() straight from the
 * chunk addresses (no HDF5 lock, so loader threads read in parallel);
 * compressed ones through H5Dread. */
#include "vt_data.h"
#include "vt_h5.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_FORMAT "vtrain-clips"
#define STORE_VERSION 1

#define FAIL(...)                                                              \
    do {                                                                       \
        snprintf(err, errlen, __VA_ARGS__);                                    \
        goto fail;                                                             \
    } while (0)

/* ==== Small HDF5 helpers ================================================ */

static int attr_write_double(hid_t loc, const char *obj, const char *name,
                             double v)
{
    hsize_t one = 1;
    hid_t sp = H5Screate_simple(1, &one, NULL);
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) > 0)
        H5Adelete_by_name(loc, obj, name, H5P_DEFAULT);
    hid_t a = H5Acreate_by_name(loc, obj, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT,
                                H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, H5T_NATIVE_DOUBLE, &v) >= 0) ? 0 : -1;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

static int attr_int1(hid_t loc, const char *obj, const char *name, int *v)
{
    return vt_h5_attr_int(loc, obj, name, v, 1, NULL, 0);
}

static hid_t vlen_str(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

/* A 1-D or 2-D dataset written in one go (replacing an older one). */
static int write_array(hid_t f, const char *name, hid_t ftype, hid_t mtype,
                       const void *data, int ndim, const hsize_t *dims)
{
    if (H5Lexists(f, name, H5P_DEFAULT) > 0)
        H5Ldelete(f, name, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = -1;
    if (ds >= 0) {
        rc = (dims[0] == 0 || H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                       data) >= 0) ? 0 : -1;
        H5Dclose(ds);
    }
    H5Sclose(sp);
    return rc;
}

static int write_strings(hid_t f, const char *name, char *const *s, size_t n)
{
    hid_t t = vlen_str();
    const char **v = malloc((n ? n : 1) * sizeof *v);
    int rc = -1;
    if (v) {
        for (size_t i = 0; i < n; i++)
            v[i] = s[i] ? s[i] : "";
        hsize_t d = n;
        rc = write_array(f, name, t, t, v, 1, &d);
        free(v);
    }
    H5Tclose(t);
    return rc;
}

/* Reads a whole 1-D/2-D dataset of n elements in type mtype into out. */
static int read_array(hid_t f, const char *name, hid_t mtype, void *out,
                      size_t n, char *err, size_t errlen)
{
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) {
        snprintf(err, errlen, "dataset '%s' missing", name);
        return -1;
    }
    hid_t sp = H5Dget_space(ds);
    hssize_t cnt = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    int rc = -1;
    if (cnt != (hssize_t)n)
        snprintf(err, errlen, "dataset '%s' has %lld entries, expected %zu",
                 name, (long long)cnt, n);
    else if (n > 0 && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        snprintf(err, errlen, "cannot read dataset '%s'", name);
    else
        rc = 0;
    H5Dclose(ds);
    return rc;
}

static int read_strings(hid_t f, const char *name, char ***out, size_t n,
                        char *err, size_t errlen)
{
    char **raw = calloc(n ? n : 1, sizeof *raw);
    char **s = calloc(n ? n : 1, sizeof *s);
    hid_t t = vlen_str();
    int rc = -1;
    if (!raw || !s) {
        snprintf(err, errlen, "out of memory");
    } else if (read_array(f, name, t, raw, n, err, errlen) == 0) {
        rc = 0;
        for (size_t i = 0; i < n; i++) {
            s[i] = strdup(raw[i] ? raw[i] : "");
            if (!s[i])
                rc = -1;
        }
        hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
        hid_t sp = H5Dget_space(ds);
        if (n > 0) {
#if H5_VERSION_GE(1, 12, 0)
            H5Treclaim(t, sp, H5P_DEFAULT, raw);
#else
            H5Dvlen_reclaim(t, sp, H5P_DEFAULT, raw);
#endif
        }
        H5Sclose(sp);
        H5Dclose(ds);
        if (rc < 0)
            snprintf(err, errlen, "out of memory");
    }
    H5Tclose(t);
    free(raw);
    if (rc < 0) {
        for (size_t i = 0; s && i < n; i++)
            free(s[i]);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Options of an open store (root attributes). */
static int read_opts(hid_t f, vt_store_opts *o, char *err, size_t errlen)
{
    char *fmt = NULL;
    if (vt_h5_attr_str(f, ".", "format", &fmt, NULL, 0) < 0 || strcmp(fmt, STORE_FORMAT)) {
        free(fmt);
        snprintf(err, errlen, "not a vtrain clip store (no format=\"" STORE_FORMAT "\")");
        return -1;
    }
    free(fmt);
    int v = 0;
    memset(o, 0, sizeof *o);
    if (attr_int1(f, ".", "version", &v) < 0 || v != STORE_VERSION ||
        attr_int1(f, ".", "height", &o->height) < 0 ||
        attr_int1(f, ".", "width", &o->width) < 0 ||
        attr_int1(f, ".", "short_side", &o->short_side) < 0 ||
        vt_h5_attr_double(f, ".", "fps", &o->fps, 1, NULL, 0) < 0 ||
        attr_int1(f, ".", "compress", &o->compress) < 0 ||
        attr_int1(f, ".", "chunk_frames", &o->chunk_frames) < 0) {
        snprintf(err, errlen, "store attributes missing or of version %d (this "
                 "build reads version %d)", v, STORE_VERSION);
        return -1;
    }
    return 0;
}

static void opts_str(const vt_store_opts *o, char *buf, size_t len)
{
    char size[64];
    if (o->height || o->width)
        snprintf(size, sizeof size, "%dx%d", o->height, o->width);
    else if (o->short_side)
        snprintf(size, sizeof size, "%d", o->short_side);
    else
        snprintf(size, sizeof size, "source");
    snprintf(buf, len, "--size %s --fps %g --compress %d (chunk %d frames)", size,
             o->fps, o->compress, o->chunk_frames);
}

/* ==== Writer ============================================================ */

struct vt_storewriter {
    hid_t f;
    char *path, *partial;
    vt_store_opts o;
};

static void norm_opts(vt_store_opts *o)
{
    if (o->chunk_frames <= 0)
        o->chunk_frames = 16;
}

static int write_root_attrs(hid_t f, const vt_store_opts *o, int complete)
{
    int v = STORE_VERSION;
    int rc = 0;
    rc |= vt_h5_write_attr_str(f, ".", "format", STORE_FORMAT);
    rc |= vt_h5_write_attr_int(f, ".", "version", &v, 1);
    rc |= vt_h5_write_attr_int(f, ".", "height", &o->height, 1);
    rc |= vt_h5_write_attr_int(f, ".", "width", &o->width, 1);
    rc |= vt_h5_write_attr_int(f, ".", "short_side", &o->short_side, 1);
    rc |= attr_write_double(f, ".", "fps", o->fps);
    rc |= vt_h5_write_attr_int(f, ".", "compress", &o->compress, 1);
    rc |= vt_h5_write_attr_int(f, ".", "chunk_frames", &o->chunk_frames, 1);
    rc |= vt_h5_write_attr_int(f, ".", "complete", &complete, 1);
    return rc ? -1 : 0;
}

/* Opens an existing store file for writing if its options equal o. */
static hid_t reopen(const char *file, const vt_store_opts *o, char *err,
                    size_t errlen)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) {
        snprintf(err, errlen, "%s: cannot open as HDF5 to resume (delete it to "
                 "start over)", file);
        return -1;
    }
    vt_store_opts have;
    char e2[256];
    if (read_opts(f, &have, e2, sizeof e2) < 0) {
        snprintf(err, errlen, "%s: %s; refusing to overwrite it", file, e2);
        H5Fclose(f);
        return -1;
    }
    if (have.height != o->height || have.width != o->width ||
        have.short_side != o->short_side || have.fps != o->fps ||
        have.compress != o->compress || have.chunk_frames != o->chunk_frames) {
        char a[160], b[160];
        opts_str(&have, a, sizeof a);
        opts_str(o, b, sizeof b);
        snprintf(err, errlen, "%s was made with %s, not %s: delete it or choose "
                 "another --out", file, a, b);
        H5Fclose(f);
        return -1;
    }
    return f;
}

int vt_storewriter_open(const char *path, const vt_store_opts *opts,
                        vt_storewriter **out, int *resumed, char *err,
                        size_t errlen)
{
    vt_h5_quiet();
    vt_storewriter *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->f = -1;
    w->o = *opts;
    norm_opts(&w->o);
    w->path = strdup(path);
    w->partial = malloc(strlen(path) + 16);
    if (!w->path || !w->partial)
        FAIL("out of memory");
    sprintf(w->partial, "%s.partial", path);
    *resumed = 0;
    if (w->o.compress < 0 || w->o.compress > 9)
        FAIL("compression level %d: must be 0..9", w->o.compress);
    if (file_exists(w->partial)) {
        w->f = reopen(w->partial, &w->o, err, errlen);
        if (w->f < 0)
            goto fail;
        *resumed = 1;
    } else if (file_exists(path)) {
        /* A finished store being extended: check it, then move it aside so a
         * crash cannot leave a half-updated file under the final name. */
        w->f = reopen(path, &w->o, err, errlen);
        if (w->f < 0)
            goto fail;
        int zero = 0;
        vt_h5_write_attr_int(w->f, ".", "complete", &zero, 1);
        H5Fclose(w->f);
        w->f = -1;
        if (rename(path, w->partial) != 0)
            FAIL("cannot rename %s to %s: %s", path, w->partial, strerror(errno));
        w->f = H5Fopen(w->partial, H5F_ACC_RDWR, H5P_DEFAULT);
        if (w->f < 0)
            FAIL("cannot reopen %s", w->partial);
        *resumed = 1;
    } else {
        w->f = H5Fcreate(w->partial, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        if (w->f < 0)
            FAIL("cannot create %s", w->partial);
        if (write_root_attrs(w->f, &w->o, 0) < 0)
            FAIL("cannot write the attributes of %s", w->partial);
        hid_t g = H5Gcreate2(w->f, "videos", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0)
            FAIL("cannot create /videos in %s", w->partial);
        H5Gclose(g);
    }
    *out = w;
    return 0;
fail:
    vt_storewriter_abort(w);
    return -1;
}

static int dsname(char *buf, size_t len, const char *relpath)
{
    if (!*relpath || relpath[0] == '/' || strstr(relpath, "//") ||
        strcmp(relpath, ".") == 0 || strncmp(relpath, "./", 2) == 0 ||
        strstr(relpath, "/./") || strstr(relpath, "/../") ||
        strncmp(relpath, "../", 3) == 0)
        return -1;
    return snprintf(buf, len, "videos/%s", relpath) < (int)len ? 0 : -1;
}

int vt_storewriter_has(vt_storewriter *w, const char *relpath)
{
    char name[4200];
    int done = 0;
    if (dsname(name, sizeof name, relpath) < 0 || !vt_h5_exists(w->f, name))
        return 0;
    return attr_int1(w->f, name, "complete", &done) == 0 && done == 1;
}

int vt_storewriter_put(vt_storewriter *w, const char *relpath, int label,
                       const vt_frames *fr, char *err, size_t errlen)
{
    char name[4200];
    hid_t lcpl = -1, dcpl = -1, sp = -1, ds = -1;
    if (dsname(name, sizeof name, relpath) < 0)
        FAIL("%s: not a usable relative path for the store", relpath);
    if (fr->n <= 0 || fr->h <= 0 || fr->w <= 0)
        FAIL("%s: no frames to store", relpath);
    if (vt_h5_exists(w->f, name) && H5Ldelete(w->f, name, H5P_DEFAULT) < 0)
        FAIL("%s: cannot replace the incomplete copy in the store", relpath);
    hsize_t dims[4] = {(hsize_t)fr->n, (hsize_t)fr->h, (hsize_t)fr->w, 3};
    /* Edge chunks are stored whole: spread the frames evenly over the
     * chunks so at most a few frames per video are padding. */
    int nchunks = (fr->n + w->o.chunk_frames - 1) / w->o.chunk_frames;
    hsize_t chunk[4] = {(hsize_t)((fr->n + nchunks - 1) / nchunks), dims[1], dims[2], 3};
    lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 4, chunk);
    if (w->o.compress > 0)
        H5Pset_deflate(dcpl, (unsigned)w->o.compress);
    sp = H5Screate_simple(4, dims, NULL);
    ds = H5Dcreate2(w->f, name, H5T_STD_U8LE, sp, lcpl, dcpl, H5P_DEFAULT);
    if (ds < 0)
        FAIL("%s: cannot create its dataset in the store", relpath);
    if (H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, fr->data) < 0)
        FAIL("%s: cannot write its frames to the store (disk full?)", relpath);
    H5Dclose(ds);
    ds = -1;
    int src[2] = {fr->src_h, fr->src_w}, one = 1;
    if (vt_h5_write_attr_int(w->f, name, "label", &label, 1) < 0 ||
        attr_write_double(w->f, name, "fps", fr->fps) < 0 ||
        attr_write_double(w->f, name, "src_fps", fr->src_fps) < 0 ||
        vt_h5_write_attr_int(w->f, name, "src_size", src, 2) < 0 ||
        vt_h5_write_attr_int(w->f, name, "complete", &one, 1) < 0)
        FAIL("%s: cannot write its attributes to the store", relpath);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(sp);
    /* On disk now, so an interrupted run can resume after this video. */
    H5Fflush(w->f, H5F_SCOPE_GLOBAL);
    return 0;
fail:
    if (ds >= 0)
        H5Dclose(ds);
    if (sp >= 0)
        H5Sclose(sp);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    return -1;
}

int vt_storewriter_finish(vt_storewriter *w, const vt_catalog *c,
                          char *const *errors, char *err, size_t errlen)
{
    size_t n = (size_t)c->n, ns = (size_t)c->n_splits;
    int *labels = calloc(n + 1, sizeof *labels);
    int *frames = calloc(n + 1, sizeof *frames);
    int *hs = calloc(n + 1, sizeof *hs);
    int *ws = calloc(n + 1, sizeof *ws);
    double *fps = calloc(n + 1, sizeof *fps);
    char **paths = calloc(n + 1, sizeof *paths);
    char **why = calloc(n + 1, sizeof *why);
    int rc = -1;
    if (!labels || !frames || !hs || !ws || !fps || !paths || !why)
        FAIL("out of memory");
    for (size_t i = 0; i < n; i++) {
        char name[4200];
        labels[i] = c->v[i].label;
        paths[i] = c->v[i].path;
        if (vt_storewriter_has(w, c->v[i].path) &&
            dsname(name, sizeof name, c->v[i].path) == 0) {
            hid_t ds = H5Dopen2(w->f, name, H5P_DEFAULT);
            hid_t sp = H5Dget_space(ds);
            hsize_t d[4] = {0, 0, 0, 0};
            H5Sget_simple_extent_dims(sp, d, NULL);
            H5Sclose(sp);
            H5Dclose(ds);
            frames[i] = (int)d[0];
            hs[i] = (int)d[1];
            ws[i] = (int)d[2];
            vt_h5_attr_double(w->f, name, "fps", &fps[i], 1, NULL, 0);
        } else {
            why[i] = errors && errors[i] ? errors[i] : "not stored";
        }
    }
    hsize_t d1 = n, d2[2] = {n, ns}, dc = (hsize_t)c->n_classes;
    if (write_strings(w->f, "classes", c->classes, (size_t)dc) < 0 ||
        write_strings(w->f, "paths", paths, n) < 0 ||
        write_array(w->f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT, labels, 1, &d1) < 0 ||
        write_array(w->f, "frames", H5T_STD_I32LE, H5T_NATIVE_INT, frames, 1, &d1) < 0 ||
        write_array(w->f, "heights", H5T_STD_I32LE, H5T_NATIVE_INT, hs, 1, &d1) < 0 ||
        write_array(w->f, "widths", H5T_STD_I32LE, H5T_NATIVE_INT, ws, 1, &d1) < 0 ||
        write_array(w->f, "fps", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, fps, 1, &d1) < 0 ||
        write_array(w->f, "split", H5T_STD_I8LE, H5T_NATIVE_SCHAR, c->member, 2, d2) < 0 ||
        write_strings(w->f, "errors", why, n) < 0)
        FAIL("%s: cannot write the metadata", w->partial);
    int nv = (int)n, one = 1;
    if (vt_h5_write_attr_int(w->f, ".", "n_videos", &nv, 1) < 0 ||
        vt_h5_write_attr_int(w->f, ".", "n_classes", &c->n_classes, 1) < 0 ||
        vt_h5_write_attr_int(w->f, ".", "n_splits", &c->n_splits, 1) < 0 ||
        vt_h5_write_attr_int(w->f, ".", "complete", &one, 1) < 0)
        FAIL("%s: cannot write the attributes", w->partial);
    herr_t e = H5Fclose(w->f);
    w->f = -1;
    if (e < 0)
        FAIL("%s: cannot close (disk full?)", w->partial);
    if (rename(w->partial, w->path) != 0)
        FAIL("cannot rename %s to %s: %s", w->partial, w->path, strerror(errno));
    rc = 0;
fail:
    free(labels);
    free(frames);
    free(hs);
    free(ws);
    free(fps);
    free(paths);
    free(why);
    if (rc == 0) {
        free(w->path);
        free(w->partial);
        free(w);
    }
    return rc;
}

void vt_storewriter_abort(vt_storewriter *w)
{
    if (!w)
        return;
    if (w->f >= 0)
        H5Fclose(w->f);
    free(w->path);
    free(w->partial);
    free(w);
}

/* ==== Reader ============================================================ */

/* Where one video's frames are: for an uncompressed store the file offset
 * of every chunk (frames [k*cf, (k+1)*cf) are one contiguous block),
 * found once when the video is first read. */
typedef struct {
    int ready;        /* 1: offsets known; -1: use H5Dread */
    int cf;           /* frames per chunk */
    off_t *chunk;     /* [ceil(F / cf)] */
} vloc;

/* Readers are called from loader threads. Debian's HDF5 is built
 * thread-safe (one global lock inside the library); with a build that is
 * not, our own lock serialises the reader's HDF5 calls instead. */
static pthread_mutex_t h5_mu = PTHREAD_MUTEX_INITIALIZER;
static int h5_threadsafe(void)
{
    hbool_t ts = 0;
    return H5is_library_threadsafe(&ts) >= 0 && ts;
}

struct vt_clipstore {
    hid_t f;
    int fd;
    vt_store_meta m;
    char **names;     /* HDF5 dataset paths */
    vloc *loc;
    pthread_mutex_t mu;
};

const vt_store_meta *vt_clipstore_meta(const vt_clipstore *s) { return &s->m; }

static void meta_free(vt_store_meta *m)
{
    vt_classes_free(m->classes, m->n_classes);
    for (int i = 0; i < m->n_videos; i++) {
        if (m->paths)
            free(m->paths[i]);
        if (m->errors)
            free(m->errors[i]);
    }
    free(m->paths);
    free(m->errors);
    free(m->labels);
    free(m->frames);
    free(m->heights);
    free(m->widths);
    free(m->fps);
    free(m->split);
}

void vt_clipstore_close(vt_clipstore *s)
{
    if (!s)
        return;
    if (s->f >= 0)
        H5Fclose(s->f);
    if (s->fd >= 0)
        close(s->fd);
    for (int i = 0; i < s->m.n_videos; i++) {
        if (s->names)
            free(s->names[i]);
        if (s->loc)
            free(s->loc[i].chunk);
    }
    free(s->names);
    free(s->loc);
    meta_free(&s->m);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int vt_clipstore_open(const char *path, vt_clipstore **out, char *err,
                      size_t errlen)
{
    vt_h5_quiet();
    vt_clipstore *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->fd = -1;
    vt_store_meta *m = &s->m;
    char e2[512];
    s->f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (s->f < 0) {
        char partial[4200];
        snprintf(partial, sizeof partial, "%s.partial", path);
        if (!file_exists(path) && file_exists(partial))
            FAIL("%s: not finished (%s exists: run vprep again to complete it)",
                 path, partial);
        FAIL("%s: cannot open as HDF5%s", path, file_exists(path) ? "" : " (no such file)");
    }
    if (read_opts(s->f, &m->opts, e2, sizeof e2) < 0)
        FAIL("%s: %s", path, e2);
    int complete = 0;
    if (attr_int1(s->f, ".", "complete", &complete) < 0 || !complete ||
        attr_int1(s->f, ".", "n_videos", &m->n_videos) < 0 ||
        attr_int1(s->f, ".", "n_classes", &m->n_classes) < 0 ||
        attr_int1(s->f, ".", "n_splits", &m->n_splits) < 0)
        FAIL("%s: incomplete store (run vprep again to finish it)", path);
    size_t n = (size_t)m->n_videos;
    m->labels = calloc(n + 1, sizeof *m->labels);
    m->frames = calloc(n + 1, sizeof *m->frames);
    m->heights = calloc(n + 1, sizeof *m->heights);
    m->widths = calloc(n + 1, sizeof *m->widths);
    m->fps = calloc(n + 1, sizeof *m->fps);
    m->split = calloc(n * (size_t)m->n_splits + 1, 1);
    s->names = calloc(n + 1, sizeof *s->names);
    s->loc = calloc(n + 1, sizeof *s->loc);
    if (!m->labels || !m->frames || !m->heights || !m->widths || !m->fps ||
        !m->split || !s->names || !s->loc)
        FAIL("out of memory");
    if (read_strings(s->f, "classes", &m->classes, (size_t)m->n_classes, e2, sizeof e2) < 0 ||
        read_strings(s->f, "paths", &m->paths, n, e2, sizeof e2) < 0 ||
        read_strings(s->f, "errors", &m->errors, n, e2, sizeof e2) < 0 ||
        read_array(s->f, "labels", H5T_NATIVE_INT, m->labels, n, e2, sizeof e2) < 0 ||
        read_array(s->f, "frames", H5T_NATIVE_INT, m->frames, n, e2, sizeof e2) < 0 ||
        read_array(s->f, "heights", H5T_NATIVE_INT, m->heights, n, e2, sizeof e2) < 0 ||
        read_array(s->f, "widths", H5T_NATIVE_INT, m->widths, n, e2, sizeof e2) < 0 ||
        read_array(s->f, "fps", H5T_NATIVE_DOUBLE, m->fps, n, e2, sizeof e2) < 0 ||
        read_array(s->f, "split", H5T_NATIVE_SCHAR, m->split, n * (size_t)m->n_splits,
                   e2, sizeof e2) < 0)
        FAIL("%s: %s", path, e2);
    for (size_t i = 0; i < n; i++) {
        if (m->errors[i][0] == '\0') {
            free(m->errors[i]);
            m->errors[i] = NULL;
        }
        if (m->labels[i] < 0 || m->labels[i] >= m->n_classes)
            FAIL("%s: video %zu (%s) has label %d outside 0..%d", path, i,
                 m->paths[i], m->labels[i], m->n_classes - 1);
        s->names[i] = malloc(strlen(m->paths[i]) + 8);
        if (!s->names[i])
            FAIL("out of memory");
        sprintf(s->names[i], "videos/%s", m->paths[i]);
    }
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0)
        FAIL("%s: cannot open: %s", path, strerror(errno));
    *out = s;
    return 0;
fail:
    vt_clipstore_close(s);
    return -1;
}

/* Chunk offsets of an uncompressed video; ready = -1 when the layout is
 * anything else (compressed, contiguous), which then goes through HDF5. */
static void locate(vt_clipstore *s, int v)
{
    vloc *L = &s->loc[v];
    int F = s->m.frames[v];
    L->ready = -1;
    hid_t ds = H5Dopen2(s->f, s->names[v], H5P_DEFAULT);
    if (ds < 0)
        return;
    hid_t dcpl = H5Dget_create_plist(ds);
    hsize_t cd[4];
    if (H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_nfilters(dcpl) == 0 &&
        H5Pget_chunk(dcpl, 4, cd) == 4 && cd[1] == (hsize_t)s->m.heights[v] &&
        cd[2] == (hsize_t)s->m.widths[v] && cd[3] == 3 && cd[0] > 0) {
        int cf = (int)cd[0];
        int nc = (F + cf - 1) / cf;
        off_t *off = malloc((size_t)nc * sizeof *off);
        int ok = off != NULL;
        for (int k = 0; ok && k < nc; k++) {
            hsize_t coord[4] = {(hsize_t)k * (hsize_t)cf, 0, 0, 0};
            unsigned mask = 0;
            haddr_t addr = HADDR_UNDEF;
            hsize_t size = 0;
            ok = H5Dget_chunk_info_by_coord(ds, coord, &mask, &addr, &size) >= 0 &&
                 addr != HADDR_UNDEF &&
                 size == (hsize_t)cf * cd[1] * cd[2] * 3;
            if (ok)
                off[k] = (off_t)addr;
        }
        if (ok) {
            L->cf = cf;
            L->chunk = off;
            L->ready = 1;
        } else {
            free(off);
        }
    }
    H5Pclose(dcpl);
    H5Dclose(ds);
}

static int read_hdf5(vt_clipstore *s, int v, const int *t, int n, int y0, int x0,
                     int h, int w, uint8_t *dst, char *err, size_t errlen)
{
    /* A chunk cache that holds a clip's chunks, so each is inflated once
     * per read (the default 1 MB is smaller than one 128x171 chunk). */
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    H5Pset_chunk_cache(dapl, 521, (size_t)32 << 20, 1.0);
    hid_t ds = H5Dopen2(s->f, s->names[v], dapl);
    H5Pclose(dapl);
    if (ds < 0) {
        snprintf(err, errlen, "%s: dataset %s missing from the store",
                 s->m.paths[v], s->names[v]);
        return -1;
    }
    hid_t fs = H5Dget_space(ds);
    int rc = 0;
    /* One read per run of frames at a constant step. */
    for (int i = 0; i < n && rc == 0;) {
        int j = i + 1;
        int step = j < n ? t[j] - t[i] : 1;
        if (step < 1)
            step = 1, j = i + 1;
        else
            while (j < n && t[j] - t[j - 1] == step)
                j++;
        int len = j - i;
        hsize_t start[4] = {(hsize_t)t[i], (hsize_t)y0, (hsize_t)x0, 0};
        hsize_t stride[4] = {(hsize_t)step, 1, 1, 1};
        hsize_t count[4] = {(hsize_t)len, (hsize_t)h, (hsize_t)w, 3};
        hid_t ms = H5Screate_simple(4, count, NULL);
        if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, stride, count, NULL) < 0 ||
            H5Dread(ds, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT,
                    dst + (size_t)i * (size_t)h * (size_t)w * 3) < 0) {
            snprintf(err, errlen, "%s: cannot read frames %d..%d from the store",
                     s->m.paths[v], t[i], t[j - 1]);
            rc = -1;
        }
        H5Sclose(ms);
        i = j;
    }
    H5Sclose(fs);
    H5Dclose(ds);
    return rc;
}

static int pread_all(int fd, void *buf, size_t len, off_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t got = pread(fd, p, len, off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        p += got;
        len -= (size_t)got;
        off += got;
    }
    return 0;
}

int vt_clipstore_read(vt_clipstore *s, int v, const int *t, int n, int y0,
                      int x0, int h, int w, uint8_t *dst, char *err,
                      size_t errlen)
{
    const vt_store_meta *m = &s->m;
    if (v < 0 || v >= m->n_videos || m->frames[v] <= 0) {
        snprintf(err, errlen, "video %d is not in the store", v);
        return -1;
    }
    int H = m->heights[v], W = m->widths[v];
    if (y0 < 0 || x0 < 0 || h <= 0 || w <= 0 || y0 + h > H || x0 + w > W) {
        snprintf(err, errlen, "%s: crop (%d, %d, %d, %d) outside its %dx%d frames",
                 m->paths[v], y0, x0, h, w, H, W);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= m->frames[v]) {
            snprintf(err, errlen, "%s: frame %d outside 0..%d", m->paths[v], t[i],
                     m->frames[v] - 1);
            return -1;
        }
    pthread_mutex_lock(&s->mu);
    if (s->loc[v].ready == 0) {
        int lock = !h5_threadsafe();
        if (lock)
            pthread_mutex_lock(&h5_mu);
        locate(s, v);
        if (lock)
            pthread_mutex_unlock(&h5_mu);
    }
    pthread_mutex_unlock(&s->mu);
    const vloc *L = &s->loc[v];
    if (L->ready < 0) {
        int lock = !h5_threadsafe();
        if (lock)
            pthread_mutex_lock(&h5_mu);
        int rc = read_hdf5(s, v, t, n, y0, x0, h, w, dst, err, errlen);
        if (lock)
            pthread_mutex_unlock(&h5_mu);
        return rc;
    }
    /* Rows y0..y0+h of a frame are one contiguous run of the chunk: one
     * pread per frame, then the column window is copied out. */
    size_t row = (size_t)W * 3, frame = (size_t)H * row;
    size_t span = (size_t)h * row;
    uint8_t stackbuf[1 << 16];
    uint8_t *tmp = (w == W) ? NULL : span <= sizeof stackbuf ? stackbuf : malloc(span);
    if (w != W && !tmp) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        int k = t[i] / L->cf, r = t[i] % L->cf;
        off_t off = L->chunk[k] + (off_t)((size_t)r * frame + (size_t)y0 * row);
        uint8_t *d = dst + (size_t)i * (size_t)h * (size_t)w * 3;
        if (w == W) {
            rc = pread_all(s->fd, d, span, off);
        } else {
            rc = pread_all(s->fd, tmp, span, off);
            for (int y = 0; rc == 0 && y < h; y++)
                memcpy(d + (size_t)y * (size_t)w * 3, tmp + (size_t)y * row + (size_t)x0 * 3,
                       (size_t)w * 3);
        }
        if (rc < 0)
            snprintf(err, errlen, "%s: cannot read frame %d from the store: %s",
                     m->paths[v], t[i], errno ? strerror(errno) : "short read");
    }
    if (tmp && tmp != stackbuf)
        free(tmp);
    return rc;
}
