/* checkpoint.c - HDF5 checkpoints written atomically (see vt_ckpt.h; the
 * file layout is docs/checkpoint.md).
 *
 * The HDF5 calls are local rather than vt_h5.h's because a checkpoint
 * must notice every failure: a dataset's close can flush its last bytes,
 * so a close that fails is a failed write and is checked here too. */
#define _GNU_SOURCE /* memfd_create */
#include "vt_ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define PATH_LEN 4096
#define NAME_LEN 512
#define MAX_DIMS 8
#define NBT_SUFFIX ".num_batches_tracked"
#define FS_MARGIN (64 << 10) /* bytes that must stay free; see vt_ckpt_save */

/* ==== Errors ============================================================ */

/* One message per call: the first problem wins, later ones (often
 * consequences of it, or cleanup) are dropped. */
typedef struct {
    const char *path;
    char *err;
    size_t errlen;
    int set;
} ectx;

__attribute__((format(printf, 2, 3)))
static int fail(ectx *e, const char *fmt, ...)
{
    if (e->set)
        return -1;
    e->set = 1;
    if (!e->err || !e->errlen)
        return -1;
    int n = snprintf(e->err, e->errlen, "%s: ", e->path);
    if (n < 0 || (size_t)n >= e->errlen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err + n, e->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* HDF5 prints its error stack by default; our callers print one line. */
typedef struct {
    H5E_auto2_t fn;
    void *data;
} quiet;

static void quiet_on(quiet *q)
{
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void quiet_off(quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->fn, q->data); }

/* errno as HDF5's sec2 driver left it after a failed write, when it left
 * one: "File too large", "No space left on device" help more than the
 * HDF5 call's name. */
static const char *io_reason(void)
{
    return errno ? strerror(errno) : "HDF5 error";
}

/* ==== Small helpers ===================================================== */

static int is_nbt(const vt_param *p)
{
    size_t n = strlen(p->name), k = strlen(NBT_SUFFIX);
    return p->t.numel == 1 && n > k && strcmp(p->name + n - k, NBT_SUFFIX) == 0;
}

/* The shape an entry has in the file: PyTorch's, so num_batches_tracked
 * is a scalar () where the store keeps (1). */
static int file_dims(const vt_param *p, hsize_t *dims)
{
    if (is_nbt(p))
        return 0;
    for (int i = 0; i < p->t.ndim; i++)
        dims[i] = (hsize_t)p->t.shape[i];
    return p->t.ndim;
}

static char *dims_str(int ndim, const hsize_t *dims, char *buf, size_t len)
{
    size_t o = 0;
    o += (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim; i++)
        o += (size_t)snprintf(buf + o, len > o ? len - o : 0, "%s%llu",
                              i ? ", " : "", (unsigned long long)dims[i]);
    snprintf(buf + o, len > o ? len - o : 0, ")");
    return buf;
}

static int same_dims(int na, const hsize_t *a, int nb, const hsize_t *b)
{
    if (na != nb)
        return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

static int valid_param_name(const char *s)
{
    return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0 && strlen(s) < NAME_LEN - 64;
}

static int valid_state_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= VT_CKPT_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

int vt_ckpt_add_state(vt_ckpt *ck, const char *name, uint64_t *v, size_t n)
{
    if (ck->n_states >= VT_CKPT_MAX_STATES || !valid_state_name(name))
        return -1;
    vt_ckpt_state *s = &ck->state[ck->n_states++];
    memset(s, 0, sizeof *s);
    strcpy(s->name, name);
    s->v = v;
    s->n = n;
    return 0;
}

vt_ckpt_state *vt_ckpt_find_state(vt_ckpt *ck, const char *name)
{
    for (int i = 0; i < ck->n_states; i++)
        if (strcmp(ck->state[i].name, name) == 0)
            return &ck->state[i];
    return NULL;
}

const char *vt_ckpt_status_name(vt_ckpt_status st)
{
    switch (st) {
    case VT_CKPT_LOADED: return "loaded";
    case VT_CKPT_SHAPE: return "skipped (shape differs)";
    case VT_CKPT_MISSING: return "not in checkpoint (initialised)";
    case VT_CKPT_UNUSED: return "unused (not in model)";
    }
    return "?";
}

/* Comma-joined state names of the optimizer: "exp_avg,exp_avg_sq". */
static void optim_state_list(const vt_optim *o, char *buf, size_t len)
{
    buf[0] = '\0';
    size_t used = 0;
    for (int k = 0; k < o->n_state; k++)
        used += (size_t)snprintf(buf + used, len > used ? len - used : 0, "%s%s",
                                 k ? "," : "", vt_optim_state_name(o, k));
}

static const char *optim_type_name(vt_optim_type t)
{
    return t == VT_OPTIM_SGD ? "sgd" : t == VT_OPTIM_ADAM ? "adam" : "adamw";
}

/* ==== Writing =========================================================== */

static hid_t vlen_str(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return -1;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/* Creates and writes dataset name in g (ndim 0: a scalar). */
static int put(hid_t g, const char *name, hid_t ftype, hid_t mtype,
               const void *data, int ndim, const hsize_t *dims)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)dims[i];
    hid_t sp = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    if (sp < 0)
        return -1;
    hid_t ds = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = ds >= 0;
    if (ok && n > 0)
        ok = H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    if (ds >= 0 && H5Dclose(ds) < 0)
        ok = 0;
    if (H5Sclose(sp) < 0)
        ok = 0;
    return ok ? 0 : -1;
}

static int put_i64(hid_t g, const char *name, int64_t v)
{
    return put(g, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, 0, NULL);
}

static int put_f64(hid_t g, const char *name, double v)
{
    return put(g, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, 0, NULL);
}

/* A scalar string (strs == &s, n == -1) or a 1-D array of n strings. */
static int put_strs(hid_t g, const char *name, const char *const *strs, int n)
{
    hid_t t = vlen_str();
    if (t < 0)
        return -1;
    hsize_t dims[1] = {(hsize_t)(n < 0 ? 0 : n)};
    int rc = put(g, name, t, t, strs, n < 0 ? 0 : 1, dims);
    if (H5Tclose(t) < 0)
        rc = -1;
    return rc;
}

static int put_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype,
                    const void *v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    if (sp < 0)
        return -1;
    hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, mtype, v) >= 0;
    if (a >= 0 && H5Aclose(a) < 0)
        ok = 0;
    if (H5Sclose(sp) < 0)
        ok = 0;
    return ok ? 0 : -1;
}

