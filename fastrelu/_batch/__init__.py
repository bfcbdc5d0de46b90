"""Batch jobs from a TOML spec.
"""
