"""Getting the input back: dual-frame reconstruction, the basis and frame-algorithm methods and layer-by-layer inversion, with the Numba kernels and the Cython solvers.
"""
