"""Injectivity of a layer: pointwise on data and on sampled domains, the exact verdict by subset enumeration, with their Numba kernels.
"""
