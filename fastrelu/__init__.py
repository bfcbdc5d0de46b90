"""fastrelu: frame-theoretic analysis of ReLU layers ``ReLU(W x - alpha)``.

Maximal-bias estimates for injectivity on a domain, exact and pointwise injectivity,
reconstruction and spectral measures of ReLU layers. See ``docs/theory.md`` for what
every number means.
"""

from ._domains import Ball, Data, Shell, Sphere
from ._errors import FastReluError
from ._frames import canonical_dual, frame_bounds, frame_operator_inverse, is_frame
from ._layer import ReLULayer
from ._estimate import estimate_bias
from ._mcbe import BiasEstimate, covering_radius, mcbe

__version__ = "0.1.0"

__all__ = [
    "Ball",
    "BiasEstimate",
    "Data",
    "FastReluError",
    "ReLULayer",
    "Shell",
    "Sphere",
    "canonical_dual",
    "covering_radius",
    "estimate_bias",
    "frame_bounds",
    "frame_operator_inverse",
    "is_frame",
    "mcbe",
]
