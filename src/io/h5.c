/* h5.c - typed HDF5 helpers (see vt_h5.h). */
#include "vt_h5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vt_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

#define FAIL(...)                                                              \
    do {                                                                       \
        if (err)                                                               \
            snprintf(err, errlen, __VA_ARGS__);                                \
        goto fail;                                                             \
    } while (0)

int vt_h5_exists(hid_t loc, const char *path)
{
    /* H5Lexists fails on a missing intermediate group: walk the prefixes. */
    char buf[1024];
    size_t len = strlen(path);
    if (len >= sizeof buf)
        return 0;
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char save = buf[i];
            buf[i] = '\0';
            if (H5Lexists(loc, buf, H5P_DEFAULT) <= 0)
                return 0;
            buf[i] = save;
        }
    }
    return 1;
}

static hid_t open_ds(hid_t loc, const char *path, int *ndim, hsize_t *dims,
                     char *err, size_t errlen)
{
    hid_t ds = -1, sp = -1;
    if (!vt_h5_exists(loc, path))
        FAIL("dataset '%s' not found", path);
    ds = H5Dopen2(loc, path, H5P_DEFAULT);
    if (ds < 0)
        FAIL("cannot open dataset '%s'", path);
    sp = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd < 0 || nd > VT_H5_MAX_DIMS)
        FAIL("dataset '%s' has unsupported rank %d", path, nd);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    *ndim = nd;
    return ds;
fail:
    if (sp >= 0)
        H5Sclose(sp);
    if (ds >= 0)
        H5Dclose(ds);
    return -1;
}

int vt_h5_read_f32(hid_t loc, const char *path, float **data, int *ndim,
                   int *shape, char *err, size_t errlen)
{
    hsize_t dims[VT_H5_MAX_DIMS];
    int nd;
    hid_t ds = open_ds(loc, path, &nd, dims, err, errlen);
    if (ds < 0)
        return -1;
    size_t n = 1;
    for (int i = 0; i < nd; i++) {
        shape[i] = (int)dims[i];
        n *= dims[i];
    }
    *ndim = nd;
    *data = malloc((n ? n : 1) * sizeof(float));
    if (!*data || H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0) {
        free(*data);
        *data = NULL;
        H5Dclose(ds);
        if (err)
            snprintf(err, errlen, "cannot read dataset '%s' as float32", path);
        return -1;
    }
    H5Dclose(ds);
    return 0;
}

int vt_h5_read_f32_into(hid_t loc, const char *path, float *data,
                        size_t expect, char *err, size_t errlen)
{
    hsize_t dims[VT_H5_MAX_DIMS];
    int nd;
    hid_t ds = open_ds(loc, path, &nd, dims, err, errlen);
    if (ds < 0)
        return -1;
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= dims[i];
    int rc = -1;
    if (n != expect) {
        if (err)
            snprintf(err, errlen, "dataset '%s' has %zu elements, expected %zu",
                     path, n, expect);
    } else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        if (err)
            snprintf(err, errlen, "cannot read dataset '%s' as float32", path);
    } else {
        rc = 0;
    }
    H5Dclose(ds);
    return rc;
}

int vt_h5_read_i32(hid_t loc, const char *path, int **data, size_t *n,
                   char *err, size_t errlen)
{
    hsize_t dims[VT_H5_MAX_DIMS];
    int nd;
    hid_t ds = open_ds(loc, path, &nd, dims, err, errlen);
    if (ds < 0)
        return -1;
    size_t cnt = 1;
    for (int i = 0; i < nd; i++)
        cnt *= dims[i];
    *data = malloc((cnt ? cnt : 1) * sizeof(int));
    if (!*data || H5Dread(ds, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0) {
        free(*data);
        *data = NULL;
        H5Dclose(ds);
        if (err)
            snprintf(err, errlen, "cannot read dataset '%s' as int32", path);
        return -1;
    }
    *n = cnt;
    H5Dclose(ds);
    return 0;
}

/* Create the groups of "a/b/c" up to "a/b". */
static int make_parents(hid_t loc, const char *path)
{
    char buf[1024];
    size_t len = strlen(path);
    if (len >= sizeof buf)
        return -1;
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i < len; i++) {
        if (buf[i] != '/')
            continue;
        buf[i] = '\0';
        if (H5Lexists(loc, buf, H5P_DEFAULT) <= 0) {
            hid_t g = H5Gcreate2(loc, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0)
                return -1;
            H5Gclose(g);
        }
        buf[i] = '/';
    }
    return 0;
}

