/* vt_h5.h - small typed wrappers over the HDF5 C API used by checkpoints,
 * the clip store and the test fixtures. Library code: every function returns
 * 0 on success and -1 on failure with a message in err (never exits). */
#ifndef VT_H5_H
#define VT_H5_H

#include <hdf5.h>
#include <stddef.h>

#define VT_H5_MAX_DIMS 8

/* Silence HDF5's own error stack printing: we report our own messages. */
void vt_h5_quiet(void);

/* Read a float32 dataset (any stored float type is converted). *data is
 * malloc'd; shape receives up to VT_H5_MAX_DIMS extents. */
int vt_h5_read_f32(hid_t loc, const char *path, float **data, int *ndim,
                   int *shape, char *err, size_t errlen);
/* Read into a caller buffer whose extent must equal `expect` elements. */
int vt_h5_read_f32_into(hid_t loc, const char *path, float *data,
                        size_t expect, char *err, size_t errlen);
int vt_h5_read_i32(hid_t loc, const char *path, int **data, size_t *n,
                   char *err, size_t errlen);
/* Write a dataset, creating intermediate groups ("a/b/c"). */
int vt_h5_write_f32(hid_t loc, const char *path, const float *data, int ndim,
                    const int *shape, char *err, size_t errlen);
int vt_h5_write_i32(hid_t loc, const char *path, const int *data, int ndim,
                    const int *shape, char *err, size_t errlen);
int vt_h5_write_u64(hid_t loc, const char *path, const unsigned long long *data,
                    size_t n, char *err, size_t errlen);
int vt_h5_read_u64(hid_t loc, const char *path, unsigned long long *data,
                   size_t n, char *err, size_t errlen);
/* Integer / string attributes on an object (path "." for loc itself). */
int vt_h5_attr_int(hid_t loc, const char *obj, const char *name, int *vals,
                   int n, char *err, size_t errlen);
int vt_h5_attr_double(hid_t loc, const char *obj, const char *name,
                      double *vals, int n, char *err, size_t errlen);
int vt_h5_write_attr_int(hid_t loc, const char *obj, const char *name,
                         const int *vals, int n);
int vt_h5_write_attr_str(hid_t loc, const char *obj, const char *name,
                         const char *s);
/* *s is malloc'd. */
int vt_h5_attr_str(hid_t loc, const char *obj, const char *name, char **s,
                   char *err, size_t errlen);
/* Variable-length UTF-8 string dataset (scalar). */
int vt_h5_write_str(hid_t loc, const char *path, const char *s, char *err,
                    size_t errlen);
int vt_h5_read_str(hid_t loc, const char *path, char **s, char *err,
                   size_t errlen);
int vt_h5_exists(hid_t loc, const char *path);

#endif
