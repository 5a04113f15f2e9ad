/* torchlap CPU kernels for the weighted window sum of Local Attention Pooling (paper 000, Eq. 1).
 *
 *   out[b, c, o] = sum_k w[b, k, o] * x[b, c, window(o, k)]
 *
 * x is (B, C, H, W) and w is (B, K, Ho, Wo), both contiguous; K = kh * kw kernel offsets; the
 * window of output pixel (i, j) at offset (a, q) reads input pixel (i*sh - ph + a, j*sw - pw + q)
 * and offsets outside the input are skipped (their weight is 0 anyway). The weights never depend
 * on the channel, so each (b, c) plane is one pass over its input rows. Each input row is split
 * once into its sw column phases (x[r, t*sw + m] -> phase m, index t) so that every inner loop
 * is unit-stride (vectorisable) whatever the stride.
 *
 * The backward is one fused pass per input row as well: it gathers grad_out * w into the row's
 * gradient phases (then interleaves them into grad_x, writing every element once, no zeroing)
 * and accumulates grad_w = sum_c grad_out * x into a per-task partial buffer that the caller
 * sums; so the input is read once and its gradient written once.
 *
 * The fused LAP layer (lap_layer.c, included below for float and double) does a whole layer in
 * one call each way: the concept scorer's 1x1 convolutions, Eq. 4 and Eq. 1, with these row
 * kernels (or a tap list on small maps) for the pooling.
 *
 * Plain C with OpenMP, compiled on first use by torchlap._ext (no PyTorch headers, so the build
 * takes about a second); called through ctypes with the tensors' data pointers.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
static int lap_thread(void) { return omp_get_thread_num(); }
static int lap_threads(void) { return omp_get_num_threads(); }
#else
static int lap_thread(void) { return 0; }
static int lap_threads(void) { return 1; }
#endif

typedef struct {
    int64_t B, C, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw;
} lap_geometry;

/* first and one-past-last output index o along one axis whose input o*s - p + off is in [0, n) */
static void axis_range(int64_t off, int64_t s, int64_t p, int64_t n, int64_t out, int64_t *lo,
                       int64_t *hi) {
    int64_t first = p - off > 0 ? (p - off + s - 1) / s : 0;
    int64_t last = (n - 1 + p - off) >= 0 ? (n - 1 + p - off) / s : -1;
    if (last > out - 1) last = out - 1;
    *lo = first;
    *hi = last + 1 > first ? last + 1 : first;
}

/* per kernel column q: output range [lo, hi), phase m and phase offset of input column j*sw+q-pw */
typedef struct {
    int64_t lo[64], hi[64], phase[64], shift[64], phase_len;
} column_plan;

static void plan_columns(const lap_geometry *g, column_plan *p) {
    p->phase_len = (g->W + g->sw - 1) / g->sw;
    for (int64_t q = 0; q < g->kw; ++q) {
        const int64_t d = q - g->pw;
        const int64_t m = ((d % g->sw) + g->sw) % g->sw;
        axis_range(q, g->sw, g->pw, g->W, g->Wo, &p->lo[q], &p->hi[q]);
        p->phase[q] = m;
        p->shift[q] = (d - m) / g->sw;
    }
}

/* output rows i that input row r feeds: i*sh - ph + a = r for some 0 <= a < kh */
static void rows_of_input(const lap_geometry *g, int64_t r, int64_t *first, int64_t *last) {
    const int64_t top = r + g->ph - (g->kh - 1);
    *first = top > 0 ? (top + g->sh - 1) / g->sh : 0;
    *last = (r + g->ph) / g->sh;
    if (*last > g->Ho - 1) *last = g->Ho - 1;
}

/* the scorer of a fused LAP layer (lap_layer.c) */
typedef struct {
    int64_t hidden;      /* h > 0: 1x1 conv to h, ReLU, 1x1 conv to n; 0: one 1x1 conv to n */
    int64_t concepts;    /* n */
    int64_t aggregation; /* 0 max, 1 sum, 2 mean (n > 1) */
    int64_t global;      /* 1: one window over the whole map (kh = H, kw = W, Ho = Wo = 1) */
} lap_layer_spec;