static int put_attr_str(hid_t obj, const char *name, const char *s)
{
    hid_t t = vlen_str();
    if (t < 0)
        return -1;
    int rc = put_attr(obj, name, t, t, &s);
    if (H5Tclose(t) < 0)
        rc = -1;
    return rc;
}

static int put_attr_f64(hid_t obj, const char *name, double v)
{
    return put_attr(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

static hid_t new_group(hid_t f, const char *name)
{
    return H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

static int write_model(ectx *e, hid_t f, const vt_store *s)
{
    hid_t g = new_group(f, "model");
    if (g < 0)
        return fail(e, "cannot write: cannot create group /model: %s", io_reason());
    int rc = 0;
    for (int i = 0; i < s->n && rc == 0; i++) {
        const vt_param *p = &s->p[i];
        hsize_t dims[MAX_DIMS];
        int nd = file_dims(p, dims);
        errno = 0;
        if (is_nbt(p)) {
            int64_t v = (int64_t)llround((double)p->t.data[0]);
            rc = put(g, p->name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, 0, dims);
        } else {
            rc = put(g, p->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, p->t.data, nd, dims);
        }
        if (rc)
            fail(e, "cannot write: dataset 'model/%s': %s", p->name, io_reason());
    }
    if (H5Gclose(g) < 0 && rc == 0)
        rc = fail(e, "cannot write: closing /model: %s", io_reason());
    return rc ? -1 : 0;
}

static int write_optim(ectx *e, hid_t f, vt_optim *o)
{
    const vt_store *s = o->store;
    hid_t g = new_group(f, "optim");
    if (g < 0)
        return fail(e, "cannot write: cannot create group /optim: %s", io_reason());
    char list[256];
    optim_state_list(o, list, sizeof list);
    const vt_optim_config *c = &o->cfg;
    errno = 0;
    int rc = put_attr_str(g, "type", optim_type_name(c->type)) |
             put_attr_str(g, "state", list) |
             put_attr_f64(g, "weight_decay", c->weight_decay) |
             put_attr_f64(g, "momentum", c->momentum) |
             put_attr_f64(g, "dampening", c->dampening) |
             put_attr_f64(g, "nesterov", c->nesterov) |
             put_attr_f64(g, "beta1", c->beta1) |
             put_attr_f64(g, "beta2", c->beta2) |
             put_attr_f64(g, "eps", c->eps) |
             put_attr_f64(g, "amsgrad", c->amsgrad) |
             put_i64(g, "step", o->step);
    if (rc)
        fail(e, "cannot write: optimizer attributes: %s", io_reason());
    for (int i = 0; i < s->n && rc == 0; i++) {
        const vt_param *p = &s->p[i];
        if (!p->trainable)
            continue;
        hsize_t dims[MAX_DIMS];
        int nd = file_dims(p, dims);
        for (int k = 0; k < o->n_state && rc == 0; k++) {
            char name[NAME_LEN];
            snprintf(name, sizeof name, "%s.%s", p->name, vt_optim_state_name(o, k));
            errno = 0;
            rc = put(g, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                     vt_optim_param_state(o, k, i), nd, dims);
            if (rc)
                fail(e, "cannot write: dataset 'optim/%s': %s", name, io_reason());
        }
    }
    if (H5Gclose(g) < 0 && rc == 0)
        rc = fail(e, "cannot write: closing /optim: %s", io_reason());
    return rc ? -1 : 0;
}

static int write_contents(ectx *e, hid_t f, const vt_ckpt *ck)
{
    int fmt = VT_CKPT_FORMAT;
    errno = 0;
    if (put_attr(f, "vtrain", H5T_STD_I32LE, H5T_NATIVE_INT, &fmt) ||
        put_attr_str(f, "model", ck->model_name ? ck->model_name : ""))
        return fail(e, "cannot write: root attributes: %s", io_reason());
    if (write_model(e, f, ck->store))
        return -1;
    if (ck->optim && write_optim(e, f, ck->optim))
        return -1;

    hid_t g = new_group(f, "train");
    if (g < 0)
        return fail(e, "cannot write: cannot create group /train: %s", io_reason());
    const vt_ckpt_pos *p = &ck->pos;
    errno = 0;
    int rc = put_i64(g, "epoch", p->epoch) | put_i64(g, "step", p->step) |
             put_i64(g, "epoch_step", p->epoch_step) |
             put_i64(g, "samples", p->samples) |
             put_f64(g, "best_metric", p->best_metric) |
             put_i64(g, "best_epoch", p->best_epoch);
    if (H5Gclose(g) < 0)
        rc = -1;
    if (rc)
        return fail(e, "cannot write: group /train: %s", io_reason());

    g = new_group(f, "rng");
    if (g < 0)
        return fail(e, "cannot write: cannot create group /rng: %s", io_reason());
    for (int i = 0; i < ck->n_states && rc == 0; i++) {
        const vt_ckpt_state *s = &ck->state[i];
        hsize_t dims[1] = {(hsize_t)s->n};
        errno = 0;
        rc = put(g, s->name, H5T_STD_U64LE, H5T_NATIVE_UINT64, s->v, 1, dims);
        if (rc)
            fail(e, "cannot write: dataset 'rng/%s': %s", s->name, io_reason());
    }
    if (H5Gclose(g) < 0 && rc == 0)
        rc = fail(e, "cannot write: closing /rng: %s", io_reason());
    if (rc)
        return -1;

    const char *cfg = ck->config ? ck->config : "";
    errno = 0;
    if (put_strs(f, "config", &cfg, -1))
        return fail(e, "cannot write: dataset 'config': %s", io_reason());
    errno = 0;
    if (put_strs(f, "classes", ck->classes, ck->n_classes))
        return fail(e, "cannot write: dataset 'classes': %s", io_reason());
    return 0;
}

static hid_t make_fapl(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0)
        return -1;
    /* SEMI: H5Fclose fails, rather than silently deferring the close, if
     * an object were left open, so a closed file really is complete. */
    int ok = H5Pset_fapl_sec2(fapl) >= 0 &&
             H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI) >= 0;
#if H5_VERSION_GE(1, 10, 7)
    /* A crashed writer must never leave a file others cannot open; our
     * temp-and-rename already keeps readers and writers apart. */
    ok = ok && H5Pset_file_locking(fapl, 0, 1) >= 0;
#endif
    if (!ok) {
        H5Pclose(fapl);
        return -1;
    }
    return fapl;
}

/* Closes a file whose writing failed. HDF5 1.10 cannot drop a file it
 * fails to flush: a close that fails leaves a half-destroyed file in its
 * tables, which crashes the library at exit. So the file's descriptor is
 * first pointed at an anonymous scratch file in memory (the temp file is
 * removed anyway), where the close's last writes cannot fail: not even
 * on a full disk, nor past a file size limit, which is lifted meanwhile. */
static void abandon(hid_t f, hid_t fapl)
{
    struct rlimit lim, lifted;
    int relimit = getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != lim.rlim_max;
    if (relimit) {
        lifted = lim;
        lifted.rlim_cur = lim.rlim_max;
        relimit = setrlimit(RLIMIT_FSIZE, &lifted) == 0;
    }
    int *fdp = NULL;
    if (H5Fget_vfd_handle(f, fapl, (void **)&fdp) >= 0 && fdp && *fdp >= 0) {
#ifdef __linux__
        int s = memfd_create("vtrain-ckpt-abandoned", MFD_CLOEXEC);
#else
        int s = -1;
#endif
        if (s < 0) {
            char name[] = "/tmp/vtrain-ckpt-abandoned-XXXXXX";
            s = mkstemp(name);
            if (s >= 0)
                unlink(name);
        }
        if (s >= 0) {
            dup2(s, *fdp);
            close(s);
        }
    }
    /* Objects a failed close left open would block SEMI's file close. */
    ssize_t n = H5Fget_obj_count(f, H5F_OBJ_ALL & ~H5F_OBJ_FILE);
    if (n > 0) {
        hid_t *ids = malloc((size_t)n * sizeof *ids);
        if (ids) {
            n = H5Fget_obj_ids(f, H5F_OBJ_ALL & ~H5F_OBJ_FILE, (size_t)n, ids);
            for (ssize_t i = 0; i < n; i++) {
                if (H5Iget_type(ids[i]) == H5I_ATTR)
                    H5Aclose(ids[i]);
                else
                    H5Oclose(ids[i]);
            }
            free(ids);
        }
    }
    H5Fclose(f);
    if (relimit)
        setrlimit(RLIMIT_FSIZE, &lim);
}

/* Filesystems that report no size at all (procfs, some FUSE mounts) are
 * given the benefit of the doubt. */
static int fs_full(const char *p)
{
    struct statvfs v;
    return statvfs(p, &v) == 0 && v.f_frsize > 0 && v.f_blocks > 0 &&
           (unsigned long long)v.f_bavail * v.f_frsize < FS_MARGIN;
}

/* Splits path into its directory ("." when none) and base name. */
static int split_path(const char *path, char *dir, char *base)
{
    size_t n = strlen(path);
    if (n == 0 || n >= PATH_LEN - 64 || path[n - 1] == '/')
        return -1;
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
        strcpy(base, path);
    } else if (slash == path) {
        strcpy(dir, "/");
        strcpy(base, slash + 1);
    } else {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
        strcpy(base, slash + 1);
    }
    return 0;
}

