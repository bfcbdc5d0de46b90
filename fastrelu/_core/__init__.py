"""The shared primitives every capability builds on: errors, input validation, domains, the ReLU layer, frame operators, array I/O, the memory and time budget, the row set-up and the most-correlated-basis primitives (Numba), and the frame-operator extension (Cython + C).

Imports nothing else of fastrelu.
"""