/* pixels per block of the fused scorer (its h + n rows of accumulators stay in L1) */
#define LAP_BLOCK 256
/* a vectorised (reassociated) sum for the loop that follows; plain order without OpenMP */
#define LAP_SIMD_SUM(acc) _Pragma(LAP_STR(omp simd reduction(+ : acc)))
#define LAP_STR(x) #x
#define LAP_BARRIER(nth)                                                                        \
    do {                                                                                         \
        if ((nth) > 1) {                                                                         \
            _Pragma("omp barrier")                                                               \
        }                                                                                        \
    } while (0)

/* bytes of the vectors of the fused layer's 1x1 convolution kernels (AVX2 width) */
#define LAP_VBYTES 32

/* rows of the 1x1 convolution kernels: output channels rounded up to groups of 8 */
static int64_t lap_padded(int64_t rows) { return (rows + 7) / 8 * 8; }

/* The windows of a small map as a list of taps: for each window o (in order), the (offset k,
 * pixel p) pairs inside the input; first[o]..first[o + 1] are o's taps, kidx = k * O + o. On
 * maps narrower than LAP_TAPS_BELOW output columns one pass over this list per channel plane is
 * faster than the row kernels (whose inner loops are then only a few columns long). Measured
 * (fused layer forward+backward, 1 thread, best of 20, ms, rows vs taps): Wo 5 (2, 768, 12, 12)
 * k3 s2 9.4 vs 5.5; Wo 7 (2, 256, 14, 14) k2 s2 4.0 vs 1.6; Wo 12 (2, 288, 25, 25) k3 s2 10.2
 * vs 10.5; Wo 14 (2, 128, 28, 28) k2 s2 2.6 vs 5.2; Wo 25 (2, 192, 52, 52) 23.9 vs 40.7. */
#define LAP_TAPS_BELOW 12
typedef struct {
    int32_t *first, *kidx, *pix;
} lap_taps;

static int lap_make_taps(const lap_geometry *g, lap_taps *t) {
    const int64_t O = g->Ho * g->Wo, K = g->kh * g->kw;
    t->first = (int32_t *)malloc(sizeof(int32_t) * (O + 1));
    t->kidx = (int32_t *)malloc(sizeof(int32_t) * (K * O + 1));
    t->pix = (int32_t *)malloc(sizeof(int32_t) * (K * O + 1));
    if (!t->first || !t->kidx || !t->pix) return 0;
    int32_t e = 0;
    for (int64_t i = 0; i < g->Ho; ++i)
        for (int64_t j = 0; j < g->Wo; ++j) {
            const int64_t o = i * g->Wo + j;
            t->first[o] = e;
            for (int64_t a = 0; a < g->kh; ++a) {
                const int64_t r = i * g->sh - g->ph + a;
                if (r < 0 || r >= g->H) continue;
                for (int64_t q = 0; q < g->kw; ++q) {
                    const int64_t col = j * g->sw - g->pw + q;
                    if (col < 0 || col >= g->W) continue;
                    t->kidx[e] = (int32_t)((a * g->kw + q) * O + o);
                    t->pix[e] = (int32_t)(r * g->W + col);
                    ++e;
                }
            }
        }
    t->first[O] = e;
    return 1;
}

static void lap_free_taps(lap_taps *t) {
    free(t->first);
    free(t->kidx);
    free(t->pix);
}

/* share [lo, hi) of n items of thread tid in a team of nth */
static void lap_part(int64_t n, int tid, int nth, int64_t *lo, int64_t *hi) {
    *lo = n * tid / nth;
    *hi = n * (tid + 1) / nth;
}

#define T float
#define SUFFIX f32
#define EXP expf
#include "lap_layer.c"
#undef T
#undef SUFFIX
#undef EXP
#define T double
#define SUFFIX f64
#define EXP exp
#include "lap_layer.c"
#undef T
#undef SUFFIX
#undef EXP

