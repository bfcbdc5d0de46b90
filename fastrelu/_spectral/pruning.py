"""Double layers and harmonic pruning (THEORY §9)."""

from dataclasses import dataclass, field

import numpy as np

from fastrelu._core.errors import FastReluError
from fastrelu._core.layer import ReLULayer
from fastrelu._core.validation import as_bias, as_matrix, check_real, positive_float


def double_layer(layer, bias2=None):
    """The double layer of ``ReLU(W x - alpha)``, with weights ``[W; -W]``.

    Its biases are ``[alpha; alpha']`` (THEORY §9).

    fastrelu fixes the default ``alpha' = -alpha``: the second half is then
    ``ReLU(-(W x - alpha))``, the negative part of the first half's pre-activation
    (concatenated ReLU), so that ``ReLU(z) - ReLU(-z) = z = W x - alpha`` and the double
    layer keeps everything the plain layer drops, for every bias: it is injective iff
    ``rank W = n``, and ``|ReLU(z)|^2 + |ReLU(-z)|^2 = |W x - alpha|^2``. With zero bias
    this is ``[W; -W]`` with zero bias, whose ``s_1`` is ``sigma_1(W)``.

    Parameters
    ----------
    layer : ReLULayer or array_like of shape (m, n)
        The layer (an array is a weight with zero bias). For the default ``bias2`` its
        bias must be finite: the mirror of a never-active neuron (``alpha_i = +inf``)
        would be always active with an infinite output.
    bias2 : array_like of shape (m,), scalar or None, default=None
        The bias ``alpha'`` of the second half (``None``: ``-alpha``); ``+inf`` entries
        are neurons that are never active.

    Returns
    -------
    ReLULayer
        Shape ``(2m, n)``.

    Raises
    ------
    FastReluError
        For a weight that is not a finite 2-D array, a ``bias2`` of the wrong shape or
        with NaN or ``-inf``, or the default ``bias2`` for a layer with a bias ``+inf``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> double = fr.double_layer(fr.ReLULayer([[1.0, 2.0]], bias=0.5))
    >>> double.weight, double.bias
    (array([[ 1.,  2.],
           [-1., -2.]]), array([ 0.5, -0.5]))
    >>> x = np.array([1.0, 1.0])
    >>> y = double(x)
    >>> y, float(y[0] - y[1])
    (array([2.5, 0. ]), 2.5)
    """
    if not isinstance(layer, ReLULayer):
        layer = ReLULayer(as_matrix(layer, "layer"))
    W, alpha = layer.weight, layer.bias
    if bias2 is None:
        never = np.flatnonzero(np.isinf(alpha))
        if never.size:
            raise FastReluError(f"The 'layer' parameter must have a finite bias for the default second half alpha' = -alpha: neurons {never[:10].tolist()}{' ...' if never.size > 10 else ''} have alpha = +inf (never active), and their mirrors would be always active with an infinite output. Give 'bias2' explicitly.")
        second = -alpha
    else:
        second = as_bias(bias2, "bias2", length=W.shape[0])
    return ReLULayer(np.vstack([W, -W]), np.concatenate([alpha, second]))


@dataclass(frozen=True, eq=False)
class HarmonicPruning:
    """A linear operator with its smallest singular components removed.

    Attributes
    ----------
    operator : ndarray
        The pruned operator: a weight of shape (m, n) for a dense layer, or a kernel of
        shape ``(c_out, c_in, N1, N2)`` for a circular convolution on ``N1 x N2`` inputs.
        A pruned convolution kernel has full ``N1 x N2`` support in general (the
        per-frequency truncation is not local), even when the original kernel was
        ``h x w``.
    singular_values : ndarray
        Dense: all ``min(m, n)`` singular values, decreasing. Convolution: shape
        ``(N1, N2, min(c_out, c_in))``, the singular values of the channel matrix of each
        frequency ``(u, v)``, decreasing per frequency; together (with multiplicity) they
        are all the singular values of the convolution operator except zeros.
    kept : ndarray of bool
        Same shape as ``singular_values``: the kept components.
    kept_fraction : float
        ``kept.sum() / kept.size``.
    error : float
        ``|A - A_pruned|_2``, the operator norm of what was removed: exactly the largest
        dropped singular value (0 when nothing was dropped). Since ReLU is 1-Lipschitz,
        ``|ReLU(A x - a) - ReLU(A_pruned x - a)| <= error |x|``.
    threshold : float
        The largest dropped singular value's bound used for the selection: the kept
        components are those with singular value ``> threshold`` (for ``keep=``, the
        value that realises the kept count).
    kind : str
        ``"dense"`` or ``"conv2d"``.
    input_shape : tuple or None
        ``(N1, N2)`` for a convolution.
    """

    operator: np.ndarray = field(repr=False)
    singular_values: np.ndarray = field(repr=False)
    kept: np.ndarray = field(repr=False)
    kept_fraction: float
    error: float
    threshold: float
    kind: str
    input_shape: tuple[int, int] | None = None


