/* torchlap CPU kernels for the weighted window sum of Local Attention Pooling (paper 000, Eq. 1).
 *
 *   out[b, c, o] = sum_k w[b, k, o] * x[b, c, window(o, k)]
 *
 * x is (B, C, H, W) and w is (B, K, Ho, Wo), both contiguous; K = kh * kw kernel offsets; the
 * window of output pixel (i, j) at offset (a, q) reads input pixel (i*sh - ph + a, j*sw - pw + q)
 * and offsets outside the input contribute nothing (their weight is 0 anyway). The weights never
 * depend on the channel. Each (b, c) plane is first copied into its sh * sw polyphase planes
 * (lap_phase_plan below), after which every kernel offset is one unit-stride loop over the
 * whole plane's windows, whatever the kernel, stride and padding.
 *
 * The backward is one pass per plane as well: it gathers grad_out * w into the plane's
 * gradient phases (then copies them into grad_x, writing every element once) and accumulates
 * grad_w = sum_c grad_out * x into a per-task partial buffer that the caller sums; so the input
 * is read once and its gradient written once.
 *
 * The fused LAP layer (lap_layer.c, included below for float and double) does a whole layer in
 * one call each way: the concept scorer's 1x1 convolutions, Eq. 4 and Eq. 1, with these
 * polyphase loops for the pooling on large maps and channel tiles on small ones (lap_taps
 * below). The per-plane pooling (pool_plane, unpool_plane) lives there, templated on the
 * element type, and these per-op kernels call it.
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

/* The polyphase layout of the windowed sum. Phase (mh, mw) of a plane holds the pixels whose
 * padded row and column are mh and mw modulo the stride: X[mh, mw][u, v] = x[u*sh + mh - ph,
 * v*sw + mw - pw] (0 outside x). Offset (a, q) of window (i, j) reads x[i*sh - ph + a,
 * j*sw - pw + q] = X[a % sh, q % sw][i + a / sh, j + q / sw]. With the phase planes stored one
 * after the other, V columns each, and the output laid out with the same row pitch V, offset k
 * of every window of the plane is one contiguous stream: out[o] += w[k][o] * X[off[k] + o] for
 * o < L = (Ho - 1) * V + Wo (the columns Wo..V of a row are padding, with weight 0). So each
 * plane costs one strided copy into its phases and K unit-stride loops of Ho * V, whatever the
 * kernel, stride and padding, instead of a few short loops per input row. */
typedef struct {
    int64_t U, V;   /* rows and columns of each phase plane; V is also the output's row pitch */
    int64_t L, OP;  /* stream length (Ho - 1) * V + Wo; one pitched output plane Ho * V */
    int64_t size;   /* all phase planes: sh * sw * U * V */
    int64_t *off;   /* per offset k = a * kw + q: the start of its stream in the phase planes */
    int64_t *vlo, *vhi; /* per column phase mw: the columns v that hold pixels of x */
    int uncovered;  /* some input columns are in no phase column (v >= V): no window reads them */
} lap_phase_plan;

/* Work-buffer accounting for the benchmarks' peak memory (PyTorch's profiler sees its own
 * tensors only). A kernel call allocates all its buffers up front and frees them all before it
 * returns, so the sum of one call's allocations is that call's peak; lap_work_peak returns the
 * largest since it was last reset. */
static _Thread_local int64_t lap_call_bytes;
static int64_t lap_peak_bytes;

static void lap_begin_call(void) { lap_call_bytes = 0; }

