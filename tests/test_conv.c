/* test_conv.c - conv3d and conv2d_frames: finite differences, the fast
 * (vol2col + GEMM, tiled) kernels against the direct-loop reference, PyTorch
 * parity from tests/fixtures/conv.h5 (tools/fixtures/gen_conv.py), output
 * shapes, and thread-count determinism.
 *
 * Tile boundaries: vt_conv_set_tile_bytes() (op_conv3d_internal.h) shrinks
 * the column budget so these small shapes run as many tiles, down to a
 * single output row per tile. vt_conv_set_path() forces each of the fast
 * paths (tiles within a sample, a sample per thread; tiles shared by all
 * threads and spanning samples; the implicit GEMM; Winograd F(2x2, 3x3)),
 * which the op otherwise picks by shape. */
#include "vt_test.h"

#include <math.h>
#include <string.h>

#include "op_conv3d_internal.h"

/* Conv is linear in each input, so a large step has no truncation error
 * and keeps the fp32 rounding of the summed objective small against it. */
static const vtt_gc_opts GC = {.eps = 1e-2, .rtol = 1e-3, .atol = 1e-3};

typedef struct {
    int x[5], w[5];
    vt_conv3d_args a;
    int bias;
} conv_case;

/* The spec's shapes: odd sizes, 3x3x3 / 1x3x3 / 2x1x3 kernels, strides
 * (1,2,2) and (2,1,2), padding (1,1,1) and (0,2,1), dilation 2, groups 2,
 * no bias, and the 1x1x1 shortcut. */