/* ".<base>.tmp.<pid>" files whose writer is gone: killed mid-save. A live
 * pid (ours included: we truncate our own name anyway) is left alone, so
 * two runs sharing a directory never delete each other's files. */
static void remove_stale_temps(const char *dir, const char *base)
{
    char prefix[PATH_LEN];
    /* A name too long for the prefix cannot have temporaries we made. */
    int n = snprintf(prefix, sizeof prefix, ".%s.tmp.", base);
    if (n < 0 || (size_t)n >= sizeof prefix)
        return;
    size_t plen = (size_t)n;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (strncmp(nm, prefix, plen) != 0 || !nm[plen])
            continue;
        char *end;
        errno = 0;
        long pid = strtol(nm + plen, &end, 10);
        if (*end || errno || pid <= 0 || pid > INT_MAX || (pid_t)pid == getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char full[2 * PATH_LEN];
        snprintf(full, sizeof full, "%s/%s", dir, nm);
        unlink(full);
    }
    closedir(d);
}

static int fsync_path(const char *p, int flags)
{
    int fd = open(p, flags);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    if (close(fd) < 0 && rc == 0)
        return -1;
    errno = saved;
    return rc;
}

int vt_ckpt_save(const char *path, const vt_ckpt *ck, char *err, size_t errlen)
{
    ectx e = {path, err, errlen, 0};
    char dir[PATH_LEN], base[PATH_LEN], tmp[2 * PATH_LEN + 64];
    const vt_store *s = ck->store;
    if (!s || (!s->data && s->n > 0))
        return fail(&e, "cannot write: no finalized parameter store given");
    VT_ASSERT(!ck->optim || ck->optim->store == s,
              "the optimizer updates another store than the one saved");
    if (split_path(path, dir, base))
        return fail(&e, "cannot write: not a file name");
    for (int i = 0; i < s->n; i++)
        if (!valid_param_name(s->p[i].name))
            return fail(&e, "cannot write: parameter name '%s' cannot be a dataset name",
                        s->p[i].name);
    for (int i = 0; i < ck->n_states; i++)
        if (!valid_state_name(ck->state[i].name) ||
            (ck->state[i].n && !ck->state[i].v))
            return fail(&e, "cannot write: invalid state slot '%s'", ck->state[i].name);
    for (int i = 0; i < ck->n_classes; i++)
        if (!ck->classes || !ck->classes[i])
            return fail(&e, "cannot write: class name %d is missing", i);

    snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", dir, base, (long)getpid());
    remove_stale_temps(dir, base);
    /* HDF5 1.10 leaks and complains at exit when H5Fcreate itself runs out
     * of space: check first, while failing is still clean. */
    if (fs_full(dir))
        return fail(&e, "cannot write: no space left on the filesystem of %s (under %d kB)",
                    dir, FS_MARGIN >> 10);

    /* Create the file ourselves first: open()'s errno names the problem
     * (permission, missing directory) where HDF5 would only say "failed". */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0)
        return fail(&e, "cannot write: cannot create %s: %s", tmp, strerror(errno));
    close(fd);

    quiet q;
    quiet_on(&q);
    hid_t fapl = make_fapl();
    hid_t f = -1;
    int rc = -1, renamed = 0;
    if (fapl < 0) {
        fail(&e, "cannot write: cannot set up HDF5 file access");
        goto out;
    }
    errno = 0;
    f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f < 0) {
        fail(&e, "cannot write: cannot create HDF5 file %s: %s", tmp, io_reason());
        goto out;
    }
    if (write_contents(&e, f, ck))
        goto out;
    /* Flush first: a flush that fails leaves the file closable by
     * abandon(); a close that fails does not. After the flush, the close
     * only rewrites the superblock in place, which needs no new space on
     * ext4 or xfs; a copy-on-write filesystem may need some, hence the
     * margin (a save that leaves less would be the last to fit anyway). */
    errno = 0;
    if (H5Fflush(f, H5F_SCOPE_LOCAL) < 0) {
        fail(&e, "cannot write: flushing %s: %s", tmp, io_reason());
        goto out;
    }
    if (fs_full(tmp)) {
        fail(&e, "cannot write: no space left on the filesystem of %s (under %d kB)",
             tmp, FS_MARGIN >> 10);
        goto out;
    }
    errno = 0;
    herr_t closed = H5Fclose(f);
    f = -1;
    if (closed < 0) {
        fail(&e, "cannot write: closing %s: %s", tmp, io_reason());
        goto out;
    }
    if (fsync_path(tmp, O_RDWR) < 0) {
        fail(&e, "cannot write: fsync %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, path) < 0) {
        fail(&e, "cannot write: rename %s: %s", tmp, strerror(errno));
        goto out;
    }
    renamed = 1;
    rc = 0;
    /* The rename is durable only once the directory is. Filesystems that
     * cannot sync a directory say EINVAL; a directory we may not open is
     * left to the next sync. */
    if (fsync_path(dir, O_RDONLY | O_DIRECTORY) < 0 && errno != EINVAL &&
        errno != EACCES && errno != EROFS)
        rc = fail(&e, "saved, but syncing directory %s failed: %s", dir, strerror(errno));
out:
    if (f >= 0)
        abandon(f, fapl);
    if (fapl >= 0)
        H5Pclose(fapl);
    quiet_off(&q);
    if (!renamed)
        unlink(tmp);
    return rc;
}