/* calloc of n elements, NULL for a negative or overflowing n (a count from absurd shapes) */
static void *lap_calloc(int64_t n, size_t size) {
    if (n < 0 || (uint64_t)n > SIZE_MAX / size) return 0;
    void *block = calloc((size_t)n, size);
    if (block) {
        lap_call_bytes += n * (int64_t)size;
        int64_t seen = __atomic_load_n(&lap_peak_bytes, __ATOMIC_RELAXED);
        while (lap_call_bytes > seen &&
               !__atomic_compare_exchange_n(&lap_peak_bytes, &seen, lap_call_bytes, 1,
                                            __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        }
    }
    return block;
}

/* the largest work-buffer bytes of one kernel call since the last reset (reset != 0: then 0) */
int64_t lap_work_peak(int reset) {
    return reset ? __atomic_exchange_n(&lap_peak_bytes, 0, __ATOMIC_RELAXED)
                 : __atomic_load_n(&lap_peak_bytes, __ATOMIC_RELAXED);
}

static int lap_plan_phases(const lap_geometry *g, lap_phase_plan *p) {
    const int64_t sh = g->sh, sw = g->sw;
    p->U = g->Ho + (g->kh - 1) / sh;
    p->V = g->Wo + (g->kw - 1) / sw;
    p->L = (g->Ho - 1) * p->V + g->Wo;
    p->OP = g->Ho * p->V;
    p->size = sh * sw * p->U * p->V;
    p->off = (int64_t *)lap_calloc(g->kh * g->kw + 2 * sw, sizeof(int64_t));
    if (!p->off) return 0;
    p->vlo = p->off + g->kh * g->kw;
    p->vhi = p->vlo + sw;
    for (int64_t a = 0; a < g->kh; ++a)
        for (int64_t q = 0; q < g->kw; ++q)
            p->off[a * g->kw + q] =
                ((a % sh) * sw + q % sw) * p->U * p->V + (a / sh) * p->V + q / sw;
    for (int64_t m = 0; m < sw; ++m) {
        /* 0 <= v * sw + m - pw < W and v < V */
        const int64_t lo = m >= g->pw ? 0 : (g->pw - m + sw - 1) / sw;
        const int64_t last = g->W - 1 + g->pw - m;
        int64_t hi = last >= 0 ? last / sw + 1 : 0;
        if (hi > p->V) hi = p->V;
        p->vlo[m] = lo;
        p->vhi[m] = hi > lo ? hi : lo;
    }
    p->uncovered = (g->W - 1 + g->pw) / sw >= p->V;
    return 1;
}

static void lap_free_phases(lap_phase_plan *p) { free(p->off); }

/* The channel-tile layout of the windowed sum, for small maps (lap_layer.c): there the phase
 * planes' rows are a few elements long and the loops' overhead is most of their cost. Instead,
 * LAP_TV channel planes at a time are transposed into a pixel-major tile (a vector of LAP_TV
 * channels per pixel, plus a zero row P), and offset k of window o is one vector FMA:
 * out[o] += w[k][o] * tile[tap[k][o]], with tap[k][o] the pixel that offset reads (P in the
 * padding). Returns the K * O taps, NULL when they could not be allocated. */
static int64_t *lap_taps(const lap_geometry *g) {
    const int64_t O = g->Ho * g->Wo, P = g->H * g->W;
    int64_t *tap = (int64_t *)lap_calloc(g->kh * g->kw * O + 1, sizeof(int64_t));
    if (!tap) return 0;
    for (int64_t a = 0; a < g->kh; ++a)
        for (int64_t q = 0; q < g->kw; ++q)
            for (int64_t i = 0; i < g->Ho; ++i)
                for (int64_t j = 0; j < g->Wo; ++j) {
                    const int64_t r = i * g->sh - g->ph + a, col = j * g->sw - g->pw + q;
                    const int inside = r >= 0 && r < g->H && col >= 0 && col < g->W;
                    tap[((a * g->kw + q) * g->Ho + i) * g->Wo + j] = inside ? r * g->W + col : P;
                }
    return tap;
}

/* the scorer of a fused LAP layer (lap_layer.c) */
typedef struct {
    int64_t hidden;      /* h > 0: 1x1 conv to h, ReLU, 1x1 conv to n; 0: one 1x1 conv to n */
    int64_t concepts;    /* n */
    int64_t aggregation; /* 0 max, 1 sum, 2 mean, 3 conv (n > 1) */
    int64_t global;      /* 1: one window over the whole map (kh = H, kw = W, Ho = Wo = 1) */
    int64_t tiles;       /* windowed pooling: 1 channel tiles, 0 phase planes, -1 by map size */
} lap_layer_spec;

/* Which layout a windowed layer's sums take when the layer says -1 (TORCHLAP_LAP_WINDOWS
 * unset). Measured with benchmarks/kernel_ab.py --layouts (fused layer forward+backward, 2
 * threads, the layouts taking turns in one process; tiles / phases, 2026-12-03): 0.55-0.84 on
 * the 12-28 px maps of ResNet and Inception-v3 at batch 32 and 0.62-0.89 at batch 1;
 * 0.87-0.90 at 52-56 px at batch 32 but 0.99-1.07 at batch 1 (a thread's tiles of its share of
 * one sample outgrow the L2 cache, where a phase plane does not); 0.99-1.19 at 109-112 px. */
#define LAP_TILE_PIXELS 1024

static int lap_use_tiles(const lap_geometry *g, const lap_layer_spec *s, int nthreads) {
    if (s->global) return 0;
    if (s->tiles >= 0) return s->tiles > 0;
    const int64_t P = g->H * g->W;
    return P <= LAP_TILE_PIXELS || (P <= 4 * LAP_TILE_PIXELS && g->B >= nthreads);
}

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

/* bytes of the fused layer's vectors: 64 (one AVX-512 register) where the compiler targets
 * AVX-512, else 32 (AVX2; other targets split them as they must). -DLAP_VBYTES=32 or 64 forces
 * one (python benchmarks/kernel_ab.py --widths compares the two). */
#ifndef LAP_VBYTES
#if defined(__AVX512F__)
#define LAP_VBYTES 64
#else
#define LAP_VBYTES 32
#endif
#endif

/* rows of the 1x1 convolution kernels: output channels rounded up to groups of 8 */
static int64_t lap_padded(int64_t rows) { return (rows + 7) / 8 * 8; }

/* share [lo, hi) of n items of thread tid in a team of nth */
static void lap_part(int64_t n, int tid, int nth, int64_t *lo, int64_t *hi) {
    *lo = n * tid / nth;
    *hi = n * (tid + 1) / nth;
}

/* two-vector shuffles with constant lane indices (GCC and clang spell them differently) */
#if defined(__clang__)
#define LAP_SHUFFLE(a, b, ivec, idx) __builtin_shufflevector(a, b, idx)
#else
#define LAP_SHUFFLE(a, b, ivec, idx) __builtin_shuffle(a, b, (ivec){idx})
#endif
/* the perfect shuffles of the transposes: lanes 0..n/2 (LO) or n/2..n (HI) of two vectors of
 * n lanes, interleaved */
#define LAP_ZIP4_LO 0, 4, 1, 5
#define LAP_ZIP4_HI 2, 6, 3, 7
#define LAP_ZIP8_LO 0, 8, 1, 9, 2, 10, 3, 11
#define LAP_ZIP8_HI 4, 12, 5, 13, 6, 14, 7, 15
#define LAP_ZIP16_LO 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define LAP_ZIP16_HI 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
/* the even and the odd lanes of two 16-lane vectors, one after the other */
#define LAP_EVEN16 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define LAP_ODD16 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
#if LAP_VBYTES == 32
#define LAP_ZIPF_LO LAP_ZIP8_LO
#define LAP_ZIPF_HI LAP_ZIP8_HI
#define LAP_ZIPD_LO LAP_ZIP4_LO
#define LAP_ZIPD_HI LAP_ZIP4_HI
#elif LAP_VBYTES == 64
#define LAP_ZIPF_LO LAP_ZIP16_LO
#define LAP_ZIPF_HI LAP_ZIP16_HI
#define LAP_ZIPD_LO LAP_ZIP8_LO
#define LAP_ZIPD_HI LAP_ZIP8_HI
#else
#error "LAP_VBYTES must be 32 or 64"
#endif

#define T float
#define LAP_TBYTES 4
#define SUFFIX f32
#define EXP expf
#define LAP_LANE int32_t
#define LAP_ZIP_LO LAP_ZIPF_LO
#define LAP_ZIP_HI LAP_ZIPF_HI
#define LAP_TZIP_LO LAP_ZIP8_LO
#define LAP_TZIP_HI LAP_ZIP8_HI
#include "lap_layer.c"
#undef T
#undef LAP_TBYTES
#undef SUFFIX
#undef EXP
#undef LAP_LANE
#undef LAP_ZIP_LO
#undef LAP_ZIP_HI
#undef LAP_TZIP_LO
#undef LAP_TZIP_HI
#define T double
#define LAP_TBYTES 8
#define SUFFIX f64
#define EXP exp
#define LAP_LANE int64_t
#define LAP_ZIP_LO LAP_ZIPD_LO
#define LAP_ZIP_HI LAP_ZIPD_HI
#define LAP_TZIP_LO LAP_ZIP4_LO
#define LAP_TZIP_HI LAP_ZIP4_HI
#include "lap_layer.c"
#undef T
#undef LAP_TBYTES
#undef SUFFIX
#undef EXP
#undef LAP_LANE
#undef LAP_ZIP_LO
#undef LAP_ZIP_HI
#undef LAP_TZIP_LO
#undef LAP_TZIP_HI

#define DEFINE_KERNELS(T, SUFFIX)                                                                \
    /* returns 0, or 1 when a work buffer could not be allocated (then nothing was computed) */  \
    int lap_forward_##SUFFIX(const T *x, const T *w, T *out, const lap_geometry *g,               \
                             int nthreads) {                                                      \
        const int64_t K = g->kh * g->kw, HW = g->H * g->W, O = g->Ho * g->Wo;                     \
        lap_phase_plan plan = {0};                                                                \
        lap_begin_call();                                                                         \
        if (!lap_plan_phases(g, &plan)) return 1;                                                 \
        const int64_t per_thread = pool_buffers_len_##SUFFIX(g, &plan, 0, 0, 0);                     \
        T *block = (T *)lap_calloc(nthreads * per_thread + 1, sizeof(T));                        \
        if (!block) {                                                                             \
            lap_free_phases(&plan);                                                               \
            return 1;                                                                             \
        }                                                                                         \
        _Pragma("omp parallel num_threads(nthreads)") {                                          \
            pool_buffers_##SUFFIX pb;                                                             \
            pool_buffers_bind_##SUFFIX(&pb, block + lap_thread() * per_thread, g, &plan, 0, 0, 0);   \
            int64_t pitched_for = -1; /* the sample whose weights pb.wn holds */                  \
            const T *wn = 0;                                                                      \
            _Pragma("omp for schedule(static)")                                                  \
            for (int64_t plane = 0; plane < g->B * g->C; ++plane) {                               \
                const int64_t b = plane / g->C;                                                   \
                if (b != pitched_for) {                                                           \
                    wn = pitched_weights_##SUFFIX(w + b * K * O, pb.wn, g, &plan);                \
                    pitched_for = b;                                                              \
                }                                                                                 \
                pool_plane_##SUFFIX(x + plane * HW, wn, out + plane * O, g, &plan, &pb);          \
            }                                                                                     \
        }                                                                                         \
        free(block);                                                                              \
        lap_free_phases(&plan);                                                                   \
        return 0;                                                                                 \
    }                                                                                             \
                                                                                                  \
    /* grad_x (may be NULL) and partial grad_w (B, chunks, K, Ho, Wo, zeroed; may be NULL);      \
     * returns 0, or 1 when a work buffer could not be allocated (then nothing was computed) */  \
    int lap_backward_##SUFFIX(const T *x, const T *w, const T *gout, T *gx, T *gw_part,           \
                              const lap_geometry *g, int64_t chunks, int nthreads) {              \
        const int64_t K = g->kh * g->kw, HW = g->H * g->W, O = g->Ho * g->Wo;                     \
        const int64_t per_chunk = (g->C + chunks - 1) / chunks;                                   \
        lap_phase_plan plan = {0};                                                                \
        lap_begin_call();                                                                         \
        if (!lap_plan_phases(g, &plan)) return 1;                                                 \
        const int direct = plan.V == g->Wo; /* the partials need no pitch */                      \
        const int pitched_grad = gw_part && !direct;                                              \
        const int64_t per_thread = pool_buffers_len_##SUFFIX(g, &plan, 1, pitched_grad, 0);          \
        T *block = (T *)lap_calloc(nthreads * per_thread + 1, sizeof(T));                        \
        if (!block) {                                                                             \
            lap_free_phases(&plan);                                                               \
            return 1;                                                                             \
        }                                                                                         \
        _Pragma("omp parallel num_threads(nthreads)") {                                          \
            pool_buffers_##SUFFIX pb;                                                             \
            pool_buffers_bind_##SUFFIX(&pb, block + lap_thread() * per_thread, g, &plan, 1,       \
                                       pitched_grad, 0);                                          \
            _Pragma("omp for schedule(static)")                                                  \
            for (int64_t task = 0; task < g->B * chunks; ++task) {                                \
                const int64_t b = task / chunks, chunk = task % chunks;                           \
                const int64_t c0 = chunk * per_chunk;                                             \
                const int64_t c1 = c0 + per_chunk < g->C ? c0 + per_chunk : g->C;                 \
                const T *wn = pitched_weights_##SUFFIX(w + b * K * O, pb.wn, g, &plan);           \
                T *gwn = gw_part ? (direct ? gw_part + task * K * O : pb.gwn) : 0;                \
                if (pitched_grad) memset(gwn, 0, sizeof(T) * K * plan.OP);                        \
                for (int64_t c = c0; c < c1; ++c) {                                               \
                    const int64_t plane = b * g->C + c;                                           \
                    unpool_plane_##SUFFIX(x + plane * HW, wn, gout + plane * O,                   \
                                          gx ? gx + plane * HW : 0, gwn, g, &plan, &pb);          \
                }                                                                                 \
                if (pitched_grad)                                                                 \
                    for (int64_t k = 0; k < K; ++k)                                               \
                        unpitch_##SUFFIX(gwn + k * plan.OP, gw_part + (task * K + k) * O, g->Ho,  \
                                         g->Wo, plan.V);                                          \
            }                                                                                     \
        }                                                                                         \
        free(block);                                                                              \
        lap_free_phases(&plan);                                                                   \
        return 0;                                                                                 \
    }                                                                                             \
                                                                                                  \
    /* global pooling: out[b, c] = sum_p w[b, p] x[b, c, p] over the P pixels of a plane */       \
    void lap_global_forward_##SUFFIX(const T *x, const T *w, T *out, int64_t B, int64_t C,        \
                                     int64_t P, int nthreads) {                                   \
        _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                       \
        for (int64_t plane = 0; plane < B * C; ++plane) {                                         \
            const T *xp = x + plane * P;                                                          \
            out[plane] = dot_##SUFFIX(w + (plane / C) * P, xp, P);                                \
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

int lap_abi_version(void) { return 7; }

/* bytes of the fused layer's vectors in this build (LAP_VBYTES) */
int lap_vector_bytes(void) { return LAP_VBYTES; }