static int write_ds(hid_t loc, const char *path, hid_t ftype, hid_t mtype,
                    const void *data, int ndim, const hsize_t *dims, char *err,
                    size_t errlen)
{
    hid_t sp = -1, ds = -1;
    if (make_parents(loc, path) < 0)
        FAIL("cannot create the groups of '%s'", path);
    if (H5Lexists(loc, path, H5P_DEFAULT) > 0 && H5Ldelete(loc, path, H5P_DEFAULT) < 0)
        FAIL("cannot replace dataset '%s'", path);
    sp = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    ds = H5Dcreate2(loc, path, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0)
        FAIL("cannot create dataset '%s'", path);
    if (H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        FAIL("cannot write dataset '%s'", path);
    H5Dclose(ds);
    H5Sclose(sp);
    return 0;
fail:
    if (ds >= 0)
        H5Dclose(ds);
    if (sp >= 0)
        H5Sclose(sp);
    return -1;
}

int vt_h5_write_f32(hid_t loc, const char *path, const float *data, int ndim,
                    const int *shape, char *err, size_t errlen)
{
    hsize_t dims[VT_H5_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        dims[i] = (hsize_t)shape[i];
    return write_ds(loc, path, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, ndim,
                    dims, err, errlen);
}

int vt_h5_write_i32(hid_t loc, const char *path, const int *data, int ndim,
                    const int *shape, char *err, size_t errlen)
{
    hsize_t dims[VT_H5_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        dims[i] = (hsize_t)shape[i];
    return write_ds(loc, path, H5T_STD_I32LE, H5T_NATIVE_INT, data, ndim, dims,
                    err, errlen);
}

int vt_h5_write_u64(hid_t loc, const char *path, const unsigned long long *data,
                    size_t n, char *err, size_t errlen)
{
    hsize_t dims[1] = {n};
    return write_ds(loc, path, H5T_STD_U64LE, H5T_NATIVE_ULLONG, data, 1, dims,
                    err, errlen);
}

int vt_h5_read_u64(hid_t loc, const char *path, unsigned long long *data,
                   size_t n, char *err, size_t errlen)
{
    hsize_t dims[VT_H5_MAX_DIMS];
    int nd;
    hid_t ds = open_ds(loc, path, &nd, dims, err, errlen);
    if (ds < 0)
        return -1;
    size_t cnt = 1;
    for (int i = 0; i < nd; i++)
        cnt *= dims[i];
    int rc = -1;
    if (cnt != n) {
        if (err)
            snprintf(err, errlen, "dataset '%s' has %zu elements, expected %zu", path, cnt, n);
    } else if (H5Dread(ds, H5T_NATIVE_ULLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        if (err)
            snprintf(err, errlen, "cannot read dataset '%s'", path);
    } else {
        rc = 0;
    }
    H5Dclose(ds);
    return rc;
}

static hid_t open_attr(hid_t loc, const char *obj, const char *name, char *err,
                       size_t errlen)
{
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) <= 0) {
        if (err)
            snprintf(err, errlen, "attribute '%s' of '%s' not found", name, obj);
        return -1;
    }
    hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 && err)
        snprintf(err, errlen, "cannot open attribute '%s' of '%s'", name, obj);
    return a;
}

static int attr_numeric(hid_t loc, const char *obj, const char *name,
                        hid_t mtype, void *vals, int n, char *err, size_t errlen)
{
    hid_t a = open_attr(loc, obj, name, err, errlen);
    if (a < 0)
        return -1;
    hid_t sp = H5Aget_space(a);
    hssize_t cnt = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    int rc = -1;
    if (cnt != n) {
        if (err)
            snprintf(err, errlen, "attribute '%s' of '%s' has %lld values, expected %d",
                     name, obj, (long long)cnt, n);
    } else if (H5Aread(a, mtype, vals) < 0) {
        if (err)
            snprintf(err, errlen, "cannot read attribute '%s' of '%s'", name, obj);
    } else {
        rc = 0;
    }
    H5Aclose(a);
    return rc;
}

int vt_h5_attr_int(hid_t loc, const char *obj, const char *name, int *vals,
                   int n, char *err, size_t errlen)
{
    return attr_numeric(loc, obj, name, H5T_NATIVE_INT, vals, n, err, errlen);
}

int vt_h5_attr_double(hid_t loc, const char *obj, const char *name,
                      double *vals, int n, char *err, size_t errlen)
{
    return attr_numeric(loc, obj, name, H5T_NATIVE_DOUBLE, vals, n, err, errlen);
}

int vt_h5_write_attr_int(hid_t loc, const char *obj, const char *name,
                         const int *vals, int n)
{
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) > 0)
        H5Adelete_by_name(loc, obj, name, H5P_DEFAULT);
    hid_t a = H5Acreate_by_name(loc, obj, name, H5T_STD_I32LE, sp, H5P_DEFAULT,
                                H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, H5T_NATIVE_INT, vals) >= 0) ? 0 : -1;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