/* ==== Reading =========================================================== */

/* Is there an HDF5 superblock signature? At 0, or at 512, 1024, .. after
 * a user block. */
static int has_hdf5_signature(int fd, off_t size)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    for (off_t at = 0; at + 8 <= size; at = at ? 2 * at : 512) {
        unsigned char b[8];
        if (pread(fd, b, 8, at) != 8)
            return 0;
        if (memcmp(b, sig, 8) == 0)
            return 1;
    }
    return 0;
}

/* Opens a vtrain checkpoint read-only, telling apart a missing file, an
 * empty one, a non-HDF5 one, a damaged (truncated) one and an HDF5 file
 * that is not ours. */
static hid_t open_ckpt(ectx *e, int *format)
{
    struct stat st;
    int fd = open(e->path, O_RDONLY);
    if (fd < 0)
        return fail(e, "cannot open: %s", strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(e, "cannot open: not a regular file");
    }
    if (st.st_size == 0) {
        close(fd);
        return fail(e, "cannot open: empty file (truncated or not HDF5)");
    }
    int sig = has_hdf5_signature(fd, st.st_size);
    close(fd);
    if (!sig)
        return fail(e, "not a vtrain checkpoint (not an HDF5 file)");

    hid_t fapl = make_fapl();
    if (fapl < 0)
        return fail(e, "cannot open: cannot set up HDF5 file access");
    hid_t f = H5Fopen(e->path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0)
        return fail(e, "cannot open: truncated or damaged HDF5 file");

    int v = 0;
    if (H5Aexists(f, "vtrain") <= 0) {
        fail(e, "not a vtrain checkpoint (no /vtrain format attribute)");
        goto bad;
    }
    hid_t a = H5Aopen(f, "vtrain", H5P_DEFAULT);
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
    hid_t t = a >= 0 ? H5Aget_type(a) : -1;
    int ok = a >= 0 && sp >= 0 && t >= 0 && H5Tget_class(t) == H5T_INTEGER &&
             H5Sget_simple_extent_npoints(sp) == 1 &&
             H5Aread(a, H5T_NATIVE_INT, &v) >= 0;
    if (t >= 0)
        H5Tclose(t);
    if (sp >= 0)
        H5Sclose(sp);
    if (a >= 0)
        H5Aclose(a);
    if (!ok) {
        fail(e, "not a vtrain checkpoint (the /vtrain attribute is not a format number)");
        goto bad;
    }
    if (v < 1) {
        fail(e, "not a vtrain checkpoint (format %d)", v);
        goto bad;
    }
    if (v > VT_CKPT_FORMAT) {
        fail(e, "checkpoint format %d is newer than this vtrain reads (%d)", v,
             VT_CKPT_FORMAT);
        goto bad;
    }
    *format = v;
    return f;
bad:
    H5Fclose(f);
    return -1;
}

