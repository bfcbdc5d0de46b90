"""fastrelu's PyTorch training integration (the ``torch`` extra): watch and enforce the
injectivity of a model's ReLU layers while it trains (THEORY §11).

>>> from fastrelu.torch import InjectivityMonitor  # doctest: +SKIP
"""

from fastrelu._networks.monitor import InjectivityMonitor, MonitorRecord

__all__ = ["InjectivityMonitor", "MonitorRecord"]
