"""The one exception type fastrelu raises for bad input."""


class FastReluError(ValueError):
    """Invalid input to fastrelu: the message names the argument, what was expected
    and what came."""
