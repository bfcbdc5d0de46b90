"""The exception types of fastrelu: FastReluError for bad input, MissingDependencyError
for an optional package that is not installed, BuildError for an installation that
cannot run on this machine; and first_line, how another library's error is quoted."""

import re


class FastReluError(ValueError):
    """Invalid input to fastrelu: the message names the argument, what was expected
    and what came."""


class BudgetError(FastReluError):
    """A run refused before it starts because it would not fit the memory or time budget
    (the message gives the estimate). A :class:`FastReluError`; callers that run many
    analyses (``analyze_model``) catch it to leave one out and go on."""


class MissingDependencyError(FastReluError, ImportError):
    """An optional dependency of the asked-for feature is not installed; the message
    gives the ``pip install`` command. An ``ImportError`` (``except ImportError``
    catches it) and a :class:`FastReluError` (the command line reports it in one line,
    exit code 2). ``name`` is the missing module, as ``ImportError.name``."""

    def __init__(self, message, *, name=None):
        super().__init__(message)
        self.name = name  # the ImportError attribute, which ValueError's __init__ leaves unset


class BuildError(RuntimeError):
    """fastrelu's compiled code cannot run here (built for another kind of CPU); the
    message says how to reinstall."""


def first_line(exc):
    """The first line of an exception's message, without terminal colour codes (``""``
    for an empty message): how fastrelu quotes the errors other libraries raise."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0] if text else ""
