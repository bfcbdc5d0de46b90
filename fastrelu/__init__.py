"""fastrelu: frame-theoretic analysis of ReLU layers ``ReLU(W x - alpha)``.

Maximal-bias estimates for injectivity on a domain, exact and pointwise injectivity,
reconstruction and spectral measures of ReLU layers. See ``docs/theory.md`` for what
every number means.
"""

from fastrelu._bias.enlarge import enlarge_data
from fastrelu._bias.estimate import estimate_bias
from fastrelu._bias.mcbe import BiasEstimate, covering_radius, mcbe
from fastrelu._bias.pbe import is_omnidirectional, pbe
from fastrelu._core.domains import Ball, Data, Shell, Sphere
from fastrelu._core.errors import BuildError, FastReluError, MissingDependencyError
from fastrelu._core.frames import canonical_dual, frame_bounds, frame_operator_inverse, is_frame
from fastrelu._core.layer import ReLULayer
from fastrelu._core.version import __version__ as __version__
from fastrelu._experiments.experiments import EXPERIMENTS, run_experiment
from fastrelu._injectivity.operator import OperatorInjectivity, operator_injectivity
from fastrelu._injectivity.pointwise import (
    BiasCheck,
    PointwiseInjectivity,
    check_bias,
    injectivity_summary,
    pointwise_injectivity,
)
from fastrelu._injectivity.verify import InjectivityVerdict, verify_injective
from fastrelu._networks.digits import DigitsCNN, DigitsModel, digits_cnn, digits_model
from fastrelu._networks.model_layers import LayerNormInput, ModelLayer, ReLULayers
from fastrelu._networks.model_report import analyze_model
from fastrelu._networks.network import Network
from fastrelu._networks.plots import plot_report
from fastrelu._networks.report import analyze, save_report
from fastrelu._networks.results import LayerReport, NetworkReport
from fastrelu._networks.torch_model import capture, relu_layers
from fastrelu._reconstruct.driver import Inversion, Reconstruction, invert, reconstruct
from fastrelu._spectral.power import (
    PowerIterationResult,
    ReLUSingularValues,
    relu_power_iteration,
    relu_singular_values,
)
from fastrelu._spectral.pruning import HarmonicPruning, double_layer, harmonic_prune
from fastrelu._spectral.width import Estimate, LocalMetrics, gaussian_mean_width, local_metrics

__all__ = [
    "Ball",
    "BiasCheck",
    "BiasEstimate",
    "BuildError",
    "Data",
    "DigitsCNN",
    "DigitsModel",
    "EXPERIMENTS",
    "Estimate",
    "FastReluError",
    "HarmonicPruning",
    "InjectivityVerdict",
    "Inversion",
    "LayerNormInput",
    "LayerReport",
    "LocalMetrics",
    "MissingDependencyError",
    "ModelLayer",
    "Network",
    "NetworkReport",
    "OperatorInjectivity",
    "PointwiseInjectivity",
    "PowerIterationResult",
    "ReLULayer",
    "ReLULayers",
    "ReLUSingularValues",
    "Reconstruction",
    "Shell",
    "Sphere",
    "analyze",
    "analyze_model",
    "canonical_dual",
    "capture",
    "check_bias",
    "covering_radius",
    "digits_cnn",
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
    "operator_injectivity",
    "pointwise_injectivity",
    "reconstruct",
    "relu_layers",
    "relu_power_iteration",
    "relu_singular_values",
    "run_experiment",
    "save_report",
    "verify_injective",
]
