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
 * Plain C with OpenMP, compiled on first use by torchlap._ext (no PyTorch headers, so the build
 * takes about a second); called through ctypes with the tensors' data pointers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

#define DEFINE_KERNELS(T, SUFFIX)                                                                \
    static void split_##SUFFIX(const T *restrict row, T *restrict phases, int64_t W, int64_t sw, \
                               int64_t len) {                                                     \
        for (int64_t m = 0; m < sw; ++m) {                                                        \
            T *restrict dst = phases + m * len;                                                   \
            int64_t t = 0;                                                                        \
            for (int64_t col = m; col < W; col += sw) dst[t++] = row[col];                        \
            for (; t < len; ++t) dst[t] = 0;                                                      \
        }                                                                                         \
    }                                                                                             \
                                                                                                  \
    void lap_forward_##SUFFIX(const T *x, const T *w, T *out, const lap_geometry *g,              \
                              int nthreads) {                                                     \
        const int64_t K = g->kh * g->kw, HW = g->H * g->W, O = g->Ho * g->Wo;                     \
        column_plan cp;                                                                           \
        plan_columns(g, &cp);                                                                     \
        _Pragma("omp parallel num_threads(nthreads)") {                                          \
            T *phases = (T *)malloc(sizeof(T) * (g->sw * cp.phase_len + 1));                      \
            _Pragma("omp for schedule(static)")                                                  \
            for (int64_t plane = 0; plane < g->B * g->C; ++plane) {                               \
                const int64_t b = plane / g->C;                                                   \
                const T *xp = x + plane * HW;                                                     \
                const T *wb = w + b * K * O;                                                      \
                T *op = out + plane * O;                                                          \
                memset(op, 0, sizeof(T) * O);                                                     \
                for (int64_t r = 0; r < g->H; ++r) {                                              \
                    int64_t i0, i1;                                                               \
                    rows_of_input(g, r, &i0, &i1);                                                \
                    if (i1 < i0) continue;                                                        \
                    const T *src = xp + r * g->W;                                                 \
                    if (g->sw > 1) {                                                              \
                        split_##SUFFIX(src, phases, g->W, g->sw, cp.phase_len);                   \
                        src = phases;                                                             \
                    }                                                                             \
                    for (int64_t i = i0; i <= i1; ++i) {                                          \
                        const int64_t a = r + g->ph - i * g->sh;                                  \
                        T *restrict orow = op + i * g->Wo;                                        \
                        for (int64_t q = 0; q < g->kw; ++q) {                                     \
                            const T *restrict wrow = wb + (a * g->kw + q) * O + i * g->Wo;        \
                            const T *restrict xs = src + cp.phase[q] * cp.phase_len + cp.shift[q]; \
                            for (int64_t j = cp.lo[q]; j < cp.hi[q]; ++j)                         \
                                orow[j] += wrow[j] * xs[j];                                       \
                        }                                                                         \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
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
            T *xph = (T *)malloc(sizeof(T) * (2 * sw * len + 1));                                 \
            T *gph = xph + sw * len;                                                              \
            _Pragma("omp for schedule(static)")                                                  \
            for (int64_t task = 0; task < g->B * chunks; ++task) {                                \
                const int64_t b = task / chunks, chunk = task % chunks;                           \
                const int64_t c0 = chunk * per_chunk;                                             \
                const int64_t c1 = c0 + per_chunk < g->C ? c0 + per_chunk : g->C;                 \
                const T *wb = w + b * K * O;                                                      \
                T *gwp = gw_part ? gw_part + task * K * O : 0;                                    \
                for (int64_t c = c0; c < c1; ++c) {                                               \
                    const int64_t plane = b * g->C + c;                                           \
                    const T *xp = x + plane * HW;                                                 \
                    const T *gp = gout + plane * O;                                               \
                    T *gxp = gx ? gx + plane * HW : 0;                                            \
                    for (int64_t r = 0; r < g->H; ++r) {                                          \
                        int64_t i0, i1;                                                           \
                        rows_of_input(g, r, &i0, &i1);                                            \
                        const T *xs_row = xp + r * g->W;                                          \
                        if (gwp && sw > 1 && i1 >= i0) {                                          \
                            split_##SUFFIX(xs_row, xph, g->W, sw, len);                           \
                            xs_row = xph;                                                         \
                        }                                                                         \
                        T *gx_row = 0;                                                            \
                        if (gxp) {                                                                \
                            gx_row = sw > 1 ? gph : gxp + r * g->W;                               \
                            memset(gx_row, 0, sizeof(T) * (sw > 1 ? sw * len : g->W));            \
                        }                                                                         \
                        for (int64_t i = i0; i <= i1; ++i) {                                      \
                            const int64_t a = r + g->ph - i * g->sh;                              \
                            const T *restrict grow = gp + i * g->Wo;                              \
                            for (int64_t q = 0; q < g->kw; ++q) {                                 \
                                const int64_t k = a * g->kw + q;                                  \
                                const T *restrict wrow = wb + k * O + i * g->Wo;                  \
                                const int64_t at = cp.phase[q] * len + cp.shift[q];               \
                                const int64_t lo = cp.lo[q], hi = cp.hi[q];                       \
                                if (gx_row) {                                                     \
                                    T *restrict gxs = gx_row + at;                                \
                                    for (int64_t j = lo; j < hi; ++j) gxs[j] += grow[j] * wrow[j]; \
                                }                                                                 \
                                if (gwp) {                                                        \
                                    const T *restrict xs = xs_row + at;                           \
                                    T *restrict gwrow = gwp + k * O + i * g->Wo;                  \
                                    for (int64_t j = lo; j < hi; ++j) gwrow[j] += grow[j] * xs[j]; \
                                }                                                                 \
                            }                                                                     \
                        }                                                                         \
                        if (gx_row && sw > 1) {                                                   \
                            T *restrict dst = gxp + r * g->W;                                     \
                            for (int64_t m = 0; m < sw; ++m) {                                    \
                                const T *restrict src = gph + m * len;                            \
                                int64_t t = 0;                                                    \
                                for (int64_t col = m; col < g->W; col += sw) dst[col] = src[t++]; \
                            }                                                                     \
                        }                                                                         \
                    }                                                                             \
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

int lap_abi_version(void) { return 2; }
