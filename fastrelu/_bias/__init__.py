"""Maximal-bias estimation: MCBE (most correlated bases, sampled) and PBE (polytope bias estimation), the data-domain estimate and data enlargement, with MCBE's Numba kernels.
"""
