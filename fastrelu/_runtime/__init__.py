"""The block runtime of every sampled computation: seed streams, blocks and their plans, the thread pool and progress bar, checkpoints and the Dask back end.

Imports only ``fastrelu._core``.
"""
