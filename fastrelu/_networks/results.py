"""The results of :func:`fastrelu.analyze`: one :class:`LayerReport` per hidden layer and
the :class:`NetworkReport` that holds them (read by the report and by its plots)."""

from dataclasses import dataclass, field

import numpy as np

from fastrelu._core.io import jsonable


@dataclass(frozen=True, eq=False)
class LayerReport:
    """What :func:`analyze` found for one hidden layer ``ReLU(W x - alpha)``.

    Attributes
    ----------
    index : int
        Position among the hidden layers (0: the one that sees the network input); for
        :func:`fastrelu.analyze_model`, the position in the report's
        ``parameters["layers"]``. The per-point arrays are keyed ``layer<index>.*``.
    shape : tuple of int
        ``(m, n)``: neurons, input dimension.
    redundancy : float
        ``m / n``.
    frame_bounds : tuple of float or None
        Optimal frame bounds ``(A, B)`` of the rows; ``None`` when they are not a frame
        (then the layer is injective nowhere, whatever the bias).
    bias : ndarray, shape (m,)
        The layer's own (learned) bias ``alpha`` (subtracted convention).
    dead : int
        Neurons active at none of the data points.
    estimates : dict of str to ndarray
        Maximal-bias estimates ``alpha^K`` of THEORY §3–4, by domain: ``"data"`` (MCBE
        on the fitting points as they reach this layer), ``"data_enlarged"`` (the same
        set enlarged by synthetic points, :func:`fastrelu.enlarge_data`), ``"ball"``
        (MCBE on the ball of the largest fitting input's radius, nonnegative part when
        every input is nonnegative) and ``"pbe"`` (PBE on the full ball of that radius,
        for small ``n``). ``+inf`` marks neurons no sample constrained.
    skipped : dict of str to str
        Estimates not computed, with the reason.
    fraction_above : dict of str to float
        Per estimate, the fraction of neurons whose learned bias exceeds the estimate
        (``alpha_i > alpha^K_i``): the neurons that make the layer leave the estimate's
        guarantee.
    injective_fraction : float
        Fraction of the data points at which the layer with its learned bias is
        injective (its active rows span R^n, :func:`fastrelu.injectivity_summary`).
    stable_fraction : float
        Fraction of the data points whose input to this layer is recovered from its
        output stably: the active rows span with a condition number below ``1 /
        span_tol = 1e6`` (:func:`fastrelu.reconstruct`). Below ``injective_fraction``
        when the active rows span only barely (for example when weight decay has shrunk
        the weights of inputs that never vary).
    heldout_fraction : dict of str to float
        Fraction of the held-out points (as they reach this layer) at which the layer is
        injective with, in turn, the learned bias (``"learned"``) and each estimate used
        as the bias (``+inf`` entries: the neuron is never active).
    reconstructed_fraction : float
        Fraction of the data points whose network input is recovered from this layer's
        output through every layer below (:func:`fastrelu.invert`, method ``"dual"``);
        for :func:`fastrelu.analyze_model`, whose layers need not form a chain, the
        fraction whose input **to this layer** is recovered from its output.
    reconstruction_error : float
        Largest relative error ``|x_rec - x| / |x|`` among the recovered points (NaN when
        none is).
    s1 : float
        ``s_1``: the largest value of ``|ReLU(W x - alpha) - ReLU(-alpha)|`` found on the
        unit ball by :func:`fastrelu.relu_power_iteration` (a lower bound and an
        estimate), next to ``spectral_norm = |W|_2`` (its value without the ReLU).
    spectral_norm : float
    width_in, width_out : float
        Gaussian mean width of the data as they enter and as they leave the layer
        (exact per draw; standard errors in ``width_stderr``). The draws for the set
        leaving layer ``k`` come from ``seed + k + 1`` and are the same estimate as the
        next layer's ``width_in``; layer 0's ``width_in`` uses ``seed``.
    width_stderr : tuple of float
    elapsed : float
        Seconds spent on this layer.
    stage_seconds : dict of str to float
        Seconds per stage: ``"estimates"``, ``"injectivity"``, ``"recovery"``, ``"local
        metrics"``, ``"s_1"``, ``"width"`` (and ``"layernorm sphere"`` where it applies);
        for a layer analysed matrix-free (``iterative``), ``"frame bounds"``,
        ``"injectivity"``, ``"recovery"`` and ``"width"``.
    name : str or None
        The layer's name in its model (:func:`fastrelu.analyze_model`: the affine
        module's path); ``None`` for :func:`fastrelu.analyze`.
    kind : str
        ``"dense"`` (:func:`fastrelu.analyze`), or the model layer's ``"linear"``,
        ``"conv1d"`` or ``"conv2d"``.
    input_shape : tuple of int or None
        The shape of one input of the layer in its model (``(C, H, W)`` for a
        convolution), of which ``n`` is the flattened length.
    channel_estimates : dict of str to ndarray
        Convolutions only: per estimate, the channel-wise estimate ``alpha^K_c = min_p
        alpha^K_(c,p)`` over the channel's positions (THEORY §10): a shared bias ``a_c
        <= alpha^K_c`` keeps the estimate's guarantee.
    channel_fraction_above : dict of str to float
        Convolutions only: per estimate, the fraction of channels whose learned (shared)
        bias exceeds the channel-wise estimate.
    sphere : dict or None
        For a ``Linear`` reading a ``LayerNorm`` (:func:`fastrelu.analyze_model`), the
        analysis on the exact set of the LayerNorm's outputs (THEORY §10): the layer
        ``ReLU(W diag(gamma) Q v - (alpha - W beta))`` on the sphere of radius
        ``sqrt(d)`` in ``R^(d-1)``. Keys: ``"shape"`` ``(m, d - 1)``, ``"radius"``,
        ``"samples"``, ``"fraction_above"`` (neurons whose learned bias exceeds the
        sphere estimate), ``"injective_fraction"`` (captured tokens at which the
        learned bias is injective on the LayerNorm's image, in its coordinates ``v``)
        and ``"heldout_fraction"`` (held-out tokens injective with the sphere estimate
        as the bias). The estimate itself is ``estimates["layernorm_sphere"]``, in the
        layer's own coordinates (``alpha^S + W beta``), so that it compares with
        ``bias`` directly.
    iterative : dict or None
        For a model layer whose dense matrix is over the memory budget, analysed from
        products with ``W`` and ``W^T`` only (THEORY §10.1); ``None`` for layers
        analysed from their rows. Keys: ``"method"``; ``"estimated"``, the fields that
        are iterative estimates (the injective, stable, held-out and reconstructed
        fractions, the frame bounds, ``spectral_norm`` and the per-point ``sigma_min``,
        ``sigma_max`` and ``cond``, NaN where not converged); the iterations' ``"tol"``,
        ``"max_iter"``, ``"block"`` and ``"rank_tol"``; ``"undecided_fraction"`` (points
        with ``n`` active rows the sufficient test could not settle, counted as not
        injective), ``"not_converged"`` (points whose brackets are wider than ``tol``)
        and ``"iterations_median"``; for the whole operator, ``frame_bounds`` are the
        Ritz values of ``W^T W`` (``None`` unless the iterations met their residual
        tolerance and the lower bound ``"frame_bounds_lower"`` is positive), with ``"frame_bounds_upper"`` and
        ``"frame_bounds_converged"``; the recovery's ``"recovery_rtol"`` and
        ``"recovery_iterations_max"``. The per-point arrays add ``sigma_min_lower``,
        ``sigma_max_upper``, ``converged``, ``undecided`` and ``residual``. The
        estimates that need the rows (MCBE, PBE, ``s_1``, the local widths) are in
        ``skipped``.
    """

    index: int
    shape: tuple
    redundancy: float
    frame_bounds: tuple[float, float] | None
    bias: np.ndarray = field(repr=False)
    dead: int
    estimates: dict = field(repr=False)
    skipped: dict
    fraction_above: dict
    injective_fraction: float
    stable_fraction: float
    heldout_fraction: dict
    reconstructed_fraction: float
    reconstruction_error: float
    s1: float
    spectral_norm: float
    width_in: float
    width_out: float
    width_stderr: tuple = field(repr=False)
    elapsed: float = field(repr=False)
    stage_seconds: dict = field(repr=False, default_factory=dict)
    name: str | None = None
    kind: str = "dense"
    input_shape: tuple | None = None
    channel_estimates: dict = field(repr=False, default_factory=dict)
    channel_fraction_above: dict = field(default_factory=dict)
    sphere: dict | None = field(repr=False, default=None)
    iterative: dict | None = field(repr=False, default=None)

    def to_dict(self):
        """JSON-ready fields (arrays as lists, ``inf``/NaN as ``None``).

        Returns
        -------
        dict
            One entry per field.
        """
        return jsonable({name: getattr(self, name) for name in self.__dataclass_fields__})