static hid_t vlen_str_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

int vt_h5_write_attr_str(hid_t loc, const char *obj, const char *name,
                         const char *s)
{
    hid_t t = vlen_str_type();
    hid_t sp = H5Screate(H5S_SCALAR);
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) > 0)
        H5Adelete_by_name(loc, obj, name, H5P_DEFAULT);
    hid_t a = H5Acreate_by_name(loc, obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT,
                                H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, t, &s) >= 0) ? 0 : -1;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

/* Strings may be stored fixed-length (numpy 'S') or variable-length
 * (h5py str): read both. */
static int read_string(hid_t obj, hid_t stored, int is_attr, char **s)
{
    int rc = -1;
    if (H5Tget_class(stored) != H5T_STRING)
        return -1;
    if (H5Tis_variable_str(stored) > 0) {
        hid_t t = vlen_str_type();
        char *v = NULL;
        herr_t e = is_attr ? H5Aread(obj, t, &v)
                           : H5Dread(obj, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v);
        if (e >= 0 && v) {
            *s = strdup(v);
            rc = *s ? 0 : -1;
            H5free_memory(v);
        }
        H5Tclose(t);
    } else {
        size_t n = H5Tget_size(stored);
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, n + 1);
        char *v = calloc(n + 2, 1);
        herr_t e = is_attr ? H5Aread(obj, t, v)
                           : H5Dread(obj, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        if (e >= 0) {
            *s = v;
            rc = 0;
        } else {
            free(v);
        }
        H5Tclose(t);
    }
    return rc;
}

int vt_h5_attr_str(hid_t loc, const char *obj, const char *name, char **s,
                   char *err, size_t errlen)
{
    hid_t a = open_attr(loc, obj, name, err, errlen);
    if (a < 0)
        return -1;
    hid_t t = H5Aget_type(a);
    int rc = read_string(a, t, 1, s);
    H5Tclose(t);
    H5Aclose(a);
    if (rc < 0 && err)
        snprintf(err, errlen, "attribute '%s' of '%s' is not a string", name, obj);
    return rc;
}

int vt_h5_write_str(hid_t loc, const char *path, const char *s, char *err,
                    size_t errlen)
{
    hid_t t = vlen_str_type();
    int rc = write_ds(loc, path, t, t, &s, 0, NULL, err, errlen);
    H5Tclose(t);
    return rc;
}

int vt_h5_read_str(hid_t loc, const char *path, char **s, char *err,
                   size_t errlen)
{
    if (!vt_h5_exists(loc, path)) {
        if (err)
            snprintf(err, errlen, "dataset '%s' not found", path);
        return -1;
    }
    hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT);
    if (ds < 0) {
        if (err)
            snprintf(err, errlen, "cannot open dataset '%s'", path);
        return -1;
    }
    hid_t t = H5Dget_type(ds);
    int rc = read_string(ds, t, 0, s);
    H5Tclose(t);
    H5Dclose(ds);
    if (rc < 0 && err)
        snprintf(err, errlen, "dataset '%s' is not a string", path);
    return rc;
}