typedef struct {
    int exists;          /* 0: no such link */
    int ndim;
    hsize_t dims[MAX_DIMS];
    H5T_class_t cls;
} dsinfo;

/* 0 with d->exists 0 or 1; -1 when the link exists but is not a readable
 * dataset of rank <= MAX_DIMS. */
static int ds_info(hid_t g, const char *name, dsinfo *d)
{
    memset(d, 0, sizeof *d);
    htri_t ex = H5Lexists(g, name, H5P_DEFAULT);
    if (ex < 0)
        return -1;
    if (ex == 0)
        return 0;
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0)
        return -1;
    hid_t sp = H5Dget_space(ds), t = H5Dget_type(ds);
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    int ok = t >= 0 && nd >= 0 && nd <= MAX_DIMS &&
             H5Sget_simple_extent_dims(sp, d->dims, NULL) >= 0;
    if (ok) {
        d->exists = 1;
        d->ndim = nd;
        d->cls = H5Tget_class(t);
    }
    if (t >= 0)
        H5Tclose(t);
    if (sp >= 0)
        H5Sclose(sp);
    H5Dclose(ds);
    return ok ? 0 : -1;
}

static size_t dims_numel(const dsinfo *d)
{
    size_t n = 1;
    for (int i = 0; i < d->ndim; i++)
        n *= (size_t)d->dims[i];
    return n;
}

/* Reads a whole dataset converted to mtype into buf (sized by the caller
 * from ds_info). */
static int get(hid_t g, const char *name, hid_t mtype, void *buf)
{
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0)
        return -1;
    int ok = H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
    H5Dclose(ds);
    return ok ? 0 : -1;
}

/* A one-element numeric dataset (scalar or (1)). */
static int get_scalar(ectx *e, hid_t g, const char *gname, const char *name,
                      hid_t mtype, void *v)
{
    dsinfo d;
    if (ds_info(g, name, &d) < 0)
        return fail(e, "cannot read '%s/%s' (damaged file?)", gname, name);
    if (!d.exists)
        return fail(e, "dataset '%s/%s' is missing", gname, name);
    if (dims_numel(&d) != 1 || (d.cls != H5T_INTEGER && d.cls != H5T_FLOAT))
        return fail(e, "dataset '%s/%s' is not a number", gname, name);
    if (get(g, name, mtype, v))
        return fail(e, "cannot read '%s/%s' (damaged file?)", gname, name);
    return 0;
}

/* A string dataset: scalar (n = 1 returned) or 1-D; vlen or fixed-length.
 * *out is a malloc'd array of malloc'd strings. */
static int get_strs(hid_t g, const char *name, char ***out, int *n)
{
    *out = NULL;
    *n = 0;
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0)
        return -1;
    hid_t sp = H5Dget_space(ds), t = H5Dget_type(ds), mt = -1;
    hssize_t cnt = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    char **res = NULL;
    int rc = -1;
    if (t < 0 || cnt < 0 || nd > 1 || H5Tget_class(t) != H5T_STRING)
        goto out;
    res = calloc((size_t)cnt + 1, sizeof *res);
    if (!res)
        goto out;
    if (H5Tis_variable_str(t) > 0) {
        mt = vlen_str();
        char **v = calloc((size_t)cnt + 1, sizeof *v);
        if (mt < 0 || !v) {
            free(v);
            goto out;
        }
        if (cnt == 0 || H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0) {
            rc = 0;
            for (hssize_t i = 0; i < cnt; i++) {
                res[i] = strdup(v[i] ? v[i] : "");
                if (!res[i])
                    rc = -1;
                if (v[i])
                    H5free_memory(v[i]);
            }
        }
        free(v);
    } else {
        size_t len = H5Tget_size(t) + 1;
        mt = H5Tcopy(H5T_C_S1);
        char *v = calloc((size_t)cnt + 1, len);
        if (mt < 0 || !v || H5Tset_size(mt, len) < 0 ||
            H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0) {
            free(v);
            goto out;
        }
        if (cnt == 0 || H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0) {
            rc = 0;
            for (hssize_t i = 0; i < cnt; i++) {
                res[i] = strndup(v + (size_t)i * len, len);
                if (!res[i])
                    rc = -1;
            }
        }
        free(v);
    }
out:
    if (mt >= 0)
        H5Tclose(mt);
    if (t >= 0)
        H5Tclose(t);
    if (sp >= 0)
        H5Sclose(sp);
    H5Dclose(ds);
    if (rc == 0) {
        *out = res;
        *n = (int)cnt;
    } else if (res) {
        for (hssize_t i = 0; i < cnt; i++)
            free(res[i]);
        free(res);
    }
    return rc;
}

