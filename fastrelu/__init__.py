"""fastrelu: frame-theoretic analysis of ReLU layers ``ReLU(W x - alpha)``.

Maximal-bias estimates for injectivity on a domain, exact and pointwise injectivity,
reconstruction and spectral measures of ReLU layers. See ``docs/theory.md`` for what
every number means.
"""

from ._digits import DigitsModel, digits_model
from ._domains import Ball, Data, Shell, Sphere
from ._enlarge import enlarge_data
from ._errors import BuildError, FastReluError
from ._frames import canonical_dual, frame_bounds, frame_operator_inverse, is_frame
from ._layer import ReLULayer
from ._estimate import estimate_bias
from ._experiments import EXPERIMENTS, run_experiment
from ._mcbe import BiasEstimate, covering_radius, mcbe
from ._network import Network
from ._plots import plot_report
from ._pointwise import (BiasCheck, PointwiseInjectivity, check_bias, injectivity_summary,
                         pointwise_injectivity)
from ._pbe import is_omnidirectional, pbe
from ._pruning import HarmonicPruning, double_layer, harmonic_prune
from ._report import LayerReport, NetworkReport, analyze, save_report
from ._reconstruct import Inversion, Reconstruction, invert, reconstruct
from ._spectral import (PowerIterationResult, ReLUSingularValues, relu_power_iteration,
                        relu_singular_values)
from ._verify import InjectivityVerdict, verify_injective
from ._width import Estimate, LocalMetrics, gaussian_mean_width, local_metrics

__version__ = "0.1.0"

__all__ = [
    "Ball",
    "BiasCheck",
    "BiasEstimate",
    "BuildError",
    "Data",
    "DigitsModel",
    "EXPERIMENTS",
    "Estimate",
    "FastReluError",
    "HarmonicPruning",
    "InjectivityVerdict",
    "Inversion",
    "LayerReport",
    "LocalMetrics",
    "Network",
    "NetworkReport",
    "PointwiseInjectivity",
    "PowerIterationResult",
    "ReLULayer",
    "ReLUSingularValues",
    "Reconstruction",
    "Shell",
    "Sphere",
    "analyze",
    "canonical_dual",
    "check_bias",
    "covering_radius",
    "digits_model",
    "double_layer",
    "enlarge_data",
    "estimate_bias",
    "frame_bounds",
    "frame_operator_inverse",
    "gaussian_mean_width",
    "harmonic_prune",
    "injectivity_summary",
    "invert",
    "is_frame",
    "is_omnidirectional",
    "local_metrics",
    "mcbe",
    "pbe",
    "plot_report",
    "pointwise_injectivity",
    "reconstruct",
    "relu_power_iteration",
    "relu_singular_values",
    "run_experiment",
    "save_report",
    "verify_injective",
]