#define DEFINE_KERNELS(T, SUFFIX)                                                                \
    void lap_forward_##SUFFIX(const T *x, const T *w, T *out, const lap_geometry *g,              \
                              int nthreads) {                                                     \
        const int64_t K = g->kh * g->kw, HW = g->H * g->W, O = g->Ho * g->Wo;                     \
        column_plan cp;                                                                           \
        plan_columns(g, &cp);                                                                     \
        _Pragma("omp parallel num_threads(nthreads)") {                                          \
            T *phases = (T *)malloc(sizeof(T) * (g->sw * cp.phase_len + 1));                      \
            _Pragma("omp for schedule(static)")                                                  \
            for (int64_t plane = 0; plane < g->B * g->C; ++plane)                                 \
                pool_plane_##SUFFIX(x + plane * HW, w + (plane / g->C) * K * O, out + plane * O,  \
                                    g, &cp, phases);                                              \
            free(phases);                                                                         \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* grad_x (may be NULL) and partial grad_w (B, chunks, K, Ho, Wo, zeroed; may be NULL) */    \
    void lap_backward_##SUFFIX(const T *x, const T *w, const T *gout, T *gx, T *gw_part,          \
                               const lap_geometry *g, int64_t chunks, int nthreads) {             \
        const int64_t K = g->kh * g->kw, HW = g->H * g->W, O = g->Ho * g->Wo;                     \
        const int64_t per_chunk = (g->C + chunks - 1) / chunks;                                   \
        column_plan cp;                                                                           \
        plan_columns(g, &cp);                                                                     \
        const int64_t len = cp.phase_len, sw = g->sw;                                             \
        _Pragma("omp parallel num_threads(nthreads)") {                                          \
            T *xph = (T *)malloc(sizeof(T) * (2 * sw * len + 2));                                 \
            T *gph = xph + sw * len + 1;                                                          \
            _Pragma("omp for schedule(static)")                                                  \
            for (int64_t task = 0; task < g->B * chunks; ++task) {                                \
                const int64_t b = task / chunks, chunk = task % chunks;                           \
                const int64_t c0 = chunk * per_chunk;                                             \
                const int64_t c1 = c0 + per_chunk < g->C ? c0 + per_chunk : g->C;                 \
                for (int64_t c = c0; c < c1; ++c) {                                               \
                    const int64_t plane = b * g->C + c;                                           \
                    unpool_plane_##SUFFIX(x + plane * HW, w + b * K * O, gout + plane * O,        \
                                          gx ? gx + plane * HW : 0,                               \
                                          gw_part ? gw_part + task * K * O : 0, g, &cp, xph,      \
                                          gph);                                                   \
                }                                                                                 \
            }                                                                                     \
            free(xph);                                                                            \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    /* global pooling: out[b, c] = sum_p w[b, p] x[b, c, p] over the P pixels of a plane */       \
    void lap_global_forward_##SUFFIX(const T *x, const T *w, T *out, int64_t B, int64_t C,        \
                                     int64_t P, int nthreads) {                                   \
        _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                       \
        for (int64_t plane = 0; plane < B * C; ++plane) {                                         \
            const T *restrict xp = x + plane * P;                                                 \
            const T *restrict wb = w + (plane / C) * P;                                           \
            T acc = 0;                                                                            \
            LAP_SIMD_SUM(acc)                                                                     \
            for (int64_t p = 0; p < P; ++p) acc += wb[p] * xp[p];                                 \
            out[plane] = acc;                                                                     \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    void lap_global_backward_##SUFFIX(const T *x, const T *w, const T *gout, T *gx, T *gw_part,   \
                                      int64_t B, int64_t C, int64_t P, int64_t chunks,            \
                                      int nthreads) {                                             \
        const int64_t per_chunk = (C + chunks - 1) / chunks;                                      \
        _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                       \
        for (int64_t task = 0; task < B * chunks; ++task) {                                       \
            const int64_t b = task / chunks, chunk = task % chunks;                               \
            const int64_t c0 = chunk * per_chunk;                                                 \
            const int64_t c1 = c0 + per_chunk < C ? c0 + per_chunk : C;                           \
            const T *restrict wb = w + b * P;                                                     \
            T *restrict gwp = gw_part ? gw_part + task * P : 0;                                   \
            for (int64_t c = c0; c < c1; ++c) {                                                   \
                const int64_t plane = b * C + c;                                                  \
                const T gv = gout[plane];                                                         \
                const T *restrict xp = x + plane * P;                                             \
                if (gx) {                                                                         \
                    T *restrict gxp = gx + plane * P;                                             \
                    for (int64_t p = 0; p < P; ++p) gxp[p] = gv * wb[p];                          \
                }                                                                                 \
                if (gwp)                                                                          \
                    for (int64_t p = 0; p < P; ++p) gwp[p] += gv * xp[p];                         \
            }                                                                                     \
        }                                                                                         \
    }

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)

int lap_abi_version(void) { return 3; }