static void free_strs(char **s, int n)
{
    if (!s)
        return;
    for (int i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

/* A string attribute of obj; "" when absent. */
static int get_attr_str(hid_t obj, const char *name, char **out)
{
    *out = NULL;
    if (H5Aexists(obj, name) <= 0) {
        *out = strdup("");
        return *out ? 0 : -1;
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    hid_t t = H5Aget_type(a), mt = -1;
    int rc = -1;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING) {
        if (H5Tis_variable_str(t) > 0) {
            char *v = NULL;
            mt = vlen_str();
            if (mt >= 0 && H5Aread(a, mt, &v) >= 0) {
                *out = strdup(v ? v : "");
                rc = *out ? 0 : -1;
                if (v)
                    H5free_memory(v);
            }
        } else {
            size_t len = H5Tget_size(t) + 1;
            char *v = calloc(len, 1);
            mt = H5Tcopy(H5T_C_S1);
            if (v && mt >= 0 && H5Tset_size(mt, len) >= 0 &&
                H5Tset_strpad(mt, H5T_STR_NULLTERM) >= 0 && H5Aread(a, mt, v) >= 0) {
                *out = v;
                rc = 0;
            } else {
                free(v);
            }
        }
    }
    if (mt >= 0)
        H5Tclose(mt);
    if (t >= 0)
        H5Tclose(t);
    H5Aclose(a);
    return rc;
}

static hid_t open_group(ectx *e, hid_t f, const char *name, int required)
{
    htri_t ex = H5Lexists(f, name, H5P_DEFAULT);
    if (ex <= 0) {
        if (required)
            fail(e, "checkpoint has no /%s group", name);
        return -1;
    }
    hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
    if (g < 0)
        fail(e, "cannot open group /%s (damaged file?)", name);
    return g;
}

/* Name of link i of g (name order), malloc'd. */
static char *link_name(hid_t g, hsize_t i)
{
    ssize_t n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0,
                                   H5P_DEFAULT);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s && H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, s,
                                (size_t)n + 1, H5P_DEFAULT) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

static int n_links(hid_t g, hsize_t *n)
{
    H5G_info_t info;
    if (H5Gget_info(g, &info) < 0)
        return -1;
    *n = info.nlinks;
    return 0;
}

/* Whether dataset info d fits store entry p: 0 yes, else writes why
 * (shape or type) into why. */
static int entry_mismatch(const vt_param *p, const dsinfo *d, char *why, size_t len)
{
    hsize_t want[MAX_DIMS];
    int nd = file_dims(p, want);
    char a[128], b[128];
    if (!same_dims(d->ndim, d->dims, nd, want)) {
        snprintf(why, len, "has shape %s in the checkpoint but %s in the model",
                 dims_str(d->ndim, d->dims, a, sizeof a), dims_str(nd, want, b, sizeof b));
        return 1;
    }
    int num_ok = is_nbt(p) ? (d->cls == H5T_INTEGER || d->cls == H5T_FLOAT)
                           : d->cls == H5T_FLOAT;
    if (!num_ok) {
        snprintf(why, len, "is stored as %s, not %s",
                 d->cls == H5T_INTEGER ? "integers" : "a non-numeric type",
                 is_nbt(p) ? "a number" : "floats");
        return 1;
    }
    return 0;
}

static int read_entry(hid_t g, const char *name, vt_param *p)
{
    if (is_nbt(p)) {
        double v;
        if (get(g, name, H5T_NATIVE_DOUBLE, &v))
            return -1;
        p->t.data[0] = (float)v;
        return 0;
    }
    return get(g, name, H5T_NATIVE_FLOAT, p->t.data);
}

/* Every store entry present with the right shape, no other /model entry.
 * Reports the first problem and how many others there are. */
static int check_model(ectx *e, hid_t g, vt_store *s)
{
    char first[1024] = "";
    int problems = 0;
    for (int i = 0; i < s->n; i++) {
        const vt_param *p = &s->p[i];
        dsinfo d;
        char why[512], msg[1024];
        if (ds_info(g, p->name, &d) < 0)
            return fail(e, "cannot read 'model/%s' (damaged file?)", p->name);
        if (!d.exists) {
            hsize_t want[MAX_DIMS];
            char b[128];
            snprintf(msg, sizeof msg, "parameter '%s' %s of the model is not in the checkpoint",
                     p->name, dims_str(file_dims(p, want), want, b, sizeof b));
        } else if (entry_mismatch(p, &d, why, sizeof why)) {
            snprintf(msg, sizeof msg, "parameter '%s' %s", p->name, why);
        } else {
            continue;
        }
        if (problems++ == 0)
            snprintf(first, sizeof first, "%s", msg);
    }
    hsize_t n;
    if (n_links(g, &n) < 0)
        return fail(e, "cannot list /model (damaged file?)");
    for (hsize_t i = 0; i < n; i++) {
        char *name = link_name(g, i);
        if (!name)
            return fail(e, "cannot list /model (damaged file?)");
        if (!vt_store_find(s, name)) {
            dsinfo d;
            char a[128] = "";
            if (ds_info(g, name, &d) == 0 && d.exists)
                dims_str(d.ndim, d.dims, a, sizeof a);
            if (problems++ == 0)
                snprintf(first, sizeof first,
                         "checkpoint has parameter '%s' %s that the model does not have",
                         name, a);
        }
        free(name);
    }
    if (problems > 1)
        return fail(e, "%s (and %d more difference%s)", first, problems - 1,
                    problems > 2 ? "s" : "");
    if (problems)
        return fail(e, "%s", first);
    return 0;
}

static int check_optim(ectx *e, hid_t g, vt_optim *o)
{
    char *type = NULL, *list = NULL;
    char want[256];
    optim_state_list(o, want, sizeof want);
    const char *ot = optim_type_name(o->cfg.type);
    if (get_attr_str(g, "type", &type) || get_attr_str(g, "state", &list)) {
        free(type);
        return fail(e, "cannot read the optimizer attributes (damaged file?)");
    }
    int rc = 0;
    if (strcmp(type, ot) != 0)
        rc = fail(e, "optimizer is '%s' in the checkpoint but '%s' in the config",
                  type[0] ? type : "unknown", ot);
    else if (strcmp(list, want) != 0)
        rc = fail(e, "optimizer state is (%s) in the checkpoint but the config's %s keeps (%s)",
                  list, ot, want);
    free(type);
    free(list);
    if (rc)
        return -1;
    int64_t step;
    if (get_scalar(e, g, "optim", "step", H5T_NATIVE_INT64, &step))
        return -1;
    vt_store *s = o->store;
    for (int i = 0; i < s->n; i++) {
        const vt_param *p = &s->p[i];
        if (!p->trainable)
            continue;
        for (int k = 0; k < o->n_state; k++) {
            char name[NAME_LEN], why[512];
            snprintf(name, sizeof name, "%s.%s", p->name, vt_optim_state_name(o, k));
            dsinfo d;
            if (ds_info(g, name, &d) < 0)
                return fail(e, "cannot read 'optim/%s' (damaged file?)", name);
            if (!d.exists)
                return fail(e, "optimizer state 'optim/%s' is missing (was '%s' frozen "
                            "when the checkpoint was saved?)", name, p->name);
            if (entry_mismatch(p, &d, why, sizeof why))
                return fail(e, "optimizer state 'optim/%s' %s", name, why);
        }
    }
    return 0;
}

static int read_optim(ectx *e, hid_t g, vt_optim *o)
{
    vt_store *s = o->store;
    for (int i = 0; i < s->n; i++) {
        const vt_param *p = &s->p[i];
        for (int k = 0; k < o->n_state; k++) {
            float *dst = vt_optim_param_state(o, k, i);
            if (!p->trainable) {
                memset(dst, 0, p->t.numel * sizeof(float));
                continue;
            }
            char name[NAME_LEN];
            snprintf(name, sizeof name, "%s.%s", p->name, vt_optim_state_name(o, k));
            if (get(g, name, H5T_NATIVE_FLOAT, dst))
                return fail(e, "cannot read 'optim/%s' (damaged file?)", name);
        }
    }
    int64_t step;
    if (get_scalar(e, g, "optim", "step", H5T_NATIVE_INT64, &step))
        return -1;
    o->step = step;
    return 0;
}

static int read_pos(ectx *e, hid_t f, vt_ckpt_pos *p, int required)
{
    hid_t g = open_group(e, f, "train", required);
    if (g < 0)
        return e->set ? -1 : 0; /* absent and optional: *p keeps its defaults */
    vt_ckpt_pos r;
    int rc = get_scalar(e, g, "train", "epoch", H5T_NATIVE_INT64, &r.epoch) ||
             get_scalar(e, g, "train", "step", H5T_NATIVE_INT64, &r.step) ||
             get_scalar(e, g, "train", "epoch_step", H5T_NATIVE_INT64, &r.epoch_step) ||
             get_scalar(e, g, "train", "samples", H5T_NATIVE_INT64, &r.samples) ||
             get_scalar(e, g, "train", "best_metric", H5T_NATIVE_DOUBLE, &r.best_metric) ||
             get_scalar(e, g, "train", "best_epoch", H5T_NATIVE_INT64, &r.best_epoch);
    H5Gclose(g);
    if (rc)
        return -1;
    *p = r;
    return 0;
}

/* States: all checked before any is read or allocated. */
static int load_states(ectx *e, hid_t f, vt_ckpt *ck)
{
    VT_ASSERT(ck->n_states >= 0 && ck->n_states <= VT_CKPT_MAX_STATES,
              "%d state slots", ck->n_states);
    if (ck->n_states == 0)
        return 0;
    hid_t g = open_group(e, f, "rng", 1);
    if (g < 0)
        return -1;
    dsinfo d[VT_CKPT_MAX_STATES];
    int rc = 0;
    for (int i = 0; i < ck->n_states && rc == 0; i++) {
        vt_ckpt_state *s = &ck->state[i];
        if (ds_info(g, s->name, &d[i]) < 0)
            rc = fail(e, "cannot read 'rng/%s' (damaged file?)", s->name);
        else if (!d[i].exists)
            rc = fail(e, "state 'rng/%s' is missing", s->name);
        else if (d[i].ndim != 1 || d[i].cls != H5T_INTEGER)
            rc = fail(e, "state 'rng/%s' is not a 1-D integer array", s->name);
        else if (s->v && d[i].dims[0] != s->n)
            rc = fail(e, "state 'rng/%s' has %llu values in the checkpoint, %zu expected",
                      s->name, (unsigned long long)d[i].dims[0], s->n);
    }
    for (int i = 0; i < ck->n_states && rc == 0; i++) {
        vt_ckpt_state *s = &ck->state[i];
        uint64_t *v = s->v;
        size_t n = (size_t)d[i].dims[0];
        if (!v) {
            v = calloc(n ? n : 1, sizeof *v);
            if (!v) {
                rc = fail(e, "out of memory reading 'rng/%s'", s->name);
                break;
            }
        }
        if (n && get(g, s->name, H5T_NATIVE_UINT64, v)) {
            if (!s->v)
                free(v);
            rc = fail(e, "cannot read 'rng/%s' (damaged file?)", s->name);
            break;
        }
        s->v = v;
        s->n = n;
    }
    H5Gclose(g);
    return rc;
}

int vt_ckpt_load(const char *path, vt_ckpt *ck, char *err, size_t errlen)
{
    ectx e = {path, err, errlen, 0};
    VT_ASSERT(ck->store && ck->store->data, "vt_ckpt_load needs a finalized store");
    VT_ASSERT(!ck->optim || ck->optim->store == ck->store,
              "the optimizer updates another store than the one loaded");
    quiet q;
    quiet_on(&q);
    int format, rc = -1;
    hid_t gm = -1, go = -1;
    hid_t f = open_ckpt(&e, &format);
    if (f < 0)
        goto out;
    gm = open_group(&e, f, "model", 1);
    if (gm < 0 || check_model(&e, gm, ck->store))
        goto out;
    if (ck->optim) {
        go = open_group(&e, f, "optim", 0);
        if (go < 0) {
            fail(&e, "checkpoint has no optimizer state (saved without one)");
            goto out;
        }
        if (check_optim(&e, go, ck->optim))
            goto out;
    }
    /* Weights exported from PyTorch (docs/checkpoint.md) have no /train. */
    vt_ckpt_pos pos = {0, 0, 0, 0, NAN, -1};
    if (read_pos(&e, f, &pos, 0))
        goto out;
    if (load_states(&e, f, ck))
        goto out;
    for (int i = 0; i < ck->store->n; i++) {
        vt_param *p = &ck->store->p[i];
        if (read_entry(gm, p->name, p)) {
            fail(&e, "cannot read 'model/%s' (damaged file?)", p->name);
            goto out;
        }
    }
    if (ck->optim && read_optim(&e, go, ck->optim))
        goto out;
    ck->pos = pos;
    rc = 0;
out:
    if (go >= 0)
        H5Gclose(go);
    if (gm >= 0)
        H5Gclose(gm);
    if (f >= 0)
        H5Fclose(f);
    quiet_off(&q);
    return rc;
}

int vt_ckpt_load_partial(const char *path, vt_store *store,
                         vt_ckpt_report_fn report, void *ud,
                         vt_ckpt_partial_result *res, char *err, size_t errlen)
{
    ectx e = {path, err, errlen, 0};
    VT_ASSERT(store && store->data, "vt_ckpt_load_partial needs a finalized store");
    vt_ckpt_partial_result r = {0, 0, 0, 0};
    quiet q;
    quiet_on(&q);
    int format, rc = -1;
    hid_t g = -1;
    hid_t f = open_ckpt(&e, &format);
    if (f < 0)
        goto out;
    g = open_group(&e, f, "model", 1);
    if (g < 0)
        goto out;
    for (int i = 0; i < store->n; i++) {
        vt_param *p = &store->p[i];
        dsinfo d;
        char detail[512];
        hsize_t want[MAX_DIMS];
        int nd = file_dims(p, want);
        vt_ckpt_status st;
        if (ds_info(g, p->name, &d) < 0) {
            fail(&e, "cannot read 'model/%s' (damaged file?)", p->name);
            goto out;
        }
        if (!d.exists) {
            st = VT_CKPT_MISSING;
            dims_str(nd, want, detail, sizeof detail);
            r.missing++;
        } else if (entry_mismatch(p, &d, detail, sizeof detail)) {
            char a[128], b[128];
            if (!same_dims(d.ndim, d.dims, nd, want))
                snprintf(detail, sizeof detail, "%s in the checkpoint, %s in the model",
                         dims_str(d.ndim, d.dims, a, sizeof a), dims_str(nd, want, b, sizeof b));
            st = VT_CKPT_SHAPE;
            r.shape++;
        } else {
            if (read_entry(g, p->name, p)) {
                fail(&e, "cannot read 'model/%s' (damaged file?)", p->name);
                goto out;
            }
            st = VT_CKPT_LOADED;
            dims_str(nd, want, detail, sizeof detail);
            r.loaded++;
        }
        if (report)
            report(ud, p->name, st, detail);
    }
    hsize_t n;
    if (n_links(g, &n) < 0) {
        fail(&e, "cannot list /model (damaged file?)");
        goto out;
    }
    for (hsize_t i = 0; i < n; i++) {
        char *name = link_name(g, i);
        if (!name) {
            fail(&e, "cannot list /model (damaged file?)");
            goto out;
        }
        if (!vt_store_find(store, name)) {
            dsinfo d;
            char a[128] = "";
            if (ds_info(g, name, &d) == 0 && d.exists)
                dims_str(d.ndim, d.dims, a, sizeof a);
            r.unused++;
            if (report)
                report(ud, name, VT_CKPT_UNUSED, a);
        }
        free(name);
    }
    if (r.loaded == 0 && store->n > 0) {
        fail(&e, "no parameter of the checkpoint matches the model (%llu in the "
             "checkpoint, %d in the model): is it the right file?",
             (unsigned long long)n, store->n);
        goto out;
    }
    rc = 0;
out:
    if (g >= 0)
        H5Gclose(g);
    if (f >= 0)
        H5Fclose(f);
    quiet_off(&q);
    if (res)
        *res = r;
    return rc;
}

/* ==== Metadata ========================================================== */

void vt_ckpt_info_free(vt_ckpt_info *info)
{
    free(info->model_name);
    free(info->config);
    free_strs(info->classes, info->n_classes);
    free(info->optim_type);
    memset(info, 0, sizeof *info);
}

int vt_ckpt_read_info(const char *path, vt_ckpt_info *info, char *err,
                      size_t errlen)
{
    ectx e = {path, err, errlen, 0};
    memset(info, 0, sizeof *info);
    info->pos.best_metric = NAN;
    info->pos.best_epoch = -1;
    quiet q;
    quiet_on(&q);
    int rc = -1;
    hid_t g = -1;
    hid_t f = open_ckpt(&e, &info->format);
    if (f < 0)
        goto out;
    if (get_attr_str(f, "model", &info->model_name)) {
        fail(&e, "cannot read the model name (damaged file?)");
        goto out;
    }
    char **s;
    int n;
    if (H5Lexists(f, "config", H5P_DEFAULT) > 0) {
        if (get_strs(f, "config", &s, &n) || n != 1) {
            free_strs(s, n);
            fail(&e, "cannot read 'config' as one string (damaged file?)");
            goto out;
        }
        info->config = s[0];
        free(s);
    } else if (!(info->config = strdup(""))) {
        fail(&e, "out of memory");
        goto out;
    }
    if (H5Lexists(f, "classes", H5P_DEFAULT) > 0 &&
        get_strs(f, "classes", &info->classes, &info->n_classes)) {
        fail(&e, "cannot read 'classes' as strings (damaged file?)");
        goto out;
    }
    if (read_pos(&e, f, &info->pos, 0))
        goto out;
    g = open_group(&e, f, "model", 1);
    hsize_t nl;
    if (g < 0)
        goto out;
    if (n_links(g, &nl) < 0) {
        fail(&e, "cannot list /model (damaged file?)");
        goto out;
    }
    info->n_params = (int)nl;
    H5Gclose(g);
    g = open_group(&e, f, "optim", 0);
    if (e.set)
        goto out;
    if (g >= 0) {
        if (get_attr_str(g, "type", &info->optim_type) ||
            get_scalar(&e, g, "optim", "step", H5T_NATIVE_INT64, &info->optim_step)) {
            fail(&e, "cannot read the optimizer attributes (damaged file?)");
            goto out;
        }
    }
    rc = 0;
out:
    if (g >= 0)
        H5Gclose(g);
    if (f >= 0)
        H5Fclose(f);
    quiet_off(&q);
    if (rc)
        vt_ckpt_info_free(info);
    return rc;
}