static const conv_case GC_CASES[] = {
    {{1, 3, 5, 7, 6}, {2, 3, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    {{2, 2, 4, 7, 8}, {3, 2, 1, 3, 3}, {{1, 2, 2}, {0, 1, 1}, {1, 1, 1}, 1}, 1},
    {{1, 3, 6, 5, 7}, {2, 3, 2, 1, 3}, {{2, 1, 2}, {0, 2, 1}, {1, 1, 1}, 1}, 0},
    {{1, 2, 6, 7, 7}, {2, 2, 3, 3, 3}, {{1, 1, 1}, {2, 1, 2}, {2, 2, 2}, 1}, 1},
    {{2, 4, 3, 5, 5}, {4, 2, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 2}, 1},
    {{2, 3, 2, 3, 4}, {4, 3, 1, 1, 1}, {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}, 0}, 1},
};
#define N_GC_CASES ((int)(sizeof GC_CASES / sizeof GC_CASES[0]))

static vt_tensor *f_conv3d(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    const conv_case *k = ud;
    return vt_conv3d(c, in[0], in[1], k->bias ? in[2] : NULL, &k->a);
}

static vt_tensor *f_conv2d(vt_ctx *c, vt_tensor *const *in, void *ud)
{
    const vt_conv2d_args *a = ud;
    return vt_conv2d_frames(c, in[0], in[1], in[2], a);
}

/* Finite differences of case k (x, w, b from seeds seed, +10, +20). */
static void gradcheck_case(vt_ctx *c, const conv_case *k, uint64_t seed, const char *what)
{
    vt_ctx_reset(c);
    vt_tensor *in[3] = {
        vtt_rand(c, 5, k->x, -1, 1, seed, 1),
        vtt_rand(c, 5, k->w, -0.5f, 0.5f, seed + 10, 1),
        vtt_rand(c, 1, k->w, -1, 1, seed + 20, 1),
    };
    double r = vtt_gradcheck(what, f_conv3d, (void *)k, k->bias ? 3 : 2, in, &GC);
    printf("gradcheck %s: worst err/tol %.3f\n", what, r);
}

START_TEST(gradcheck_conv3d)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    char what[48];
    for (int s = 0; s < N_GC_CASES; s++) {
        snprintf(what, sizeof what, "conv3d case %d", s);
        gradcheck_case(&c, &GC_CASES[s], 10 + (uint64_t)s, what);
    }
    /* Winograd's forward and data gradient (forced; AUTO takes it for
     * larger layers): the first case, and a 2x3x3 kernel with t stride 2
     * and padding 0 / 2 in h / w (its data gradient then goes the implicit
     * GEMM's way, the t stride not being 1) */
    static const conv_case wino[] = {
        {{1, 3, 5, 7, 6}, {2, 3, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
        {{1, 2, 5, 6, 7}, {3, 2, 2, 3, 3}, {{2, 1, 1}, {1, 0, 2}, {1, 1, 1}, 1}, 0},
    };
    vt_conv_set_path(VT_CONV_PATH_WINOGRAD);
    for (int s = 0; s < 2; s++) {
        snprintf(what, sizeof what, "conv3d winograd case %d", s);
        gradcheck_case(&c, &wino[s], 70 + (uint64_t)s, what);
    }
    vt_conv_set_path(VT_CONV_PATH_AUTO);
    vt_ctx_free(&c);
}
END_TEST

START_TEST(gradcheck_conv2d_frames)
{
    static const int xs[2][5] = {{2, 3, 3, 6, 5}, {1, 4, 2, 7, 6}};
    static const int ws[2][4] = {{4, 3, 3, 3}, {4, 2, 2, 3}};
    static const vt_conv2d_args as[2] = {
        {{2, 2}, {1, 1}, {1, 1}, 1},
        {{1, 2}, {1, 0}, {2, 1}, 2},
    };
    vt_ctx c;
    vt_ctx_init(&c, 1);
    for (int s = 0; s < 2; s++) {
        vt_ctx_reset(&c);
        vt_tensor *in[3] = {
            vtt_rand(&c, 5, xs[s], -1, 1, 40 + s, 1),
            vtt_rand(&c, 4, ws[s], -0.5f, 0.5f, 50 + s, 1),
            vtt_rand(&c, 1, ws[s], -1, 1, 60 + s, 1),
        };
        double r = vtt_gradcheck("conv2d_frames", f_conv2d, (void *)&as[s], 3, in, &GC);
        printf("gradcheck conv2d_frames case %d: worst err/tol %.3f\n", s, r);
    }
    vt_ctx_free(&c);
}
END_TEST

/* ==== Fast kernels against the reference ============================== */

/* IGEMM forces the implicit-GEMM forward (conv_igemm.c; backward then
 * takes the shape's BLAS path). On a CPU without AVX2+FMA it falls back to
 * the BLAS paths, which the other two settings test. */
static const char *path_name(int path)
{
    const int fast = vt_conv_igemm_supported();
    return path == VT_CONV_PATH_SHARED     ? "shared"
           : path == VT_CONV_PATH_IGEMM    ? (fast ? "igemm" : "igemm->blas")
           : path == VT_CONV_PATH_WINOGRAD ? (fast ? "winograd" : "winograd->blas")
                                           : "sample";
}

/* Runs the op (forward and a backward seeded with a random gy) and the
 * reference kernels on the same data; compares y, gx, gw, gb. Returns the
 * worst err/tol. */
static double fast_vs_ref(vt_ctx *c, const conv_case *k, uint64_t seed)
{
    const double rtol = 1e-4, atol = 1e-5;
    vt_ctx_reset(c);
    vt_tensor *x = vtt_rand(c, 5, k->x, -1, 1, seed, 1);
    vt_tensor *w = vtt_rand(c, 5, k->w, -0.5f, 0.5f, seed + 1, 1);
    vt_tensor *b = k->bias ? vtt_rand(c, 1, k->w, -1, 1, seed + 2, 1) : NULL;
    vt_tensor *y = vt_conv3d(c, x, w, b, &k->a);
    float *gy = malloc(y->numel * sizeof *gy);
    vtt_fill(gy, y->numel, -1, 1, seed + 3);
    vt_backward_seed(c, y, gy);

    vt_tensor *yr = vt_tensor_like(c, y);
    vt_conv3d_ref_forward(x, w, b, &k->a, yr);
    float *gx = calloc(x->numel, sizeof *gx), *gw = calloc(w->numel, sizeof *gw);
    float *gb = calloc(k->w[0], sizeof *gb);
    vt_conv3d_ref_backward(x, w, &k->a, gy, gx, gw, b ? gb : NULL);

    double worst = vtt_assert_close("fast vs ref: y", y->data, yr->data, y->numel, rtol, atol);
    worst = fmax(worst, vtt_assert_close("fast vs ref: gx", x->grad, gx, x->numel, rtol, atol));
    worst = fmax(worst, vtt_assert_close("fast vs ref: gw", w->grad, gw, w->numel, rtol, atol));
    if (b)
        worst = fmax(worst, vtt_assert_close("fast vs ref: gb", b->grad, gb, b->numel, rtol, atol));
    free(gy);
    free(gx);
    free(gw);
    free(gb);
    return worst;
}

/* Shapes for the fast kernels against the reference (and the fused
 * ReLU against conv + ReLU). */
static const conv_case FAST_CASES[] = {
    /* conv2a-like: 3x3x3, pad 1, 13 x 5 = 65 output rows */
    {{2, 6, 5, 13, 11}, {8, 6, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    {{1, 4, 7, 9, 10}, {6, 4, 2, 1, 3}, {{2, 1, 2}, {0, 2, 1}, {1, 1, 1}, 1}, 0},
    {{2, 4, 6, 8, 9}, {6, 2, 3, 3, 2}, {{1, 2, 1}, {2, 1, 0}, {2, 2, 1}, 2}, 1},
    {{1, 5, 4, 6, 7}, {3, 5, 1, 3, 3}, {{1, 2, 2}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    {{2, 8, 3, 5, 6}, {5, 8, 1, 1, 1}, {{1, 1, 1}, {0, 0, 0}, {1, 1, 1}, 1}, 1},
    /* 1x1x1 with stride: not the shortcut, goes through vol2col */
    {{1, 4, 5, 7, 7}, {3, 4, 1, 1, 1}, {{2, 2, 2}, {0, 0, 0}, {1, 1, 1}, 1}, 0},
    /* conv5-like: large K (24 * 27 = 648) on a 2x3x3 map, 3 samples of
     * 6 rows, so 3.5-row tiles straddle samples; 40 filters, not a
     * multiple of the 16-row GEMM slices */
    {{3, 24, 2, 3, 3}, {40, 24, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    /* odd everything across samples: stride, asymmetric padding,
     * dilation and 3 groups of 7 filters */
    {{3, 9, 5, 7, 5}, {21, 3, 3, 2, 3}, {{2, 1, 2}, {1, 0, 2}, {1, 2, 1}, 3}, 1},
    /* implicit GEMM: 3 x 1680 positions, several 1024-position chunks
     * (the last ragged); 21-wide rows, so micro-panels of 16 straddle
     * rows and samples; K = 5 * 27 = 135 */
    {{3, 5, 4, 20, 21}, {7, 5, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    /* K = 300 > one 256-tap block (and a ragged second), a 2-sample
     * batch of 12 positions: channels split over threads; w stride 2
     * (the gather packing) with dilation */
    {{2, 12, 3, 4, 9}, {13, 12, 1, 5, 5}, {{1, 1, 2}, {0, 2, 2}, {1, 1, 2}, 1}, 1},
    /* unit stride, 32+ input channels: the data gradient runs as a
     * forward conv of gy (swapped, reversed weights, padding
     * d*(k-1) - p: here 1, 2, 0 in t, h, w), alone and in 2 groups */
    {{2, 36, 3, 6, 7}, {10, 36, 3, 3, 3}, {{1, 1, 1}, {1, 0, 2}, {1, 1, 1}, 1}, 1},
    {{1, 64, 4, 5, 6}, {8, 32, 3, 2, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 2, 1}, 2}, 0},
    /* ConvLSTM-stem-like, w stride 2: 19-wide output rows, so the
     * weight gradient's 8-position pieces are full (the shuffle
     * packing) and ragged (3 lanes) */
    {{2, 4, 3, 7, 37}, {9, 4, 1, 3, 7}, {{1, 2, 2}, {0, 1, 3}, {1, 1, 1}, 1}, 1},
    /* weight gradient blocking: K = 1080 taps (68 panels of 16, two
     * blocks); 150 filters (25 panels of 6, two blocks) on a short K,
     * so gx's sums stay short enough for the tolerance */
    {{1, 40, 2, 3, 5}, {8, 40, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    {{2, 4, 3, 4, 10}, {150, 4, 1, 1, 3}, {{1, 1, 1}, {0, 0, 1}, {1, 1, 1}, 1}, 1},
    /* the data gradient's swapped convolution with 1152 positions, two
     * chunks: its weights packed (a gather); 32 of its output
     * channels, so a ragged last panel of 2 */
    {{2, 32, 4, 9, 16}, {7, 32, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    /* and with one chunk, read in place in runs of kvol = 343 taps,
     * more than a 256-tap block: blocks of one run each */
    {{1, 32, 4, 5, 7}, {2, 32, 7, 7, 7}, {{1, 1, 1}, {3, 3, 3}, {1, 1, 1}, 1}, 1},
    /* conv1a-like: 3 (and 2) input channels, more than one chunk of
     * positions, rows of 70 (61) */
    {{2, 3, 3, 4, 70}, {5, 3, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    {{2, 2, 2, 5, 61}, {4, 2, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 0},
    /* 2 filters, t stride 2, with bias; 3 groups of 1 filter, each of
     * 2 channels */
    {{2, 5, 3, 4, 40}, {2, 5, 3, 3, 3}, {{2, 1, 1}, {1, 0, 1}, {1, 1, 1}, 1}, 1},
    {{1, 6, 3, 4, 35}, {3, 2, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 3}, 1},
    /* the taps-by-filters weight gradient for long rows (45 wide, K =
     * 162): 2 tap blocks x 4 position segments, so partial sums, with
     * the bias tap in the second block; 20 filters, a ragged panel of 16 */
    {{2, 6, 3, 4, 45}, {20, 6, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    /* and at w stride 2 (43 wide), no bias: 4 tap blocks x 2 segments */
    {{1, 5, 2, 3, 85}, {7, 5, 3, 3, 3}, {{1, 1, 2}, {1, 1, 1}, {1, 1, 1}, 1}, 0},
    /* few positions (the conv5-like case above goes the same way): 75
     * positions, a ragged panel of 3; w stride 2, so the columns are
     * gathered; 33 filters, a panel of 1; K = 540, a ragged block */
    {{1, 20, 3, 5, 9}, {33, 20, 3, 3, 3}, {{1, 1, 2}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    /* its data gradient (a convolution of gy by the swapped weights, K =
     * 96 x 3) with 3 taps a filter, fewer than a transpose's 8 */
    {{1, 32, 3, 4, 6}, {96, 32, 1, 1, 3}, {{1, 1, 1}, {0, 0, 1}, {1, 1, 1}, 1}, 1},
    /* taps that read only temporal padding are left out of the sums: K =
     * 513, so the last K block is one tap (channel 18's last, of kernel
     * frame 2), which the last output frame's panels leave out: their
     * ReLU comes at the block before */
    {{2, 19, 3, 5, 6}, {8, 19, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    /* kernel frames of 17 x 17 = 289 taps: the first output frame's first
     * live tap (289) is in the second K block, which then adds the bias;
     * the last frame's last live tap (866) in the fourth, of five */
    {{1, 2, 2, 17, 17}, {4, 2, 2, 17, 17}, {{1, 1, 1}, {1, 8, 8}, {1, 1, 1}, 1}, 1},
    /* a 1-frame clip: its one output frame sees kernel frame 1 only; 2
     * groups of 2 channels of 1 x 3 (groups: the general weight-gradient
     * path, forced), so its kernel-frame-major 16-tap panels span three
     * kernel frames of 6 taps, whose store goes lane by lane */
    {{2, 4, 1, 24, 24}, {4, 2, 3, 1, 3}, {{1, 1, 1}, {1, 0, 1}, {1, 1, 1}, 2}, 1},
    /* the weight gradient leaving out the padding's taps, by the tile's
     * store (conv_igemm.c, wstore): 16 channels of 3x3, a third of the
     * pairs padding: a block's frame is 8 panels of runs of 8 (each
     * half one window) and the ninth taps' panel, stored lane by lane */
    {{2, 16, 2, 5, 6}, {7, 16, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    /* 2 groups of 8 channels of 2x2: blocks of 4 channels, runs of 4,
     * two to a half, blended into their windows */
    {{1, 16, 2, 6, 7}, {10, 8, 3, 2, 2}, {{1, 1, 1}, {1, 0, 1}, {1, 1, 1}, 2}, 1},
    /* 5x5: 3 runs of 8 a channel and the 25th taps' panel; 18 channels,
     * a short second block of 2 whose panels straddle kernel frames */
    {{1, 18, 2, 5, 5}, {3, 18, 3, 5, 5}, {{1, 1, 1}, {1, 2, 2}, {1, 1, 1}, 1}, 0},
    /* Winograd F(2x2, 3x3) (conv_winograd.c, forced by its path): the
     * inner frames' class holds 2 planes of 12 x 12 tiles, 288, so two
     * chunks (of at most 256 tiles) and ragged panels; 23 wide, a ragged
     * tile column, so groups of 8 tiles in one row and in two, whole and
     * at x's edges; 9 filters, a ragged panel of 3 */
    {{1, 5, 4, 24, 23}, {9, 5, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    /* no padding in h, 2 in w, 2 kernel frames, no bias */
    {{1, 4, 3, 9, 12}, {7, 4, 2, 3, 3}, {{1, 1, 1}, {0, 0, 2}, {1, 1, 1}, 1}, 0},
    /* t stride 2 and dilation 2 with padding 2: three frame classes */
    {{2, 3, 7, 10, 11}, {5, 3, 3, 3, 3}, {{2, 1, 1}, {2, 1, 1}, {2, 1, 1}, 1}, 1},
    /* a 1-frame clip padded by 3: output frames 0 and 4 see no kernel
     * frame (bias only), the others one each */
    {{1, 3, 1, 6, 6}, {4, 3, 3, 3, 3}, {{1, 1, 1}, {3, 1, 1}, {1, 1, 1}, 1}, 1},
    /* R = 270 > one 256-tap block (the forward's); 150 filters, two MC
     * blocks of panels (apart: together, gx's sums would run over 4050
     * terms, more than the tolerance allows any fp32 summation order) */
    {{1, 90, 3, 4, 5}, {8, 90, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    {{1, 4, 2, 6, 7}, {150, 4, 1, 3, 3}, {{1, 1, 1}, {0, 1, 1}, {1, 1, 1}, 1}, 1},
    /* 2-D (one kernel frame), padding 2 in h and w: 7 x 9 outputs */
    {{1, 6, 2, 5, 7}, {5, 6, 1, 3, 3}, {{1, 1, 1}, {0, 2, 2}, {1, 1, 1}, 1}, 1},
};
#define N_FAST_CASES ((int)(sizeof FAST_CASES / sizeof FAST_CASES[0]))

START_TEST(fast_matches_reference)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    for (int path = VT_CONV_PATH_SAMPLE; path <= VT_CONV_PATH_WINOGRAD; path++) {
        vt_conv_set_path(path);
        for (int s = 0; s < N_FAST_CASES; s++) {
            const conv_case *k = &FAST_CASES[s];
            int kvol = k->w[2] * k->w[3] * k->w[4];
            int wo = vt_conv_out_size(k->x[4], k->w[4], k->a.stride[2], k->a.pad[2],
                                      k->a.dilation[2]);
            size_t row = (size_t)k->x[1] * kvol * wo * sizeof(float);
            /* whole sample (shared: whole batch) in one tile; 3 rows a tile
             * (a ragged last tile for 65 rows); one row a tile */
            size_t budgets[3] = {0, 3 * row + row / 2, 1};
            for (int t = 0; t < 3; t++) {
                vt_conv_set_tile_bytes(budgets[t]);
                double r = fast_vs_ref(&c, k, 100 + 10 * (uint64_t)s);
                printf("fast vs ref %s path case %d tile budget %zu: worst err/tol %.3f\n",
                       path_name(path), s,
                       budgets[t], r);
            }
        }
    }
    vt_conv_set_path(VT_CONV_PATH_AUTO);
    vt_conv_set_tile_bytes(0);
    vt_ctx_free(&c);
}
END_TEST

/* ==== ReLU fused into the convolution ================================== */

/* vt_conv3d_relu against vt_relu(vt_conv3d(...)) on the same data, bit for
 * bit: y without a gradient (the fused store), and y, gx, gw, gb with one
 * (conv node + in-place ReLU). Both signs must be common in y, or the
 * comparison would not show the ReLU applied. */
static void relu_fused_case(vt_ctx *c, const conv_case *k, uint64_t seed, const char *what)
{
    for (int grad = 0; grad <= 1; grad++) {
        /* per variant: y, gx, gw, gb, one after the other */
        float *out[2] = {NULL, NULL};
        size_t ny = 0, nx = 0, nw = 0, nb = 0;
        for (int v = 0; v < 2; v++) {
            vt_ctx_reset(c);
            c->grad_enabled = grad;
            vt_tensor *x = vtt_rand(c, 5, k->x, -1, 1, seed, grad);
            vt_tensor *w = vtt_rand(c, 5, k->w, -0.5f, 0.5f, seed + 1, grad);
            vt_tensor *b = k->bias ? vtt_rand(c, 1, k->w, -1, 1, seed + 2, grad) : NULL;
            vt_tensor *y = v ? vt_conv3d_relu(c, x, w, b, &k->a)
                             : vt_relu(c, vt_conv3d(c, x, w, b, &k->a));
            ny = y->numel;
            nx = grad ? x->numel : 0;
            nw = grad ? w->numel : 0;
            nb = grad && b ? b->numel : 0;
            out[v] = malloc((ny + nx + nw + nb) * sizeof(float));
            memcpy(out[v], y->data, ny * sizeof(float));
            if (!grad) {
                ck_assert_uint_eq(c->n_nodes, 0);
                continue;
            }
            float *gy = malloc(ny * sizeof *gy);
            vtt_fill(gy, ny, -1, 1, seed + 3);
            vt_backward_seed(c, y, gy);
            free(gy);
            memcpy(out[v] + ny, x->grad, nx * sizeof(float));
            memcpy(out[v] + ny + nx, w->grad, nw * sizeof(float));
            if (b)
                memcpy(out[v] + ny + nx + nw, b->grad, nb * sizeof(float));
        }
        size_t zero = 0, pos = 0;
        for (size_t i = 0; i < ny; i++) {
            zero += out[1][i] == 0.0f;
            pos += out[1][i] > 0.0f;
        }
        ck_assert_msg(zero > ny / 5 && pos > ny / 5, "%s: %zu zeros, %zu positives of %zu",
                      what, zero, pos, ny);
        ck_assert_msg(!memcmp(out[0], out[1], ny * sizeof(float)), "%s, %s: fused y differs",
                      what, grad ? "grad" : "no grad");
        ck_assert_msg(!memcmp(out[0] + ny, out[1] + ny, (nx + nw + nb) * sizeof(float)),
                      "%s: fused gradients differ", what);
        free(out[0]);
        free(out[1]);
    }
}

START_TEST(relu_fused_matches_unfused)
{
    /* FAST_CASES: 3 x 1680 positions (several chunks, micro-panels across
     * rows and samples); K = 648 (the ReLU only at the third K block's
     * store); strides, padding, dilation and 3 groups; K = 300 in two
     * blocks with w stride 2; the 1x1x1 shortcut; the ReLU of panels
     * whose last K blocks are all temporal padding; Winograd's store
     * (rows of 8 tiles and single lanes) and its bias-only frames */
    static const int pick[] = {8, 6, 7, 9, 4, 25, 26, 31, 34};
    vt_ctx c;
    vt_ctx_init(&c, 1);
    char what[64];
    for (int path = VT_CONV_PATH_SAMPLE; path <= VT_CONV_PATH_WINOGRAD; path++) {
        vt_conv_set_path(path);
        for (int s = 0; s < (int)(sizeof pick / sizeof pick[0]); s++) {
            snprintf(what, sizeof what, "%s path, case %d", path_name(path), pick[s]);
            relu_fused_case(&c, &FAST_CASES[pick[s]], 700 + 10 * (uint64_t)s, what);
        }
        /* conv2d_frames: 2 x 3 frames of 9 x 13, stride 2, no bias */
        for (int grad = 0; grad <= 1; grad++) {
            vt_ctx_reset(&c);
            c.grad_enabled = grad;
            vt_conv2d_args a = {{2, 2}, {1, 1}, {1, 1}, 1};
            vt_tensor *x = vtt_rand(&c, VTT_SHAPE(2, 4, 3, 9, 13), -1, 1, 5, 0);
            vt_tensor *w = vtt_rand(&c, VTT_SHAPE(6, 4, 3, 3), -1, 1, 6, grad);
            vt_tensor *y0 = vt_relu(&c, vt_conv2d_frames(&c, x, w, NULL, &a));
            vt_tensor *y1 = vt_conv2d_frames_relu(&c, x, w, NULL, &a);
            ck_assert_mem_eq(y0->data, y1->data, y0->numel * sizeof(float));
            ck_assert_uint_eq(c.n_nodes, (grad ? 4 : 0)); /* conv + relu, twice */
        }
    }
    vt_conv_set_path(VT_CONV_PATH_AUTO);
    vt_ctx_free(&c);
}
END_TEST

/* ==== PyTorch parity =================================================== */

static const char *const FIXTURE_CASES[] = {
    "c3d_odd_k333_p1", "c3d_k133_s122", "c3d_k213_s212_p021_nobias",
    "c3d_dil2",        "c3d_groups2",   "c3d_pointwise",
    "c3d_g3_s2_dil",   "c2d_k33_s2_p1", "c2d_k13_g2_dil_nobias",
    /* 3x3 in space with unit spatial stride: Winograd's shapes */
    "c3d_wino_k333_p1_w21", "c3d_wino_k233_st2_p012_nobias", "c2d_wino_k33_p0",
};

/* Inputs are O(1) (x in [-1, 1], w in [-0.5, 0.5], gy in [-1, 1]) and the
 * largest sums have a few hundred terms, so fp32 accumulation stays well
 * under 1e-5 absolute; rtol 1e-4 with that floor for the near-zero values. */
#define PARITY_RTOL 1e-4
#define PARITY_ATOL 1e-5

/* Compares got with dataset <name>/<field>; returns the worst err/tol and
 * the largest absolute difference in *maxabs. */
static double check_ds(vt_ctx *c, hid_t f, const char *name, const char *field,
                       const vt_tensor *got, double *maxabs)
{
    char p[256], what[160];
    snprintf(p, sizeof p, "%s/%s", name, field);
    snprintf(what, sizeof what, "%s: %s", name, field);
    vt_tensor *want = vtt_load(c, f, p, 0);
    ck_assert_msg(want->numel == got->numel, "%s: %zu values, fixture %zu", what,
                  got->numel, want->numel);
    const float *g = strcmp(field, "y") ? got->grad : got->data;
    for (size_t i = 0; i < want->numel; i++)
        *maxabs = fmax(*maxabs, fabs((double)g[i] - want->data[i]));
    return vtt_assert_close(what, g, want->data, want->numel, PARITY_RTOL, PARITY_ATOL);
}

/* Returns the worst err/tol over y and every gradient. */
static double parity_case(vt_ctx *c, hid_t f, const char *name, double *maxabs)
{
    char p[256];
    int op, groups, has_bias, stride[3] = {1, 1, 1}, pad[3] = {0, 0, 0},
                              dil[3] = {1, 1, 1};
    vtt_attr_ints(f, name, "op", &op, 1);
    vtt_attr_ints(f, name, "groups", &groups, 1);
    vtt_attr_ints(f, name, "has_bias", &has_bias, 1);
    int nd = op == 0 ? 3 : 2;
    vtt_attr_ints(f, name, "stride", stride + 3 - nd, nd);
    vtt_attr_ints(f, name, "pad", pad + 3 - nd, nd);
    vtt_attr_ints(f, name, "dilation", dil + 3 - nd, nd);

    vt_ctx_reset(c);
    snprintf(p, sizeof p, "%s/x", name);
    vt_tensor *x = vtt_load(c, f, p, 1);
    snprintf(p, sizeof p, "%s/w", name);
    vt_tensor *w = vtt_load(c, f, p, 1);
    vt_tensor *b = NULL;
    if (has_bias) {
        snprintf(p, sizeof p, "%s/b", name);
        b = vtt_load(c, f, p, 1);
    }
    vt_tensor *y;
    if (op == 0) {
        vt_conv3d_args a = {{stride[0], stride[1], stride[2]},
                            {pad[0], pad[1], pad[2]},
                            {dil[0], dil[1], dil[2]}, groups};
        y = vt_conv3d(c, x, w, b, &a);
    } else {
        vt_conv2d_args a = {{stride[1], stride[2]}, {pad[1], pad[2]},
                            {dil[1], dil[2]}, groups};
        y = vt_conv2d_frames(c, x, w, b, &a);
    }
    /* output shape as PyTorch's, dimension by dimension */
    snprintf(p, sizeof p, "%s/y", name);
    vt_tensor *yw = vtt_load(c, f, p, 0);
    ck_assert_int_eq(yw->ndim, 5);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(y->shape[i], yw->shape[i]);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(y->shape[2 + i],
                         vt_conv_out_size(x->shape[2 + i],
                                          op == 0 ? w->shape[2 + i]
                                                  : (i == 0 ? 1 : w->shape[1 + i]),
                                          stride[i], pad[i], dil[i]));
    double worst = check_ds(c, f, name, "y", y, maxabs);
    /* seeded here rather than by vtt_backward_fixture, which would set up
     * a whole context for every case */
    snprintf(p, sizeof p, "%s/gy", name);
    vt_tensor *gy = vtt_load(c, f, p, 0);
    ck_assert_uint_eq(gy->numel, y->numel);
    vt_backward_seed(c, y, gy->data);
    vt_tensor *ts[3] = {x, w, b};
    const char *tn[3] = {"x", "w", "b"};
    for (int i = 0; i < (has_bias ? 3 : 2); i++) {
        snprintf(p, sizeof p, "g_%s", tn[i]);
        worst = fmax(worst, check_ds(c, f, name, p, ts[i], maxabs));
    }
    return worst;
}

START_TEST(pytorch_parity)
{
    hid_t f = vtt_fixture_open("conv.h5");
    vt_ctx c;
    vt_ctx_init(&c, 1);
    /* Default budget (one tile) and one output row per tile, on each path
     * (Winograd's: the cases it takes, the implicit GEMM the rest). */
    for (int path = VT_CONV_PATH_SAMPLE; path <= VT_CONV_PATH_WINOGRAD; path++)
        for (int t = 0; t < 2; t++) {
            vt_conv_set_path(path);
            vt_conv_set_tile_bytes(t ? 1 : 0);
            for (size_t i = 0; i < sizeof FIXTURE_CASES / sizeof FIXTURE_CASES[0]; i++) {
                double maxabs = 0;
                double r = parity_case(&c, f, FIXTURE_CASES[i], &maxabs);
                printf("parity %s (%s path, %s tile): worst err/tol %.3f, max |diff| %.2e\n",
                       FIXTURE_CASES[i], path_name(path),
                       t ? "1-row" : "default", r, maxabs);
            }
        }
    vt_conv_set_path(VT_CONV_PATH_AUTO);
    vt_conv_set_tile_bytes(0);
    vt_ctx_free(&c);
    H5Fclose(f);
}
END_TEST

/* ==== Output shapes ==================================================== */

START_TEST(output_sizes)
{
    /* C3D: 3x3x3 pad 1 keeps the extent */
    ck_assert_int_eq(vt_conv_out_size(112, 3, 1, 1, 1), 112);
    ck_assert_int_eq(vt_conv_out_size(16, 3, 1, 1, 1), 16);
    /* floor: (7 + 0 - 2 - 1) / 2 + 1 = 3, (8 - 3) / 2 + 1 = 3 */
    ck_assert_int_eq(vt_conv_out_size(7, 3, 2, 0, 1), 3);
    ck_assert_int_eq(vt_conv_out_size(8, 3, 2, 0, 1), 3);
    ck_assert_int_eq(vt_conv_out_size(9, 3, 2, 0, 1), 4);
    /* ResNet stem: 7x7 stride 2 pad 3 on 224 */
    ck_assert_int_eq(vt_conv_out_size(224, 7, 2, 3, 1), 112);
    /* dilation 2: effective kernel 5 */
    ck_assert_int_eq(vt_conv_out_size(9, 3, 1, 0, 2), 5);
    ck_assert_int_eq(vt_conv_out_size(9, 3, 1, 2, 2), 9);
    /* zero stride / dilation mean 1, as in the args structs */
    ck_assert_int_eq(vt_conv_out_size(9, 3, 0, 0, 0), 7);
    /* kernel larger than the padded input: no valid output (<= 0), with a
     * floor (not truncating) division for negative numerators */
    ck_assert_int_le(vt_conv_out_size(2, 5, 1, 0, 1), 0);
    ck_assert_int_le(vt_conv_out_size(1, 3, 2, 0, 1), 0);
    ck_assert_int_le(vt_conv_out_size(1, 4, 2, 0, 1), 0);
    ck_assert_int_le(vt_conv_out_size(1, 2, 2, 0, 1), 0); /* truncation says 1 */
    ck_assert_int_le(vt_conv_out_size(3, 3, 3, 0, 2), 0);
    ck_assert_int_eq(vt_conv_out_size(1, 3, 2, 1, 1), 1);

    /* the op's output follows the function per dimension */
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *x = vtt_rand(&c, VTT_SHAPE(2, 4, 9, 10, 11), -1, 1, 1, 0);
    vt_tensor *w = vtt_rand(&c, VTT_SHAPE(6, 2, 3, 2, 3), -1, 1, 2, 0);
    vt_conv3d_args a = {{2, 1, 3}, {1, 0, 2}, {1, 2, 2}, 2};
    vt_tensor *y = vt_conv3d(&c, x, w, NULL, &a);
    ck_assert_int_eq(y->ndim, 5);
    ck_assert_int_eq(y->shape[0], 2);
    ck_assert_int_eq(y->shape[1], 6);
    /* T: (9 + 2 - 2 - 1) / 2 + 1, H: (10 - 2 - 1) + 1, W: (11 + 4 - 4 - 1) / 3 + 1 */
    ck_assert_int_eq(y->shape[2], 5);
    ck_assert_int_eq(y->shape[3], 8);
    ck_assert_int_eq(y->shape[4], 4);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(y->shape[2 + i],
                         vt_conv_out_size(x->shape[2 + i], w->shape[2 + i],
                                          a.stride[i], a.pad[i], a.dilation[i]));
    vt_ctx_free(&c);
}
END_TEST

/* ==== Modes and threads ================================================ */

START_TEST(no_grad_records_nothing)
{
    vt_ctx c;
    vt_ctx_init(&c, 1);
    vt_tensor *x = vtt_rand(&c, VTT_SHAPE(1, 2, 3, 4, 5), -1, 1, 1, 1);
    vt_tensor *w = vtt_rand(&c, VTT_SHAPE(3, 2, 1, 3, 3), -1, 1, 2, 1);
    vt_tensor *w2 = vtt_rand(&c, VTT_SHAPE(3, 2, 3, 3), -1, 1, 2, 1);
    vt_conv3d_args a = {{1, 1, 1}, {0, 1, 1}, {1, 1, 1}, 1};
    vt_conv2d_args a2 = {{1, 1}, {1, 1}, {1, 1}, 1};
    c.grad_enabled = 0;
    size_t used = c.arena.used;
    vt_tensor *y = vt_conv3d(&c, x, w, NULL, &a);
    vt_tensor *y2 = vt_conv2d_frames(&c, x, w2, NULL, &a2);
    ck_assert_uint_eq(c.n_nodes, 0);
    ck_assert_int_eq(y->requires_grad, 0);
    /* nothing but the two outputs (and their headers) came from the arena */
    ck_assert_uint_le(c.arena.used - used,
                      (y->numel + y2->numel) * sizeof(float) + 2 * 64 + 2 * 128);
    /* a (1, 3, 3) conv3d and conv2d_frames with the same weight agree */
    ck_assert_mem_eq(y->data, y2->data, y->numel * sizeof(float));
    c.grad_enabled = 1;
    vt_conv3d(&c, x, w, NULL, &a);
    ck_assert_uint_eq(c.n_nodes, 1);
    vt_ctx_free(&c);
}
END_TEST

typedef struct {
    float *y, *gx, *gw, *gb;
    size_t ny, nx, nw, nb;
} run_out;

static void run_once(vt_ctx *c, const conv_case *k, run_out *r)
{
    vt_ctx_reset(c);
    vt_tensor *x = vtt_rand(c, 5, k->x, -1, 1, 7, 1);
    vt_tensor *w = vtt_rand(c, 5, k->w, -0.5f, 0.5f, 8, 1);
    vt_tensor *b = vtt_rand(c, 1, k->w, -1, 1, 9, 1);
    vt_tensor *y = vt_conv3d(c, x, w, b, &k->a);
    float *gy = malloc(y->numel * sizeof *gy);
    vtt_fill(gy, y->numel, -1, 1, 10);
    vt_backward_seed(c, y, gy);
    free(gy);
    r->ny = y->numel;
    r->nx = x->numel;
    r->nw = w->numel;
    r->nb = b->numel;
    r->y = malloc(r->ny * sizeof(float));
    r->gx = malloc(r->nx * sizeof(float));
    r->gw = malloc(r->nw * sizeof(float));
    r->gb = malloc(r->nb * sizeof(float));
    memcpy(r->y, y->data, r->ny * sizeof(float));
    memcpy(r->gx, x->grad, r->nx * sizeof(float));
    memcpy(r->gw, w->grad, r->nw * sizeof(float));
    memcpy(r->gb, b->grad, r->nb * sizeof(float));
}

static void run_free(run_out *r)
{
    free(r->y);
    free(r->gx);
    free(r->gw);
    free(r->gb);
}

/* Within float rounding: OpenBLAS blocks a GEMM differently for another
 * thread count, so sums of thousands of terms (gw over N * P) may round
 * differently; 1e-6 of the array's largest magnitude covers that. */
static double close_scaled(const char *what, const float *got, const float *want,
                           size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(want[i]));
    return vtt_assert_close(what, got, want, n, 1e-5, 1e-6 * m);
}

START_TEST(threads_deterministic)
{
    /* Big enough that every parallel loop and OpenBLAS's threading engage,
     * with several tiles per sample. On the sample path two threads take the
     * first two cases a sample per thread (both gradients fused, per-thread
     * gw partials) and the next two (3 samples) split gw over (sample, tile)
     * items, then gx a sample at a time with threaded GEMMs; one thread goes
     * in order. The shared path (not for the 1x1x1 shortcuts) splits every
     * GEMM over output rows; the fifth case is conv5-like, large K on a
     * small map, with 9-row tiles straddling 10-row samples and 56 filters
     * split 32 + 24 between the threads. */
    static const conv_case cases[] = {
        {{2, 8, 6, 20, 20}, {16, 8, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
        {{2, 32, 4, 14, 14}, {48, 32, 1, 1, 1}, {{1, 1, 1}, {0, 0, 0}, {1, 1, 1}, 1}, 1},
        {{3, 8, 5, 18, 17}, {16, 4, 3, 3, 3}, {{1, 2, 1}, {1, 1, 0}, {1, 1, 1}, 2}, 1},
        {{3, 32, 4, 14, 14}, {48, 32, 1, 1, 1}, {{1, 1, 1}, {0, 0, 0}, {1, 1, 1}, 1}, 1},
        {{3, 40, 2, 5, 5}, {56, 40, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
        /* long rows: the taps-by-filters weight gradient, 2 tap blocks x
         * 4 segments of positions */
        {{2, 6, 3, 6, 44}, {20, 6, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
        /* 9000 positions: the implicit GEMM's 9 chunks of 1008 at 1
         * thread, 10 of 912 at 2 (a whole number a thread), so chunk and
         * micro-panel bounds differ between the runs, and the first and
         * last frames' panels leave taps out */
        {{1, 4, 9, 10, 100}, {5, 4, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
        /* Winograd, as AUTO takes it (16 channels and filters, 2 x 4 x
         * 15 x 15 = 1800 tiles): chunks of 256 tiles, which the threads
         * take in whatever order they come */
        {{2, 16, 4, 30, 30}, {16, 16, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1}, 1},
    };
    int saved = vt_get_threads();
    vt_conv_set_tile_bytes(200000);
    vt_ctx c;
    vt_ctx_init(&c, 1);
    for (int path = VT_CONV_PATH_SAMPLE; path <= VT_CONV_PATH_WINOGRAD; path++)
        for (int s = 0; s < (int)(sizeof cases / sizeof cases[0]); s++) {
            run_out one, two, two_again;
            vt_conv_set_path(path);
            vt_set_threads(1);
            run_once(&c, &cases[s], &one);
            vt_set_threads(2);
            run_once(&c, &cases[s], &two);
            run_once(&c, &cases[s], &two_again);
            vt_set_threads(saved);
            ck_assert_mem_eq(two.y, two_again.y, two.ny * sizeof(float));
            ck_assert_mem_eq(two.gx, two_again.gx, two.nx * sizeof(float));
            ck_assert_mem_eq(two.gw, two_again.gw, two.nw * sizeof(float));
            ck_assert_mem_eq(two.gb, two_again.gb, two.nb * sizeof(float));
            /* the implicit GEMM and Winograd sum each output and each
             * weight gradient the same way whatever the thread count */
            if ((path == VT_CONV_PATH_IGEMM || path == VT_CONV_PATH_WINOGRAD) &&
                vt_conv_igemm_supported()) {
                ck_assert_mem_eq(two.gx, one.gx, one.nx * sizeof(float));
                ck_assert_mem_eq(two.y, one.y, one.ny * sizeof(float));
                ck_assert_mem_eq(two.gw, one.gw, one.nw * sizeof(float));
                ck_assert_mem_eq(two.gb, one.gb, one.nb * sizeof(float));
            }
            double r = close_scaled("1 vs 2 threads: y", two.y, one.y, one.ny);
            r = fmax(r, close_scaled("1 vs 2 threads: gx", two.gx, one.gx, one.nx));
            r = fmax(r, close_scaled("1 vs 2 threads: gw", two.gw, one.gw, one.nw));
            r = fmax(r, close_scaled("1 vs 2 threads: gb", two.gb, one.gb, one.nb));
            printf("threads %s path case %d: 1 vs 2 worst err/tol %.3f, 2 vs 2 "
                   "bit-identical\n", path_name(path),
                   s, r);
            run_free(&one);
            run_free(&two);
            run_free(&two_again);
        }
    vt_conv_set_path(VT_CONV_PATH_AUTO);
    vt_conv_set_tile_bytes(0);
    vt_ctx_free(&c);
}
END_TEST

static Suite *conv_suite(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("conv");
    tcase_add_test(tc, output_sizes);
    tcase_add_test(tc, no_grad_records_nothing);
    tcase_add_test(tc, gradcheck_conv3d);
    tcase_add_test(tc, gradcheck_conv2d_frames);
    tcase_add_test(tc, fast_matches_reference);
    tcase_add_test(tc, relu_fused_matches_unfused);
    tcase_add_test(tc, pytorch_parity);
    tcase_add_test(tc, threads_deterministic);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(conv_suite)
