"""What defines a seeded run: the block sizes and the registry of random streams.

Block ``b`` of a run seeded with ``seed`` draws its random numbers from
``block_generator(seed, b, stream)`` and from nothing else, so a block's
result depends only on the run's parameters and ``b``. The block sizes below are part of
that definition: changing one changes every seeded result (and ``BLOCK_FORMAT`` in
:mod:`fastrelu._runtime.blockmap` must then be raised). Each use of a seed has its own
stream, so that, for example, checking a bias with the seed that estimated it never
reuses the estimator's samples.
"""

import numpy as np

#: Samples per block of the bias estimators and of :func:`fastrelu.check_bias`; points
#: per block of the pointwise and reconstruction kernels.
BLOCK_SIZE = 4096
#: Starts per block of :func:`fastrelu.relu_power_iteration`.
POWER_BLOCK = 256
#: Gaussian draws per block of :func:`fastrelu.gaussian_mean_width`.
WIDTH_BLOCK = 256

# The registry of streams (spawn key ``(block,)`` for stream 0, ``(block, stream)`` else).
#: The samples of :func:`fastrelu.mcbe` on the sphere, ball and shell.
SAMPLING_STREAM = 0
#: The fresh test points of :func:`fastrelu.check_bias`.
CHECK_STREAM = 1
#: The starts of :func:`fastrelu.relu_power_iteration`.
POWER_STREAM = 2
#: The Gaussian draws of :func:`fastrelu.gaussian_mean_width`.
WIDTH_STREAM = 3
#: The points and starts of the rank-``(j-1)`` fits of
#: :func:`fastrelu.relu_singular_values` (block index ``j``).
FIT_STREAM = 4
#: The synthetic points of :func:`fastrelu.enlarge_data` (block 0).
ENLARGE_STREAM = 5
#: The split of the data into fitting and held-out points in :func:`fastrelu.analyze`
#: (block 0).
SPLIT_STREAM = 6
#: The starting blocks of the eigenvalue iterations of :func:`fastrelu.operator_injectivity`
#: (block index: the point's index).
OPERATOR_STREAM = 7


def block_generator(seed, block, stream=SAMPLING_STREAM):
    """The random generator of block ``block`` of a run seeded with ``seed``, in the
    stream ``stream`` (one of the ``*_STREAM`` numbers above): PCG64 of
    ``SeedSequence(seed, spawn_key=key)`` with ``key = (block,)`` for stream 0 and
    ``(block, stream)`` otherwise."""
    key = (block,) if stream == SAMPLING_STREAM else (block, stream)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))
