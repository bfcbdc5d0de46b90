"""Compiled (Cython) extensions of fastrelu. Private: use the public API."""
