"""How the ReLU acts on the linear part: the ReLU power iteration and singular values, Gaussian mean width, local metrics and harmonic pruning, with their Numba kernels.
"""
