"""Exact injectivity of a zero-bias ReLU layer ``x -> ReLU(W x)`` on R^n (THEORY §5)."""

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from fastrelu._core.errors import FastReluError
from fastrelu._core.rows import row_exponents
from fastrelu._core.validation import as_frame, n_jobs_value, positive_int
from fastrelu._injectivity import verify_kernels as kernels
from fastrelu._injectivity.subsets import key as _key
from fastrelu._injectivity.subsets import scan
from fastrelu._runtime.parallel import Stopwatch

#: Default budget for n <= 10: inputs with more (n-1)-subsets of distinct hyperplanes
#: are refused. Above n = 10 it shrinks like n^-5, as the cost of a subset grows (see
#: :func:`default_max_subsets` and docs/injectivity.md for the measured times).
DEFAULT_MAX_SUBSETS = 100_000_000
#: Subsets per block of work (on average; a block is a run of whole prefixes). Any value
#: gives the same result; it only sets the granularity of the threads and the progress.
BLOCK_SUBSETS = 1 << 15
#: Least number of subsets of a prefix for which the angular sweep replaces the direct
#: evaluation (both are exact; the sweep is faster for many subsets per prefix).
SWEEP_MIN = 64
#: In the angular sweep, projections shorter than this are evaluated directly.
RADIUS_MIN = 1e-3
#: At most this many subsets are decided in exact (integer) arithmetic; beyond, the input
#: is refused as too close to degenerate.
EXACT_LIMIT = 10_000
#: Inputs not in general position are decided by enumerating every cell in exact
#: arithmetic, for at most this many (n-1)-subsets and n up to NONGENERIC_MAX_DIM.
NONGENERIC_MAX_SUBSETS = 20_000
NONGENERIC_MAX_DIM = 8
#: Inputs not in general position: the witness is the deepest point among the first this
#: many failing cells (a linear program each).
WITNESS_CELLS = 64
#: The exact resolution trusts the sign of ``<u_g, v_T>`` above this times
#: ``n (kappa(U_T) + 1)`` (its rounding error is about ``eps (kappa + 1)``).
_SIGN_FILTER = 256 * np.finfo(np.float64).eps
_EPS = np.finfo(np.float64).eps


def default_max_subsets(n):
    """The default budget: ``10^8`` subsets for ``n <= 10``, ``10^8 (10 / n)^5`` above,
    where a subset costs more (the slowest accepted inputs take about 13 s on two
    cores; see docs/injectivity.md)."""
    if n <= 10:
        return DEFAULT_MAX_SUBSETS
    return int(DEFAULT_MAX_SUBSETS * (10.0 / n) ** 5)


def filter_threshold(n):
    """The kernels' threshold ``delta = 64 n^2 eps`` on ``|det [U_T; u_g]|`` (unit rows):
    above it a sign is trusted, at or below it the subset is decided exactly."""
    return 64.0 * n * n * _EPS


@dataclass(frozen=True, eq=False)
class InjectivityVerdict:
    """Whether ``x -> ReLU(W x)`` is injective on R^n, with the facts that prove it.

    Attributes
    ----------
    injective : bool
        True iff for every ``x`` the rows with ``<w_i, x> >= 0`` span R^n.
    witness : ndarray, shape (n,), or None
        When not injective: a unit ``x`` whose active rows ``{i : <w_i, x> >= 0}``
        (:attr:`witness_active`) do not span R^n, so ``ReLU(W x) = ReLU(W (x + y))``
        for every small ``y`` orthogonal to them. Verified in exact arithmetic before
        it is returned. None when injective.
    witness_active : ndarray of int64 or None
        The active rows at :attr:`witness` (exact signs); their rank is below ``n``.
    witness_margin : float or None
        ``min_i |<w_i, x>| / |w_i|`` at the unit :attr:`witness` ``x``: its distance to
        the nearest hyperplane ``<w_i, x> = 0``, so every point within that distance
        has the same active rows. Of the candidate witnesses (see
        :func:`verify_injective`) the one with the largest margin is returned; a
        margin well above ``1e-15`` means that ``W @ witness >= 0`` in floating point
        finds the same active rows as exact arithmetic. None when injective.
    min_active : int
        The least number of active rows ``#{i : <w_i, x> >= 0}`` over all ``x``
        (rows counted with repetitions). ``min_active < n`` implies non-injective; for
        distinct rows in general position ``min_active >= n`` implies injective, with
        repeated, opposite or other non-generic rows it does not (the rank decides).
        When :attr:`closed_form` is True it is instead the number of active rows at
        the witness, an upper bound of that least number (below ``n``).
    closed_form : bool
        True when the verdict comes from ``m < 2n`` alone (never injective, THEORY §5)
        without the subset scan, because the scan exceeds ``max_subsets`` or the rows
        are too far from general position for it: then ``subsets_checked = 0``,
        ``min_active`` counts the active rows at the witness, ``subset`` is empty,
        ``sign`` is ``+1``, ``vertex`` is the witness, ``n_exact = 0`` and
        ``general_position`` keeps its default (not examined).
    subset : ndarray of int64, shape (n-1,)
        The first subset ``T`` in lexicographic order whose ray ``sign * v`` borders a
        cell with :attr:`min_active` active rows (one row per distinct direction: the
        first row of each group of parallel or opposite rows).
    sign : int
        ``+1`` or ``-1``: the minimal cell borders the ray ``sign * v`` where ``v`` is the
        unit null vector of ``W[subset]`` with ``det [W[subset] / |rows|; v] > 0``.
    vertex : ndarray, shape (n,)
        ``sign * v``, the unit ray of the arrangement on the boundary of the minimal
        cell. In general position the minimal cell is where the rows of :attr:`subset`
        are negative (for a row with opposite copies: on its side with fewer rows) next
        to this ray.
    n_subsets : int
        ``C(p, n-1)`` for ``p`` = :attr:`n_hyperplanes`: the subsets to check.
    subsets_checked : int
        Subsets examined (equals :attr:`n_subsets` for a completed run).
    n_exact : int
        Subsets whose floating-point signs were not certain and were decided again (with
        an error bound, else in exact integer arithmetic); all of them when
        :attr:`general_position` is False.
    n_hyperplanes : int
        Distinct hyperplanes ``{x : <w_i, x> = 0}``: rows that are exactly parallel or
        opposite share one.
    general_position : bool
        True when the distinct hyperplanes are in general position (the subset count of
        THEORY §5 decides); False when they are not and every cell of the arrangement
        was enumerated in exact arithmetic instead.
    elapsed : float
        Wall-clock seconds.
    """

    injective: bool
    witness: np.ndarray | None
    min_active: int
    subsets_checked: int
    n_subsets: int
    elapsed: float
    subset: np.ndarray
    sign: int
    vertex: np.ndarray
    witness_active: np.ndarray | None = field(default=None, repr=False)
    n_exact: int = 0
    n_hyperplanes: int = 0
    general_position: bool = True
    witness_margin: float | None = None
    closed_form: bool = False


