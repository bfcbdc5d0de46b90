/*
 * The lane-parallel Cholesky factorisation shared by the reconstruction kernels
 * (_lanes.h) and the MCBE basis certificate (_spans.h), as a macro over the vector type
 * so that each includer instantiates it for its own lanes and target.
 *
 * FR_CHOLESKY_LANES_BODY(VEC, LANES, LD) is the body of a function
 *     ptrdiff_t f(double *data, ptrdiff_t n, double tol2, double margin)
 * data holds LANES symmetric (n, n) matrices in lane layout with row stride LD >= n
 * (entry (a, c) of lane l at data[(a * LD + c) * LANES + l]; a stride whose bytes are a
 * multiple of a large power of two makes the column walks below fall into the same
 * cache sets), upper triangle read and overwritten by the factor R
 * with S = R^T R). Row j of R is S[j, p] minus R[k, j] R[k, p] for k = 0, .., j-1 in
 * turn (left-looking, in register tiles of 4 entries), scaled by 1 / R[j, j]. It returns
 * the mask of lanes whose every pivot d_j exceeds tol2 + margin / min(1, d_0, ..,
 * d_{j-1}); a lane that fails continues with the pivot 1 so that its numbers stay
 * finite, and is meaningless; when every lane has failed it stops (returns 0). A lane
 * never touches another lane's numbers.
 */
#ifndef FASTRELU_CHOLESKY_LANES_H
#define FASTRELU_CHOLESKY_LANES_H

#include <math.h>
#include <stddef.h>

/* The row stride of the lanes' (n, n) matrices, in vectors of LANES doubles: odd, so
 * that the rows a column walk visits (stride * LANES * 8 bytes apart) spread over the
 * cache sets. With n itself, n = 128 or 256 (rows of 4 or 8 KiB at 4 lanes) fall into
 * the same sets, and the factorisation ran 1.5 - 2.5 times slower per n^3 than at
 * n = 120 or 224 (AMD EPYC Zen 4). */
static inline ptrdiff_t fr_lane_stride(ptrdiff_t n)
{
    return n | 1;
}

#define FR_CHOLESKY_LANES_BODY(VEC, LANES, LD)                                           \
    VEC *U = (VEC *)data;                                                                \
    ptrdiff_t passed = (1 << (LANES)) - 1;                                               \
    double low[LANES];                                                                   \
    for (int l = 0; l < (LANES); l++)                                                    \
        low[l] = 1.0;                                                                    \
    for (ptrdiff_t j = 0; j < n; j++) {                                                  \
        VEC *rj = U + (ptrdiff_t)j * (LD);                                               \
        ptrdiff_t p = j;                                                                 \
        for (; p + 4 <= n; p += 4) {                                                     \
            VEC a0 = rj[p], a1 = rj[p + 1], a2 = rj[p + 2], a3 = rj[p + 3];              \
            const VEC *rk = U;                                                           \
            for (ptrdiff_t k = 0; k < j; k++, rk += (LD)) {                              \
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
            for (ptrdiff_t k = 0; k < j; k++, rk += (LD))                                \
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

#endif