def _selection(keep, threshold):
    if (keep is None) == (threshold is None):
        raise FastReluError(f"Exactly one of the 'keep' and 'threshold' parameters must be given. Got keep={keep!r} and threshold={threshold!r}.")
    if keep is not None:
        try:
            fraction = float(keep)
        except (TypeError, ValueError):
            fraction = float("nan")
        if isinstance(keep, bool) or not 0.0 < fraction <= 1.0:
            raise FastReluError(f"The 'keep' parameter must be a float in (0, 1] (the fraction of singular values kept). Got {keep!r} instead.")
        return fraction, None
    return None, positive_float(threshold, "threshold", allow_zero=True)


def _choose(values, weights, fraction, threshold):
    """Which units to keep: ``values`` (k,) their singular values, ``weights`` (k,) how
    many singular values of the operator each stands for. By threshold: those with
    value ``> threshold``. By fraction: the largest units (ties: lower index first) until
    at least ``fraction`` of the total weight is kept. Returns ``(mask, threshold)``."""
    if threshold is not None:
        return values > threshold, threshold
    order = np.lexsort((np.arange(values.size), -values))
    target = fraction * weights.sum()
    cumulative = np.cumsum(weights[order])
    count = int(np.searchsorted(cumulative, target * (1 - 1e-12), side="left")) + 1
    count = min(count, values.size)
    mask = np.zeros(values.size, dtype=bool)
    mask[order[:count]] = True
    dropped = values[~mask]
    return mask, float(dropped.max()) if dropped.size else 0.0