# --------------------------------------------------------------------------- exact arithmetic


def _integer_row(row):
    """The row scaled by a positive power of two to integers (exactly)."""
    ratios = [float(x).as_integer_ratio() for x in row]
    den = max(d for _, d in ratios)
    return [num * (den // d) for num, d in ratios]


def _det_value(rows):
    """Determinant of a square integer matrix (list of rows), exactly (Bareiss)."""
    M = [list(r) for r in rows]
    size = len(M)
    sign = 1
    previous = 1
    for k in range(size):
        pivot = next((i for i in range(k, size) if M[i][k] != 0), None)
        if pivot is None:
            return 0
        if pivot != k:
            M[k], M[pivot] = M[pivot], M[k]
            sign = -sign
        for i in range(k + 1, size):
            for j in range(k + 1, size):
                M[i][j] = (M[i][j] * M[k][k] - M[i][k] * M[k][j]) // previous
        previous = M[k][k]
    return sign * M[size - 1][size - 1] if size else 1


def _det_sign(rows):
    """Sign (-1, 0, 1) of the determinant of a square integer matrix."""
    value = _det_value(rows)
    return (value > 0) - (value < 0)


def _rank(rows):
    """Exact rank of an integer matrix given as a list of rows."""
    M = [list(r) for r in rows]
    if not M:
        return 0
    rank = 0
    for col in range(len(M[0])):
        pivot = next((i for i in range(rank, len(M)) if M[i][col] != 0), None)
        if pivot is None:
            continue
        M[rank], M[pivot] = M[pivot], M[rank]
        for i in range(rank + 1, len(M)):
            if M[i][col] != 0:
                a, b = M[rank][col], M[i][col]
                row = [a * x - b * y for x, y in zip(M[i], M[rank])]
                divisor = 0
                for x in row:
                    divisor = math.gcd(divisor, x)
                M[i] = [x // divisor for x in row] if divisor > 1 else row  # keep entries small
        rank += 1
    return rank


def _exactly_parallel(u, w, pivot):
    """Whether the float rows ``u`` and ``w`` are exactly parallel or opposite
    (``u[pivot] != 0``): every ``w[a] u[pivot] - u[a] w[pivot]`` vanishes."""
    up, wp = Fraction(float(u[pivot])), Fraction(float(w[pivot]))
    return all(Fraction(float(b)) * up == Fraction(float(a)) * wp for a, b in zip(u, w))


# --------------------------------------------------------------------------- the problem


class _Arrangement:
    """The rows of ``W`` grouped into distinct hyperplanes, and what the checks share."""

    def __init__(self, W):
        self.W = W
        m, n = W.shape
        self.m, self.n = m, n
        rep, group_of, side = _group_rows(W)
        self.rep = rep                      # (p,) first row of each hyperplane
        self.group_of = group_of            # (m,) hyperplane of each row
        self.side = side                    # (m,) +1 parallel to its representative, -1 opposite
        p = rep.size
        self.p = p
        self.npos = np.bincount(group_of[side > 0], minlength=p).astype(np.int64)
        self.nneg = np.bincount(group_of[side < 0], minlength=p).astype(np.int64)
        self.hasneg = (self.nneg > 0).astype(np.int64)
        self.cheaper = np.minimum(self.npos, self.nneg)
        # Rows scaled by powers of two (exact; signs and directions unchanged), so that
        # norms and inner products neither overflow nor underflow at any finite scale.
        _, self.scaled = row_exponents(W)
        reps = self.scaled[rep]
        self.unit = np.ascontiguousarray(reps / np.linalg.norm(reps, axis=1)[:, None])
        self._integer_rows = {}

    def integer_row(self, g):
        row = self._integer_rows.get(g)
        if row is None:
            row = self._integer_rows[g] = _integer_row(self.W[self.rep[g]])
        return row

    def rows_of(self, groups):
        """Original row indices of the representatives of ``groups``."""
        return self.rep[np.asarray(groups, dtype=np.int64)]

    def null_vector(self, T):
        """Unit ``v`` with ``U_T v = 0`` and ``det [U_T; v] > 0``."""
        n = self.n
        if n == 1:
            return np.ones(1)
        UT = self.unit[list(T)]
        v = np.linalg.svd(UT)[2][-1]
        if np.linalg.det(np.vstack([UT, v])) < 0:
            v = -v
        return v

    def signs(self, T):
        """Exact signs of ``det [U_T; u_g]`` for the hyperplanes ``g`` not in ``T``.

        ``det [U_T; u_g] = vol(T) <u_g, v>`` with ``v`` the null vector of ``U_T``
        oriented by ``det [U_T; v] > 0``. The SVD's ``v`` is exact for a matrix within
        ``O(eps |U_T|)`` of ``U_T``, so ``<u_g, v>`` is off by at most about
        ``eps (kappa(U_T) + 1)``: signs of values well above that are trusted, the others
        are decided in integer arithmetic. Returns ``(others, signs)``.
        """
        n, p = self.n, self.p
        T = list(T)
        in_T = np.zeros(p, dtype=bool)
        in_T[T] = True
        others = np.flatnonzero(~in_T)
        if n == 1:
            values = self.unit[others, 0]  # exactly +-1
            bound = 0.0
        else:
            UT = self.unit[T]
            _, singular, Vt = np.linalg.svd(UT)
            v = Vt[-1]
            orientation = np.linalg.det(np.vstack([UT, v]))
            values = (self.unit[others] @ v) * (1.0 if orientation > 0 else -1.0)
            bound = _SIGN_FILTER * n * (singular[0] / singular[-1] + 1.0) if singular[-1] > 0 else np.inf
        signs = np.where(values > 0, 1, -1).astype(np.int64)
        unsure = np.flatnonzero(~(np.abs(values) > bound))
        if unsure.size:
            base = [self.integer_row(t) for t in T]
            for j in unsure:
                signs[j] = _det_sign(base + [self.integer_row(int(others[j]))])
        return others, signs

    def exact_signs_of_rows(self, x):
        """Exact signs of ``<w_i, x>`` for all rows (float filter, then fractions); the
        rows scaled by powers of two have the same signs."""
        W = self.scaled
        values = W @ x
        bound = 4.0 * (self.n + 2) * _EPS * (np.abs(W) @ np.abs(x)) + 1e-300
        signs = np.sign(values).astype(np.int64)
        unsure = np.flatnonzero(~(np.abs(values) > bound))
        if unsure.size:
            xf = [Fraction(float(c)) for c in x]
            for i in unsure:
                total = sum(Fraction(float(a)) * c for a, c in zip(W[i], xf))
                signs[i] = (total > 0) - (total < 0)
        return signs


def _group_rows(W):
    """Group exactly parallel or opposite rows.

    Returns ``rep`` (first row of each group, increasing), ``group_of`` (m,) and
    ``side`` (m,) with ``+1`` for rows that are positive multiples of their group's first
    row and ``-1`` for negative multiples. Candidates share the row divided by its entry
    of largest magnitude (identical floats for exactly parallel rows, whose largest
    entries sit at the same place); each candidate is confirmed in exact arithmetic.
    """
    m, n = W.shape
    pivot = np.argmax(np.abs(W), axis=1)
    scaled = W / W[np.arange(m), pivot][:, None] + 0.0  # + 0.0 turns -0.0 into 0.0
    # One float per row, equal for equal keys (elementwise arithmetic, no BLAS, so the
    # same row always gives the same number); rows are sorted by it and compared.
    mix = pivot.astype(np.float64) * 0.7548776662466927
    for k in range(n):
        mix = mix + scaled[:, k] * (1.0 + 0.5698402909980532 * k)
    order = np.argsort(mix, kind="stable")
    sorted_mix = mix[order]
    starts = np.flatnonzero(np.r_[True, sorted_mix[1:] != sorted_mix[:-1]])
    sizes = np.diff(np.r_[starts, m])
    leader = np.arange(m)
    side = np.ones(m, dtype=np.int64)
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1]):
        members = np.sort(order[start:start + size])
        while members.size:
            head = members[0]
            k = pivot[head]
            rest = []
            for j in members[1:]:
                if pivot[j] == k and np.array_equal(scaled[j], scaled[head]) and _exactly_parallel(W[head], W[j], k):
                    leader[j] = head
                    side[j] = 1 if (W[j, k] > 0) == (W[head, k] > 0) else -1
                else:
                    rest.append(j)
            members = np.array(rest, dtype=np.int64)
    rep = np.flatnonzero(leader == np.arange(m)).astype(np.int64)
    position = np.full(m, -1, dtype=np.int64)
    position[rep] = np.arange(rep.size)
    group_of = position[leader]
    return rep, group_of, side


def _unrank(rank, p, k):
    """The k-subset of range(p) of lexicographic rank ``rank`` (a tuple)."""
    out = []
    low = 0
    for i in range(k):
        r = k - i - 1
        # subsets with out[i] < x (out[:i] fixed): C(p - low, r + 1) - C(p - x, r + 1);
        # out[i] is the largest x for which that is <= rank
        total = math.comb(p - low, r + 1)
        lo, hi = low, p - r - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if total - math.comb(p - mid, r + 1) <= rank:
                lo = mid
            else:
                hi = mid - 1
        rank -= total - math.comb(p - lo, r + 1)
        out.append(lo)
        low = lo + 1
    return tuple(out)


class _NonGeneric(Exception):
    """Exact arithmetic found rows that are not in general position."""

    def __init__(self, T, others, signs):
        super().__init__(T)
        self.T, self.others, self.signs = T, others, signs


def _degenerate_error(arr, found, n_subsets):
    rows = arr.rows_of(found.T).tolist()
    n = arr.n
    if np.all(found.signs == 0):
        got = f"rows {rows}, n-1 = {n - 1} rows of distinct directions, are linearly dependent"
    else:
        inside = arr.rows_of(found.others[found.signs == 0]).tolist()
        which = f"row {inside[0]} lies" if len(inside) == 1 else f"rows {inside} lie"
        got = f"{which} in the hyperplane spanned by rows {rows} (exactly: det = 0)"
    return FastReluError(
        "The 'weight' parameter must have its rows in general position (repeated and opposite "
        "rows are allowed) when it has more than "
        f"{NONGENERIC_MAX_SUBSETS:,} subsets or n > {NONGENERIC_MAX_DIM}: n-1 rows of distinct "
        "directions must be linearly independent and no other row may lie in the hyperplane "
        f"they span. Got weight.shape={arr.W.shape} with C({arr.p}, {n - 1}) = {n_subsets:,} "
        f"subsets where {got} instead. Smaller non-generic inputs are decided by enumerating "
        "every cell; perturbing the rows makes them generic.")


def _resolve(arr, T):
    """Exact counts and ranks of the two minimal cells next to ``+v_T`` and ``-v_T``:
    ``(count_plus, rank_plus, count_minus, rank_minus)``; raises :class:`_NonGeneric`
    for rows not in general position."""
    others, signs = arr.signs(T)
    if np.any(signs == 0):
        raise _NonGeneric(T, others, signs)
    n = arr.n
    T = list(T)
    positive = signs > 0
    npos, nneg, hasneg = arr.npos[others], arr.nneg[others], arr.hasneg[others]
    base = int(arr.cheaper[T].sum())
    lift = int(arr.hasneg[T].sum())
    count_plus = base + int(np.where(positive, npos, nneg).sum())
    count_minus = base + int(np.where(positive, nneg, npos).sum())
    rank_plus = min(n, lift + int(np.where(positive, 1, hasneg).sum()))
    rank_minus = min(n, lift + int(np.where(positive, hasneg, 1).sum()))
    return count_plus, rank_plus, count_minus, rank_minus


def _witness(arr, T, s):
    """A unit point of the minimal-rank cell next to ``s v_T`` whose active rows do not
    span R^n, verified in exact arithmetic: ``(x, active_rows)``."""
    n = arr.n
    T = list(T)
    v = arr.null_vector(T)
    others = np.setdiff1d(np.arange(arr.p), T)
    if n == 1:
        d = np.zeros(1)
        t = 0.0
    else:
        # the rows of T go to their side with fewer rows (negative when no opposite rows)
        sigma = np.where(arr.nneg[T] <= arr.npos[T], -1.0, 1.0)
        d = np.linalg.lstsq(arr.unit[T], sigma, rcond=None)[0]  # minimum norm: d is orthogonal to v
        c = np.abs(arr.unit[others] @ v)
        e = np.abs(arr.unit[others] @ d)
        # small enough that no row outside T changes sign along the way
        t = min(1.0, 0.5 * c.min() / e.max()) if e.max() > 0 else 1.0
    # Candidates: points s v + t d moving into the cell, and the cell's deepest point
    # (linear program), which is far from every hyperplane unless the cell is thin
    # (rows nearly, not exactly, parallel to rows of T or nearly in their hyperplane).
    # The verified one farthest from the hyperplanes wins (see witness_margin).
    cell = np.zeros(arr.p)
    if n > 1:
        others, signs = arr.signs(T)
        cell[others] = s * signs
        cell[T] = sigma
    else:
        cell[:] = s * arr.unit[:, 0]
    points = [_lp_point(arr, cell)]
    for _ in range(6):
        points.append(s * v + t * d)
        t /= 16.0
    best = _deepest_verified(arr, points)
    if best is None:
        raise _no_witness_error(arr, T)
    return best


# --------------------------------------------------------------------------- non-generic rows


def _primitive(vector):
    """``(w, sign)`` with ``w`` the primitive integer vector (gcd 1, first nonzero entry
    positive) and ``vector = sign * c * w`` for some ``c > 0``; ``(None, 0)`` for 0."""
    divisor = 0
    for x in vector:
        divisor = math.gcd(divisor, x)
    if divisor == 0:
        return None, 0
    sign = 1 if next(x for x in vector if x != 0) > 0 else -1
    return tuple(sign * x // divisor for x in vector), sign


def _cofactors(rows, k):
    """``c`` with ``det [rows; y] = <c, y>`` for ``k - 1`` integer rows of length ``k``:
    a null vector of the rows (0 iff they are dependent), ``det [rows; c] > 0``."""
    return [(-1) ** (k - 1 + j) * _det_value([[r[i] for i in range(k) if i != j] for r in rows])
            for j in range(k)]


def _restrict(h, v, k0):
    """Normal of the hyperplane ``<h, y> = 0`` inside ``v^perp`` in the coordinates
    ``y_{-k0}`` (``v[k0] != 0``): ``sign <h, y> = sign <restricted, y_{-k0}>``."""
    scale = abs(v[k0])
    flip = 1 if v[k0] > 0 else -1
    return tuple(scale * h[i] - flip * h[k0] * v[i] for i in range(len(h)) if i != k0)


def _cells(normals):
    """Every open cell of the arrangement of the hyperplanes ``<a, x> = 0`` for the
    integer vectors ``a`` in ``normals`` (nonzero, spanning R^k), exactly.

    Returns ``{signs: descriptor}`` in the order found, ``signs[i]`` the sign of
    ``<normals[i], x>`` on the cell. Every cell is a pointed cone with an extreme ray
    ``s v`` on a line ``v`` of the arrangement; the cells next to ``s v`` are, with the
    signs of the hyperplanes not containing ``v`` fixed, the cells of the hyperplanes
    containing ``v`` inside ``v^perp`` -- all sign patterns when they are independent,
    otherwise found recursively in dimension ``k - 1``. Lines are taken from the
    ``(k-1)``-subsets ``T`` of the distinct hyperplanes in lexicographic order (each once),
    ``s = +1`` before ``-1``. :func:`_cell_point` turns a descriptor into a point.
    """
    k = len(normals[0])
    if k == 1:
        up = tuple(1 if a[0] > 0 else -1 for a in normals)
        return {up: ("ray", 1), tuple(-x for x in up): ("ray", -1)}
    index, hyper, member = {}, [], []
    for a in normals:
        key, sign = _primitive(a)
        if key not in index:
            index[key] = len(hyper)
            hyper.append(key)
        member.append((index[key], sign))
    found = {}
    seen = set()
    for T in itertools.combinations(range(len(hyper)), k - 1):
        v = _cofactors([hyper[t] for t in T], k)
        line, _ = _primitive(v)
        if line is None or line in seen:
            continue  # dependent rows, or a line already done
        seen.add(line)
        dots = [sum(a * b for a, b in zip(h, v)) for h in hyper]
        inside = [j for j, d in enumerate(dots) if d == 0]
        k0 = max(range(k), key=lambda i: abs(v[i]))
        local_normals = [_restrict(hyper[j], v, k0) for j in inside]
        if len(inside) == k - 1:
            local = {sigma: ("solve", local_normals, sigma)
                     for sigma in itertools.product((1, -1), repeat=k - 1)}
        else:
            local = _cells(local_normals)
        for s in (1, -1):
            outside = [s if d > 0 else -s for d in dots]
            for local_signs, local_desc in local.items():
                signs_h = list(outside)
                for j, sign in zip(inside, local_signs):
                    signs_h[j] = sign
                signs = tuple(sign * signs_h[j] for j, sign in member)
                if signs not in found:
                    found[signs] = ("line", T, v, s, k0, hyper, dots, local_desc)
    return found


def _solve(rows, rhs):
    """Exact solution of a square nonsingular integer system (fractions)."""
    size = len(rows)
    M = [[Fraction(x) for x in row] + [Fraction(b)] for row, b in zip(rows, rhs)]
    for k in range(size):
        pivot = next(i for i in range(k, size) if M[i][k] != 0)
        M[k], M[pivot] = M[pivot], M[k]
        for i in range(size):
            if i != k and M[i][k] != 0:
                factor = M[i][k] / M[k][k]
                M[i] = [a - factor * b for a, b in zip(M[i], M[k])]
    return [M[i][size] / M[i][i] for i in range(size)]


def _cell_point(desc):
    """An exact interior point (fractions) of the cell described by ``desc``."""
    if desc[0] == "ray":
        return [Fraction(desc[1])]
    if desc[0] == "point":
        return list(desc[1])
    if desc[0] == "solve":
        point = _solve(desc[1], desc[2])
    else:
        point = _line_point(desc)
    # a cone: scale to the largest entry 1, which keeps the numbers small
    largest = max(abs(c) for c in point)
    return [c / largest for c in point]


def _line_point(desc):
    _, _, v, s, k0, hyper, dots, local_desc = desc
    y = iter(_cell_point(local_desc))
    Y = [Fraction(0) if i == k0 else next(y) for i in range(len(v))]
    Y[k0] = -sum(v[i] * Y[i] for i in range(len(v)) if i != k0) / v[k0]  # Y in v^perp
    # s v + t Y: the hyperplanes through v take the signs of Y, the others keep those
    # of s v as long as t |<h, Y>| < |<h, v>|
    t = Fraction(1)
    for h, d in zip(hyper, dots):
        hy = sum(a * b for a, b in zip(h, Y))
        if d != 0 and hy != 0:
            t = min(t, Fraction(abs(d)) / (2 * abs(hy)))
    return [s * v[i] + t * Y[i] for i in range(len(v))]


def _top_cells(arr):
    """Every open cell of the arrangement of the distinct hyperplanes of ``arr``.

    Returns ``(signs, descriptors)``: ``signs`` (cells, p) int8 with the sign of
    ``<u_g, x>`` on each cell, in the order found (subsets ``T`` in lexicographic
    order, ``s = +1`` before ``-1``), and per cell ``(T, s, inside, local)``: the line
    ``v`` of ``T`` and sign by which it was found, the hyperplanes through ``v`` and the
    local cell (a sign pattern of ``T``, or a descriptor of :func:`_cells`). The signs
    of ``<u_g, v>`` come from :meth:`_Arrangement.signs` (exact).
    """
    n, p = arr.n, arr.p
    patterns = np.array(list(itertools.product((1, -1), repeat=n - 1)), dtype=np.int8)
    index = {}
    rows = []
    descriptors = []
    seen = set()
    for T in itertools.combinations(range(p), n - 1):
        others, signs = arr.signs(T)
        if not signs.any():
            continue  # dependent rows: no line
        zero = others[signs == 0]
        if zero.size == 0:
            inside = np.array(T, dtype=np.int64)
            local = [(pattern, pattern) for pattern in patterns]
        else:
            inside = np.array(sorted(T + tuple(zero.tolist())), dtype=np.int64)
            if tuple(inside) in seen:
                continue  # a line already done from an earlier basis
            seen.add(tuple(inside))
            v = _cofactors([arr.integer_row(t) for t in T], n)
            k0 = max(range(n), key=lambda i: abs(v[i]))
            found = _cells([_restrict(arr.integer_row(int(g)), v, k0) for g in inside])
            local = [(np.array(key, dtype=np.int8), desc) for key, desc in found.items()]
        for s in (1, -1):
            base = np.zeros(p, dtype=np.int8)
            base[others] = s * signs
            for local_signs, local_desc in local:
                row = base.copy()
                row[inside] = local_signs
                key = row.tobytes()
                if key not in index:
                    index[key] = len(rows)
                    rows.append(row)
                    descriptors.append((T, s, inside, local_desc))
    return np.array(rows), descriptors


def _top_point(arr, desc):
    """An exact interior point (fractions) of the cell ``desc`` of :func:`_top_cells`:
    ``s v + t Y`` with ``Y`` in the local cell inside ``v^perp``."""
    T, s, inside, local = desc
    n = arr.n
    hyper = [arr.integer_row(g) for g in range(arr.p)]
    v = _cofactors([hyper[t] for t in T], n)
    k0 = max(range(n), key=lambda i: abs(v[i]))
    local_normals = [_restrict(hyper[int(g)], v, k0) for g in inside]
    if isinstance(local, np.ndarray):
        y = _solve(local_normals, local.tolist())
    else:
        y = _cell_point(local)
    dots = [sum(a * b for a, b in zip(h, v)) for h in hyper]
    return _line_point(("line", T, v, s, k0, hyper, dots, ("point", y)))


def _lp_point(arr, signs):
    """A float point deep inside the cell with these signs: maximise ``eps`` subject to
    ``signs_g <u_g, x> >= eps``, ``|x_i| <= 1`` (None when the solver fails)."""
    from scipy.optimize import linprog

    n = arr.n
    A_ub = np.hstack([-signs[:, None] * arr.unit, np.ones((arr.p, 1))])
    cost = np.zeros(n + 1)
    cost[-1] = -1.0
    result = linprog(cost, A_ub=A_ub, b_ub=np.zeros(arr.p), bounds=[(-1, 1)] * n + [(0, 1)],
                     method="highs")
    if result.status != 0 or not result.x[-1] > 0:
        return None
    return result.x[:n]


def _verify_nongeneric(arr, n_subsets, clock):
    """Decide rows not in general position by enumerating every cell exactly: the layer
    is injective iff the active rows of every cell have rank ``n`` (a count ``>= n`` is
    not enough here)."""
    n, p = arr.n, arr.p
    signs, descriptors = _top_cells(arr)
    counts = np.where(signs > 0, arr.npos, arr.nneg).sum(axis=1)
    best = int(np.argmin(counts))  # the first cell found with the least count
    active = (signs > 0) | (arr.nneg > 0)
    # Spanning is certain when the Gram matrix of the active unit rows is far from
    # singular (its eigenvalues are exact for a matrix within O(p eps) of it); the other
    # cells are decided by exact rank, in the order found.
    outer = (arr.unit[:, :, None] * arr.unit[:, None, :]).reshape(p, n * n)
    gram = (active.astype(np.float64) @ outer).reshape(-1, n, n)
    eigenvalues = np.linalg.eigvalsh(gram)
    certain = eigenvalues[:, 0] > 1e-9 * eigenvalues[:, -1]
    witness = witness_active = margin = None
    failing = []
    for cell in np.flatnonzero(~certain):
        groups = np.flatnonzero(active[cell])
        if groups.size >= n and _rank([arr.integer_row(int(g)) for g in groups]) == n:
            continue
        failing.append(cell)
        if len(failing) == WITNESS_CELLS:
            break
    # Of the first WITNESS_CELLS failing cells, the deepest point farthest from the
    # hyperplanes that checks out (see witness_margin); the exact interior point of a
    # cell is the last resort.
    chosen = _deepest_verified(arr, [_lp_point(arr, signs[cell].astype(np.float64)) for cell in failing])
    for cell in failing:
        if chosen is not None:
            break
        chosen = _deepest_verified(arr, [[float(c) for c in _top_point(arr, descriptors[cell])]])
    if failing and chosen is None:
        raise _no_witness_error(arr, descriptors[failing[0]][0])
    if chosen is not None:
        witness, witness_active, margin = chosen
    T, sign = descriptors[best][0], descriptors[best][1]
    return InjectivityVerdict(
        injective=not failing, witness=witness, min_active=int(counts[best]),
        subsets_checked=int(n_subsets), n_subsets=int(n_subsets), elapsed=clock(),
        subset=arr.rows_of(T).astype(np.int64), sign=sign, vertex=sign * arr.null_vector(T),
        witness_active=witness_active, n_exact=int(n_subsets), n_hyperplanes=p,
        general_position=False, witness_margin=margin)


def _verified(arr, point):
    """``(x, active rows)`` for the unit ``x`` along ``point`` when exact signs confirm
    that its active rows do not span R^n, else None."""
    x = np.asarray(point, dtype=np.float64)
    norm = np.linalg.norm(x)
    if not np.isfinite(norm) or norm == 0:
        return None
    x = x / norm
    active = np.flatnonzero(arr.exact_signs_of_rows(x) >= 0)
    groups = np.unique(arr.group_of[active])
    if groups.size < arr.n or _rank([arr.integer_row(int(g)) for g in groups]) < arr.n:
        return x, active.astype(np.int64)
    return None


def _margin(arr, x):
    """``min_g |<u_g, x>|`` for a unit ``x``: its distance to the nearest hyperplane."""
    return float(np.abs(arr.unit @ x).min())


def _deepest_verified(arr, points):
    """Of the candidate points (None entries skipped), the verified witness
    ``(x, active, margin)`` with the largest margin, or None."""
    best = None
    for point in points:
        if point is None:
            continue
        checked = _verified(arr, point)
        if checked is None:
            continue
        margin = _margin(arr, checked[0])
        if best is None or margin > best[2]:
            best = (checked[0], checked[1], margin)
    return best


def _closed_form_witness(arr, candidates=16):
    """A witness for ``m < 2n`` rows without the subset scan: ``(x, active, margin)``
    or None.

    Why it exists: for ``x`` with ``<w_i, x> != 0`` for every row, each row is active
    at exactly one of ``x`` and ``-x``, so ``|A(x)| + |A(-x)| = m < 2n`` and one of the
    two has at most ``n - 1`` active rows, which cannot span R^n. The points tried are
    ``candidates`` fixed pseudo-random directions (no row is orthogonal to them in
    practice); for each, the side with fewer active rows, moved to the deepest point
    of its open cell (linear program: the signs, hence the active rows, stay those of
    the cell). The exact check of :func:`_verified` decides; the largest margin wins.
    """
    rng = np.random.default_rng(0)
    points = []
    for _ in range(candidates):
        x = rng.standard_normal(arr.n)
        values = arr.unit @ x
        if not np.all(np.abs(values) > 1e-8 * np.abs(x).sum()):
            continue  # too close to a hyperplane to trust the float signs
        signs = np.where(values > 0, 1.0, -1.0)
        active_plus = int(np.where(signs > 0, arr.npos, arr.nneg).sum())
        if active_plus > arr.m - active_plus:
            x, signs = -x, -signs
        points.append(x)
        points.append(_lp_point(arr, signs))
    return _deepest_verified(arr, points)


def _closed_form_verdict(arr, found, n_subsets, clock):
    """The verdict for ``m < 2n`` rows from :func:`_closed_form_witness`."""
    x, active, margin = found
    return InjectivityVerdict(
        injective=False, witness=x, min_active=int(active.size), subsets_checked=0,
        n_subsets=int(n_subsets), elapsed=clock(), subset=np.zeros(0, dtype=np.int64),
        sign=1, vertex=x.copy(), witness_active=active, n_exact=0, n_hyperplanes=arr.p,
        witness_margin=margin, closed_form=True)


def _no_witness_error(arr, T):
    return FastReluError(
        "The 'weight' parameter must not have rows this close to degenerate: the layer is "
        "not injective (decided exactly), but only in a cell thinner than floating-point "
        f"rounding, so no witness can be given. Got weight.shape={arr.W.shape} with such a "
        f"cell next to the hyperplanes of rows {arr.rows_of(T).tolist()} instead. Make nearly "
        "parallel rows exactly parallel (copies, sign changes or power-of-two scalings) or "
        "perturb the rows.")


def verify_injective(weight, *, max_subsets=None, n_jobs=None, progress=False, client=None,
                     checkpoint=None, checkpoint_interval=None):
    """Decide exactly whether ``x -> ReLU(W x)`` is injective on R^n.

    The layer is injective iff for every ``x`` the active rows ``{i : <w_i, x> >= 0}``
    span R^n (Puthawala et al., JMLR 2022; THEORY §5). The active set is constant on
    each open cell of the arrangement of the hyperplanes ``<w_i, x> = 0`` and only grows
    on their boundaries, and every cell is a pointed cone with an extreme ray ``s v``:
    ``v`` spans the intersection of the hyperplanes of ``n-1`` rows ``T`` and
    ``s = +-1``. For rows in general position the cells next to ``s v`` are the sign
    patterns of ``T``; the smallest has the rows of ``T`` negative and ::

        #{ i not in T : <w_i, s v> > 0 }

    active rows. The layer is injective iff this count is ``>= n`` for all ``(T, s)``,
    and ``min_active`` is its minimum. ``C(p, n-1)`` subsets are checked (``p`` distinct
    hyperplanes), in parallel, with the same result for any ``n_jobs``.

    Repeated rows and opposite rows (``w_j = c w_i``, any ``c != 0``, exactly) share a
    hyperplane and are handled exactly: a hyperplane of ``T`` with rows on both sides
    contributes to every cell next to ``s v``, and the count and the rank of the active
    rows are computed from the rows on each side. So ``[W; -W]`` is decided (injective
    iff ``rank W = n``). Other non-generic rows -- more than ``n-1`` distinct directions
    in a hyperplane through 0, or ``n-1`` of them linearly dependent -- break the count
    (a cell can have ``>= n`` active rows that do not span). They are decided by
    enumerating every cell of the arrangement in exact arithmetic and checking the rank
    of its active rows (``general_position`` is then False), for at most 20,000 subsets
    and ``n <= 8``; larger non-generic inputs are refused with a :class:`FastReluError`
    that names the rows, never answered by a guess.

    Floating point is only a filter: signs of ``det [U_T; u_g]`` (unit rows) with
    magnitude at most ``delta = 64 n^2 eps`` (about ``2e-13`` for ``n = 4``; the
    rounding error of this determinant is ``O(n^2 eps)`` whatever the conditioning) are
    recomputed in exact integer arithmetic from the floats of ``W``, so the verdict is
    exact for the given floating-point matrix. A witness is checked with exact signs
    before it is returned.

    Parameters
    ----------
    weight : array_like, shape (m, n)
        Rows ``w_i`` forming a frame for R^n (finite, no zero rows, rank ``n``).
    max_subsets : int or None, default=None
        Refuse inputs with more than this many (n-1)-subsets of distinct hyperplanes,
        before any work. ``None``: :func:`default_max_subsets`, ``10^8`` for
        ``n <= 10`` and ``10^8 (10 / n)^5`` above, so that the slowest accepted inputs
        take about 13 s on two cores (measured: 85-140 ns per subset for n <= 10).
    n_jobs : int or None, default=None
        Worker threads (``None``: all cores). The result does not depend on it.
    progress : bool or None, default=False
        Progress bar on stderr: ``True`` always, ``False`` never, ``None`` only for runs
        longer than two seconds on a terminal.
    client : distributed.Client, str or None, default=None
        Scan the subsets on this Dask cluster (see :func:`mcbe`); the verdict is the
        same. ``None``: run locally.
    checkpoint : str, path-like or None, default=None
        Save the scan's partial result to this file and resume from it (see
        :func:`mcbe`). ``None``: no checkpoint.
    checkpoint_interval : float or None, default=None
        Seconds between checkpoint writes (``None``: 5).

    Returns
    -------
    InjectivityVerdict

    Raises
    ------
    FastReluError
        For a weight that is not a frame (not 2-D, non-finite, zero rows, rank < n), more
        subsets than ``max_subsets`` (``m >= 2n``), non-generic rows beyond 20,000 subsets
        or ``n > 8``
        (see above), rows so close to degenerate that more than 10,000 subsets would need
        exact arithmetic, or a non-injective layer whose failing cells are all thinner
        than floating-point rounding (no float witness exists).

    Notes
    -----
    ``m < 2n`` rows are never injective: at an ``x`` on none of the hyperplanes every
    row is active at exactly one of ``x`` and ``-x``, so one of them has fewer than
    ``n`` active rows. Such inputs are answered first, whatever ``max_subsets``: a
    witness from fixed pseudo-random directions (the side with fewer active rows, moved
    to the deepest point of its cell), checked in exact arithmetic. When the subset
    scan fits the budget (and the rows allow it) it still runs and gives the exact
    ``min_active`` and minimal cell; otherwise the verdict has ``closed_form=True``.

    The witness: of the candidate points -- the cell next to the first minimal-rank ray
    (its deepest point by a linear program, and points ``s v + t d`` moving into it), for
    rows not in general position the deepest points of the first 64 failing cells, and
    for ``m < 2n`` the closed-form candidates -- the one that checks out exactly with the
    largest :attr:`InjectivityVerdict.witness_margin` (distance to the nearest
    hyperplane) is returned, so that a floating-point check ``W @ witness >= 0``
    agrees with the exact one unless every failing cell is thinner than rounding.
    Weights of any finite scale work (rows are scaled by powers of two internally).
    Deciding injectivity is coNP-complete in general and fixed-parameter tractable in
    ``n`` (Froese, Grillo, Skutella 2024): the cost grows like ``m^(n-1)``.

    Examples
    --------
    ``[I; -I]`` is injective (it keeps both signs of every coordinate); the tetrahedron
    has ``m = 4 < 2n`` rows and is not, and the witness shows where it fails:

    >>> import numpy as np
    >>> import fastrelu as fr
    >>> fr.verify_injective(np.vstack([np.eye(3), -np.eye(3)]), n_jobs=1).injective
    True
    >>> T = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    >>> verdict = fr.verify_injective(T, n_jobs=1)
    >>> verdict.injective, verdict.min_active, verdict.witness.shape
    (False, 1, (3,))
    >>> int(np.linalg.matrix_rank(T[verdict.witness_active])) < 3
    True
    """
    return _verify(weight, max_subsets=max_subsets, n_jobs=n_jobs, progress=progress,
                   client=client, checkpoint=checkpoint, checkpoint_interval=checkpoint_interval)


def _verify(weight, *, max_subsets=None, n_jobs=None, progress=False,
            sweep_min=SWEEP_MIN, block_subsets=BLOCK_SUBSETS, delta=None, client=None,
            checkpoint=None, checkpoint_interval=None):
    """:func:`verify_injective` with the internal knobs exposed (for tests and benchmarks:
    none of them changes the result)."""
    clock = Stopwatch()
    W = as_frame(weight)
    m, n = W.shape
    max_subsets = default_max_subsets(n) if max_subsets is None else positive_int(max_subsets, "max_subsets")
    jobs = n_jobs_value(n_jobs)
    arr = _Arrangement(W)
    p = arr.p
    n_subsets = math.comb(p, n - 1)
    # m < 2n rows are never injective (THEORY §5): answered with a witness before the
    # budget; the scan, when it fits, adds the exact min_active and the minimal cell.
    closed = _closed_form_witness(arr) if m < 2 * n else None
    if closed is not None and n_subsets > max_subsets:
        return _closed_form_verdict(arr, closed, n_subsets, clock)
    if n_subsets > max_subsets:
        never = (f" (with m = {m} < 2n = {2 * n} rows it is never injective; the subsets "
                 "would give min_active and a witness)") if m < 2 * n else ""
        raise FastReluError(
            f"The 'weight' parameter must give at most max_subsets={max_subsets:,} subsets of "
            f"n-1 = {n - 1} distinct hyperplanes to check. Got weight.shape={W.shape} with "
            f"{p} distinct hyperplanes: C({p}, {n - 1}) = {n_subsets:,} subsets instead{never}. "
            "Raise 'max_subsets' (the time grows in proportion) or check injectivity "
            "pointwise on data points with fastrelu.injectivity_summary instead.")

    if n == 1:
        # one subset (the empty one), decided directly by the signs of the rows
        best_count, best_rank, flagged, n_flagged, scanned = (kernels.NONE, -1), (kernels.NONE, -1), [0], 0, 1
    else:
        best_count, best_rank, flagged, n_flagged, scanned = scan(
            arr, jobs, progress, sweep_min, block_subsets,
            filter_threshold(n) if delta is None else delta, RADIUS_MIN, EXACT_LIMIT + 1,
            client=client, checkpoint=checkpoint, checkpoint_interval=checkpoint_interval)
    try:
        for rank in flagged[:EXACT_LIMIT]:
            count_plus, rank_plus, count_minus, rank_minus = _resolve(arr, _unrank(rank, p, n - 1))
            best_count = min(best_count, _key(count_plus, 2 * rank), _key(count_minus, 2 * rank + 1))
            best_rank = min(best_rank, _key(rank_plus, 2 * rank), _key(rank_minus, 2 * rank + 1))
    except _NonGeneric as found:
        if n_subsets > NONGENERIC_MAX_SUBSETS or n > NONGENERIC_MAX_DIM:
            if closed is not None:
                return _closed_form_verdict(arr, closed, n_subsets, clock)
            raise _degenerate_error(arr, found, n_subsets) from None
        verdict = _verify_nongeneric(arr, n_subsets, clock)
        if closed is not None and (verdict.witness_margin is None or closed[2] > verdict.witness_margin):
            verdict = dataclasses.replace(verdict, witness=closed[0], witness_active=closed[1],
                                          witness_margin=closed[2])
        return verdict
    if n_flagged > EXACT_LIMIT:
        if closed is not None:
            return _closed_form_verdict(arr, closed, n_subsets, clock)
        first = arr.rows_of(_unrank(flagged[EXACT_LIMIT], p, n - 1)).tolist()
        raise FastReluError(
            f"The 'weight' parameter must not be this close to degenerate: {n_flagged:,} subsets "
            f"of n-1 rows have another row within rounding of their hyperplane (e.g. rows {first}), "
            f"more than the {EXACT_LIMIT:,} that are decided in exact arithmetic. Got "
            f"weight.shape={W.shape} instead. Make nearly parallel rows exactly parallel or "
            "perturb the rows.")

    count, count_index = best_count
    rank, rank_index = best_rank
    T = _unrank(count_index // 2, p, n - 1)
    sign = 1 if count_index % 2 == 0 else -1
    vertex = sign * arr.null_vector(T)
    injective = rank >= n
    witness = witness_active = margin = None
    if not injective:
        witness, witness_active, margin = _witness(arr, _unrank(rank_index // 2, p, n - 1),
                                                   1 if rank_index % 2 == 0 else -1)
        if closed is not None and closed[2] > margin:
            witness, witness_active, margin = closed
    return InjectivityVerdict(
        injective=bool(injective), witness=witness, min_active=int(count),
        subsets_checked=int(scanned), n_subsets=int(n_subsets), elapsed=clock(),
        subset=arr.rows_of(T).astype(np.int64), sign=sign, vertex=vertex,
        witness_active=witness_active, n_exact=min(n_flagged, EXACT_LIMIT), n_hyperplanes=p,
        witness_margin=margin)
