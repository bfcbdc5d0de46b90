"""Whole networks: the network model and its loaders, the per-layer report, its plots and the built-in digits model.
"""
