/*
 * Most-correlated-basis certificate of MCBE for several samples at once (called from
 * the Numba kernels through its address, see fastrelu/_core/basis.py).
 *
 * fr_spans(G, n, tol2, margin, lanes) (n and lanes as ptrdiff_t): G holds `lanes` Gram
 * matrices of unit rows in lane layout with row stride fr_spans_stride(n) (the caller
 * allocates G as (n, fr_spans_stride(n), lanes)), factorised in place by the Cholesky of
 * _cholesky_lanes.h; the result is the mask of lanes whose every pivot d_j -- the
 * squared distance of unit row j to the span of the rows before it -- exceeds
 * tol2 + margin / min(1, d_0, .., d_{j-1}): clear of the threshold by more than
 * rounding can move it, which grows as the rows before it come close to dependent.
 *
 * fr_spans_gram(gram, ld, order, ranked, n, G, tol2, margin, lanes) first gathers lane
 * l's Gram matrix, entries gram[order[l n + j] ld + order[l n + k]], into G (the identity
 * for a lane with ranked[l] == 0), then runs fr_spans on it.
 *
 * The kernel exists twice: for CPUs with AVX2 and FMA (4 lanes, chosen at run time) and
 * for any other (2 lanes of SSE2, or 1 without GCC's vector extensions); fr_spans_lanes()
 * says which one runs, and fr_spans refuses (returns -1) another lane count.
 */
#ifndef FASTRELU_SPANS_H
#define FASTRELU_SPANS_H

#include "_cholesky_lanes.h"
#include <stdint.h>

/* The row stride of the lanes' Gram matrices (fr_lane_stride of _cholesky_lanes.h). */
static ptrdiff_t fr_spans_stride(ptrdiff_t n)
{
    return fr_lane_stride(n);
}

#if (defined(__GNUC__) || defined(__clang__)) && !defined(FR_NO_VECTOR_EXTENSIONS)

typedef double fr_spans_v2
    __attribute__((vector_size(2 * sizeof(double)), aligned(sizeof(double)), may_alias));
static ptrdiff_t fr_spans_generic(double *data, ptrdiff_t n, double tol2, double margin)
{
    ptrdiff_t ld = fr_spans_stride(n);
    FR_CHOLESKY_LANES_BODY(fr_spans_v2, 2, ld)
}
#define FR_SPANS_GENERIC_LANES 2

#if (defined(__x86_64__) || defined(__i386__)) && !defined(FR_SPANS_NO_DISPATCH)
#define FR_SPANS_DISPATCH 1
typedef double fr_spans_v4
    __attribute__((vector_size(4 * sizeof(double)), aligned(sizeof(double)), may_alias));
__attribute__((target("avx2,fma"))) static ptrdiff_t fr_spans_avx2(double *data, ptrdiff_t n,
                                                                    double tol2, double margin)
{
    ptrdiff_t ld = fr_spans_stride(n);
    FR_CHOLESKY_LANES_BODY(fr_spans_v4, 4, ld)
}
#endif

#else

static ptrdiff_t fr_spans_generic(double *data, ptrdiff_t n, double tol2, double margin)
{
    ptrdiff_t ld = fr_spans_stride(n);
    FR_CHOLESKY_LANES_BODY(double, 1, ld)
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

/* The upper triangles of the lanes' Gram matrices (see fr_spans_gram), row by row. */
static void fr_gather_gram(const double *gram, ptrdiff_t ld, const int64_t *order,
                           const uint8_t *ranked, ptrdiff_t n, double *G, ptrdiff_t lanes)
{
    ptrdiff_t stride = fr_spans_stride(n);
    for (ptrdiff_t l = 0; l < lanes; l++) {
        const int64_t *rows = order + l * n;
        for (ptrdiff_t j = 0; j < n; j++) {
            double *dst = G + j * stride * lanes + l;
            if (!ranked[l]) {
                for (ptrdiff_t k = j; k < n; k++)
                    dst[k * lanes] = k == j ? 1.0 : 0.0;
                continue;
            }
            const double *row = gram + rows[j] * ld;
            for (ptrdiff_t k = j; k < n; k++)
                dst[k * lanes] = row[rows[k]];
        }
    }
}

static ptrdiff_t fr_spans_gram(const double *gram, ptrdiff_t ld, const int64_t *order,
                               const uint8_t *ranked, ptrdiff_t n, double *G, double tol2,
                               double margin, ptrdiff_t lanes)
{
    fr_gather_gram(gram, ld, order, ranked, n, G, lanes);
    return fr_spans(G, n, tol2, margin, lanes); /* -1 for a lane count it does not run */
}

#endif
