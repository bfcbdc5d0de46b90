"""Configuration of the benchmarks: the ``quick`` marker selects the small cases, a
regression check that runs in a few minutes (``pytest bench -m quick``). The recording
shared by all cases is in ``_recording.py``."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "quick: the small cases, for a regression check in minutes (pytest bench -m quick)")