@dataclass(frozen=True, eq=False)
class NetworkReport:
    """The result of :func:`analyze`.

    Attributes
    ----------
    layers : tuple of LayerReport
        One per hidden layer, input side first.
    samples : dict of str to ndarray
        Per data point (shape ``(N,)`` each), keyed ``"layer<k>.<metric>"``: ``injective``,
        ``n_active``, ``rank``, ``sigma_min``, ``sigma_max``, ``width`` (the local
        metrics of THEORY §8 for ``D_x W`` at the point's input to layer ``k``),
        ``cond`` and ``stable`` (the condition number of the active rows and whether the
        layer's input is recovered stably from its output, :func:`fastrelu.reconstruct`),
        ``reconstructed`` and ``reconstruction_error`` (recovering the network input from
        layer ``k``'s output); plus ``"heldout"`` (bool: the point was held out of the
        fitting of the data-driven estimates) and, with labels, ``"prediction"`` and
        ``"correct"``.
    auc : dict of str to float
        With labels: for each ``"layer<k>.<metric>"`` of ``AUC_METRICS``, the area under
        the ROC curve of the metric as a score separating correctly from incorrectly
        classified points, ``P(metric(correct) > metric(incorrect))`` with ties counted
        half (Mann–Whitney ``U / (n_1 n_0)``): 0.5 is no separation, values far below
        0.5 separate too (the metric is then lower on correct points). Empty without
        labels or when one class is empty.
    accuracy : float or None
        Fraction of correctly classified points (with labels).
    parameters : dict
        Everything that reproduces the report (seed, sample counts, enlargement, ...).
    elapsed : float
    """

    layers: tuple
    samples: dict = field(repr=False)
    auc: dict = field(repr=False)
    accuracy: float | None
    parameters: dict
    elapsed: float = field(repr=False)

    def to_dict(self):
        """The report as plain JSON-ready data.

        Returns
        -------
        dict
            ``layers`` (a list of dicts, :meth:`LayerReport.to_dict`), ``samples``
            (per-sample lists), ``auc``, ``accuracy``, ``parameters``, ``elapsed``;
            ``inf`` and NaN as ``None``.
        """
        return jsonable({"layers": [layer.to_dict() for layer in self.layers],
                          "samples": self.samples, "auc": self.auc, "accuracy": self.accuracy,
                          "parameters": self.parameters, "elapsed": self.elapsed})

    def summary(self):
        """A short table, one line per hidden layer.

        Returns
        -------
        str
            A header, one line per hidden layer (``*`` marks layers analysed
            matrix-free, :attr:`LayerReport.iterative`) and, with labels, the accuracy.
        """
        names = [(str(layer.index) if layer.name is None else layer.name)
                 + ("*" if layer.iterative is not None else "") for layer in self.layers]
        width = max([5] + [len(name) for name in names])
        lines = [f"{'layer':>{width}}  shape        injective  stable  held-out: learned  data+  ball   rec.   s1      width in->out"]
        for name, layer in zip(names, self.layers):
            held = layer.heldout_fraction
            lines.append(
                f"{name:>{width}}  {layer.shape[0]:>4}x{layer.shape[1]:<6} {layer.injective_fraction:>9.3f}"
                f"  {layer.stable_fraction:>6.3f}"
                f"  {held.get('learned', float('nan')):>17.3f}  {held.get('data_enlarged', float('nan')):>5.3f}"
                f"  {held.get('ball', float('nan')):>5.3f}  {layer.reconstructed_fraction:>5.3f}"
                f"  {layer.s1:>6.3g}  {layer.width_in:.3g} -> {layer.width_out:.3g}")
        if any(layer.iterative is not None for layer in self.layers):
            lines.append("* over the memory budget, analysed from products with W and W^T: "
                         "iterative estimates (THEORY §10.1)")
        if self.accuracy is not None:
            lines.append(f"accuracy {self.accuracy:.4f}")
        return "\n".join(lines)
