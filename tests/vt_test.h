/* vt_test.h - shared helpers of the Check unit tests: finite-difference
 * gradient checks, PyTorch fixtures, tolerant comparisons. */
#ifndef VT_TEST_H
#define VT_TEST_H

#include <check.h>
#include <hdf5.h>

#include "vt_autograd.h"
#include "vt_ops.h"

/* ---- Random data -------------------------------------------------------- */

/* Uniform in [lo, hi), a function of (seed, i) only. */
void vtt_fill(float *x, size_t n, float lo, float hi, uint64_t seed);
/* Leaf in ctx c filled uniform in [lo, hi). */
vt_tensor *vtt_rand(vt_ctx *c, int ndim, const int *shape, float lo, float hi,
                    uint64_t seed, int requires_grad);
#define VTT_SHAPE(...) (sizeof((int[]){__VA_ARGS__}) / sizeof(int)), ((int[]){__VA_ARGS__})

/* ---- Gradient check ----------------------------------------------------- */

/* Builds the op under test from inputs that live in another context. */
typedef vt_tensor *(*vtt_fn)(vt_ctx *c, vt_tensor *const *in, void *ud);

typedef struct {
    double eps;      /* central-difference step */
    double rtol;     /* |a - n| <= atol + rtol * max(|a|, |n|) */
    double atol;
    int max_checks;  /* elements checked per input (0 = 512) */
    int training;    /* run the op in training mode (default 0 = eval) */
} vtt_gc_opts;

/* Checks d(sum(R * f(in)))/d(in[k]) for every input with requires_grad:
 * the analytic gradient from one backward sweep against a central difference
 * evaluated in double from the fp32 forward. R is a fixed random tensor.
 * The random state (dropout) is replayed identically for every evaluation.
 * Fails the current Check test with the worst element on mismatch, and
 * returns the worst ratio err / tol (<= 1 passes). */
double vtt_gradcheck(const char *what, vtt_fn f, void *ud, int n_in,
                     vt_tensor *const *in, const vtt_gc_opts *o);

/* ---- Fixtures ----------------------------------------------------------- */

/* Opens tests/fixtures/<name> (read only) or fails the test. */
hid_t vtt_fixture_open(const char *name);
/* A leaf holding dataset `path`, shape as stored. */
vt_tensor *vtt_load(vt_ctx *c, hid_t f, const char *path, int requires_grad);
/* Integer attribute(s) of a group/dataset; fails the test if missing. */
void vtt_attr_ints(hid_t f, const char *obj, const char *name, int *v, int n);
double vtt_attr_double(hid_t f, const char *obj, const char *name);
int *vtt_load_ints(hid_t f, const char *path, size_t *n); /* malloc'd */
/* Compares n floats with dataset `path` (numel must match). */
void vtt_check_against(const char *what, const float *got, hid_t f,
                       const char *path, double rtol, double atol);

/* Seeds backward from y with the case's upstream gradient "<case>/gy". */
void vtt_backward_fixture(vt_ctx *c, vt_tensor *y, hid_t f, const char *kase);

/* Leaf from dataset "<kase>/<name>". */
vt_tensor *vtt_load_case(vt_ctx *c, hid_t f, const char *kase, const char *name,
                         int requires_grad);
/* Compares got (n values) with "<kase>/<name>" within rtol/atol, prints
 * the max |diff| and the worst err/tol, returns the latter. */
double vtt_parity(hid_t f, const char *kase, const char *name, const float *got,
                  size_t n, double rtol, double atol);

/* ---- Comparisons ------------------------------------------------------- */

/* Worst |g - w| / (atol + rtol * |w|) over n values; fails the test if > 1,
 * naming `what`, the index and both values. */
double vtt_assert_close(const char *what, const float *got, const float *want,
                        size_t n, double rtol, double atol);

/* main() for a test binary holding one suite. Honours VT_THREADS. */
int vtt_run_suite(Suite *s);
#define VTT_MAIN(suite_fn)                                                     \
    int main(void) { return vtt_run_suite(suite_fn()); }

#endif