def harmonic_prune(operator, *, keep=None, threshold=None, input_shape=None):
    """Drop the smallest singular components of a dense layer or of a convolution.

    The convolution is a 2-D circular multi-channel one (THEORY §9).

    Dense weight ``W`` (m, n): the truncated SVD ``sum_{kept} sigma_j u_j v_j^T``.

    Convolution kernel ``K`` of shape ``(c_out, c_in, h, w)`` acting on inputs of shape
    ``(c_in, N1, N2)`` with circular padding (``input_shape = (N1, N2)``, ``h <= N1``,
    ``w <= N2``)::

        y[o, i, j] = sum_c sum_{a < h, b < w} K[o, c, a, b] x[c, (i + a) % N1, (j + b) % N2]

    The 2-D DFT block-diagonalises the operator (Sedghi, Gupta & Long, ICLR 2019): its
    singular values are, over all frequencies ``(u, v)``, those of the ``c_out x c_in``
    matrices ``Khat[:, :, u, v]`` of the FFT of ``K`` zero-padded to ``N1 x N2``. Each is
    truncated, the pruned kernel is the inverse FFT (a real kernel of full size
    ``(c_out, c_in, N1, N2)``). Frequencies ``(u, v)`` and ``(-u, -v)`` carry conjugate
    matrices with equal singular values; they are kept or dropped together, so the
    pruned kernel is real.

    Parameters
    ----------
    operator : array_like, 2-D (dense weight) or 4-D (convolution kernel)
        A weight of shape ``(m, n)`` or a kernel of shape ``(c_out, c_in, h, w)``;
        finite.
    keep : float in (0, 1] or None, default=None
        Keep the largest singular values until this fraction of all of them is kept (a
        conjugate pair may take it one above).
    threshold : float >= 0 or None, default=None
        Keep the singular values ``> threshold``. Give exactly one of ``keep`` and
        ``threshold``.
    input_shape : (int, int) or None, default=None
        ``(N1, N2)``, required for a convolution (and refused for a dense weight).

    Returns
    -------
    HarmonicPruning

    Raises
    ------
    FastReluError
        For an operator that is not a finite, non-empty 2-D or 4-D array of real
        numbers, both or neither of ``keep`` and ``threshold``, a ``keep`` outside
        ``(0, 1]``, a negative ``threshold``, or a missing, invalid or misplaced
        ``input_shape``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> W = np.random.default_rng(0).standard_normal((8, 3))
    >>> pruned = fr.harmonic_prune(W, threshold=1.5)
    >>> pruned.kind, pruned.kept, int(np.linalg.matrix_rank(pruned.operator))
    ('dense', array([ True,  True, False]), 2)
    >>> bool(np.isclose(pruned.error, np.linalg.svd(W, compute_uv=False)[2]))
    True
    """
    fraction, threshold = _selection(keep, threshold)
    check_real(operator, "operator")
    try:
        A = np.asarray(operator, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FastReluError(f"The 'operator' parameter must be a real 2-D weight or 4-D convolution kernel. Got {type(operator).__name__} ({exc}).") from None
    if A.ndim == 2:
        if input_shape is not None:
            raise FastReluError(f"The 'input_shape' parameter applies to 4-D convolution kernels only. Got input_shape={input_shape!r} with operator.shape={A.shape}.")
        W = as_matrix(A, "operator")
        left, sig, right = np.linalg.svd(W, full_matrices=False)
        mask, used = _choose(sig, np.ones(sig.size), fraction, threshold)
        pruned = (left[:, mask] * sig[mask]) @ right[mask]
        dropped = sig[~mask]
        return HarmonicPruning(operator=pruned, singular_values=sig, kept=mask,
                               kept_fraction=float(mask.mean()) if mask.size else 1.0,
                               error=float(dropped.max()) if dropped.size else 0.0,
                               threshold=used, kind="dense")
    if A.ndim != 4:
        raise FastReluError(f"The 'operator' parameter must be a 2-D weight (m, n) or a 4-D convolution kernel (c_out, c_in, h, w). Got an array with operator.ndim={A.ndim} (operator.shape={A.shape}).")
    if A.size == 0:
        raise FastReluError(f"The 'operator' parameter must not be empty. Got operator.shape={A.shape}.")
    if not np.isfinite(A).all():
        raise FastReluError("The 'operator' parameter must contain only finite numbers. Got NaN or inf.")
    c_out, c_in, h, w = A.shape
    N1, N2 = _input_shape(input_shape, h, w)
    # the channel matrices per frequency: shape (N1, N2, c_out, c_in)
    spectrum = np.fft.fft2(A, s=(N1, N2), axes=(2, 3)).transpose(2, 3, 0, 1)
    # one representative of each conjugate pair {(u, v), (-u, -v)}
    u, v = np.meshgrid(np.arange(N1), np.arange(N2), indexing="ij")
    flat = u * N2 + v
    partner = ((-u) % N1) * N2 + (-v) % N2
    rep = flat <= partner
    self_conj = flat == partner
    reps_u, reps_v = u[rep], v[rep]
    blocks = spectrum[reps_u, reps_v]
    blocks[self_conj[rep]] = blocks[self_conj[rep]].real  # real matrices there, exactly
    left, sig, right = np.linalg.svd(blocks, full_matrices=False)
    weights = np.where(self_conj[rep], 1, 2)[:, None] * np.ones_like(sig)
    mask_flat, used = _choose(sig.ravel(), weights.ravel(), fraction, threshold)
    mask = mask_flat.reshape(sig.shape)
    pruned_blocks = np.einsum("fij,fj,fjk->fik", left, sig * mask, right)
    pruned = np.empty_like(spectrum)
    pruned[reps_u, reps_v] = pruned_blocks
    pruned[(-reps_u) % N1, (-reps_v) % N2] = np.conj(pruned_blocks)
    pruned[reps_u[self_conj[rep]], reps_v[self_conj[rep]]] = pruned_blocks[self_conj[rep]]
    kernel = np.fft.ifft2(pruned.transpose(2, 3, 0, 1), axes=(2, 3)).real
    all_sig = np.empty((N1, N2, sig.shape[1]))
    all_kept = np.empty((N1, N2, sig.shape[1]), dtype=bool)
    all_sig[reps_u, reps_v], all_kept[reps_u, reps_v] = sig, mask
    all_sig[(-reps_u) % N1, (-reps_v) % N2] = sig
    all_kept[(-reps_u) % N1, (-reps_v) % N2] = mask
    dropped = all_sig[~all_kept]
    return HarmonicPruning(operator=kernel, singular_values=all_sig, kept=all_kept,
                           kept_fraction=float(all_kept.mean()),
                           error=float(dropped.max()) if dropped.size else 0.0,
                           threshold=used, kind="conv2d", input_shape=(N1, N2))


def _input_shape(input_shape, h, w):
    if input_shape is None:
        raise FastReluError(f"The 'input_shape' parameter must be given for a convolution kernel: (N1, N2), the spatial size of the inputs (circular padding). Got None for a kernel of spatial size ({h}, {w}).")
    try:
        N1, N2 = (int(s) for s in input_shape)
        ok = all(float(s) == int(s) for s in input_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or N1 < h or N2 < w:
        raise FastReluError(f"The 'input_shape' parameter must be two integers (N1, N2) with N1 >= {h} and N2 >= {w} (the kernel's spatial size). Got {input_shape!r} instead.")
    return N1, N2
