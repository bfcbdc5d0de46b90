/*
 * Most-correlated-basis certificate of MCBE for several samples at once (called from
 * the Numba kernels through its address, see fastrelu/_kernels/_mcbe.py).
 *
 * fr_spans(G, n, tol2, margin, lanes) (n and lanes as ptrdiff_t): G holds `lanes` Gram
 * matrices of unit rows in lane layout (entry (a, c) of lane l at
 * G[(a * n + c) * lanes + l], upper triangle read and overwritten). Each is factorised
 * by Cholesky, row j of the factor being G[j, p] minus R[k, j] R[k, p] for k = 0, ..,
 * j-1 in turn (left-looking), and the result is the mask of lanes whose every pivot
 * d_j -- the squared distance of unit row j to the span of the rows before it --
 * exceeds tol2 + margin / min(1, d_0, .., d_{j-1}): clear of the threshold by more than
 * rounding can move it, which grows as the rows before it come close to dependent. A
 * lane never touches another lane's numbers.
 *
 * The kernel exists twice: for CPUs with AVX2 and FMA (4 lanes, chosen at run time) and
 * for any other (2 lanes of SSE2, or 1 without GCC's vector extensions); fr_spans_lanes()
 * says which one runs, and fr_spans refuses (returns -1) another lane count.
 */
#ifndef FASTRELU_SPANS_H
#define FASTRELU_SPANS_H

#include <math.h>
#include <stddef.h>

#define FR_SPANS_BODY(VEC, LANES)                                                        \
    VEC *U = (VEC *)data;                                                                \
    ptrdiff_t passed = (1 << (LANES)) - 1;                                               \
    double low[LANES];                                                                   \
    for (int l = 0; l < (LANES); l++)                                                    \
        low[l] = 1.0;                                                                    \
    for (ptrdiff_t j = 0; j < n; j++) {                                                  \
        VEC *rj = U + (ptrdiff_t)j * n;                                                  \
        ptrdiff_t p = j;                                                                 \
        for (; p + 4 <= n; p += 4) {                                                     \
            VEC a0 = rj[p], a1 = rj[p + 1], a2 = rj[p + 2], a3 = rj[p + 3];              \
            const VEC *rk = U;                                                           \
            for (ptrdiff_t k = 0; k < j; k++, rk += n) {                                 \
                VEC lead = rk[j];                                                        \
                a0 -= lead * rk[p];                                                      \
                a1 -= lead * rk[p + 1];                                                  \
                a2 -= lead * rk[p + 2];                                                  \
                a3 -= lead * rk[p + 3];                                                  \
            }                                                                            \
            rj[p] = a0; rj[p + 1] = a1; rj[p + 2] = a2; rj[p + 3] = a3;                  \
        }                                                                                \
        for (; p < n; p++) {                                                             \
            VEC acc = rj[p];                                                             \
            const VEC *rk = U;                                                           \
            for (ptrdiff_t k = 0; k < j; k++, rk += n)                                   \
                acc -= rk[j] * rk[p];                                                    \
            rj[p] = acc;                                                                 \
        }                                                                                \
        VEC d = rj[j], scale;                                                            \
        for (int l = 0; l < (LANES); l++) {                                              \
            double *lane = (double *)&d + l;                                             \
            if (!(*lane > tol2 + margin / low[l])) {                                     \
                passed &= ~(1 << l);                                                     \
                *lane = 1.0; /* keeps the failed lane's numbers finite */                \
            }                                                                            \
            if (*lane < low[l])                                                          \
                low[l] = *lane;                                                          \
            *lane = sqrt(*lane);                                                         \
        }                                                                                \
        if (!passed)                                                                     \
            return 0;                                                                    \
        rj[j] = d;                                                                       \
        scale = d;                                                                       \
        for (int l = 0; l < (LANES); l++)                                                \
            ((double *)&scale)[l] = 1.0 / ((double *)&d)[l];                             \
        for (p = j + 1; p < n; p++)                                                      \
            rj[p] = rj[p] * scale;                                                       \
    }                                                                                    \
    return passed;

#if (defined(__GNUC__) || defined(__clang__)) && !defined(FR_NO_VECTOR_EXTENSIONS)

typedef double fr_spans_v2
    __attribute__((vector_size(2 * sizeof(double)), aligned(sizeof(double)), may_alias));
static ptrdiff_t fr_spans_generic(double *data, ptrdiff_t n, double tol2, double margin)
{
    FR_SPANS_BODY(fr_spans_v2, 2)
}
#define FR_SPANS_GENERIC_LANES 2

#if (defined(__x86_64__) || defined(__i386__)) && !defined(FR_SPANS_NO_DISPATCH)
#define FR_SPANS_DISPATCH 1
typedef double fr_spans_v4
    __attribute__((vector_size(4 * sizeof(double)), aligned(sizeof(double)), may_alias));
__attribute__((target("avx2,fma"))) static ptrdiff_t fr_spans_avx2(double *data, ptrdiff_t n,
                                                                    double tol2, double margin)
{
    FR_SPANS_BODY(fr_spans_v4, 4)
}
#endif

#else

static ptrdiff_t fr_spans_generic(double *data, ptrdiff_t n, double tol2, double margin)
{
    FR_SPANS_BODY(double, 1)
}
#define FR_SPANS_GENERIC_LANES 1

#endif

/* The lane count of this CPU, set by fr_spans_lanes() (spans_kernel() calls it at
 * import, before any thread runs fr_spans). */
static int fr_spans_here = 0;

/* Lanes of the kernel that runs on this CPU. */
static int fr_spans_lanes(void)
{
    int lanes = FR_SPANS_GENERIC_LANES;
#ifdef FR_SPANS_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        lanes = 4;
#endif
    fr_spans_here = lanes;
    return lanes;
}

static ptrdiff_t fr_spans(double *data, ptrdiff_t n, double tol2, double margin,
                          ptrdiff_t lanes)
{
    if (fr_spans_here == 0 || lanes != fr_spans_here)
        return -1;
#ifdef FR_SPANS_DISPATCH
    if (fr_spans_here == 4)
        return fr_spans_avx2(data, n, tol2, margin);
#endif
    return fr_spans_generic(data, n, tol2, margin);
}

#endif
