"""The exception types of fastrelu: FastReluError for bad input, BuildError for an
installation that cannot run on this machine."""


class FastReluError(ValueError):
    """Invalid input to fastrelu: the message names the argument, what was expected
    and what came."""


class BuildError(RuntimeError):
    """fastrelu's compiled code cannot run here (built for another kind of CPU); the
    message says how to reinstall."""
