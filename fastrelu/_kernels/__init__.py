"""Numba kernels of fastrelu. Private: they assume validated input and never raise."""
