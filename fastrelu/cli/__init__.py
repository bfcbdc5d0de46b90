"""The ``fastrelu`` command line: ``bias``, ``check``, ``verify``, ``reconstruct``,
``svals``, ``width``, ``batch`` and ``demo``.

The package holds one module per command (:mod:`~fastrelu.cli.bias`,
:mod:`~fastrelu.cli.check`, :mod:`~fastrelu.cli.reconstruct`, :mod:`~fastrelu.cli.svals`,
:mod:`~fastrelu.cli.width`, :mod:`~fastrelu.cli.verify`, :mod:`~fastrelu.cli.report`,
:mod:`~fastrelu.cli.experiment`, :mod:`~fastrelu.cli.batch`, :mod:`~fastrelu.cli.demo`),
each with ``add_parser(sub)``, which defines its subcommand, and ``run(args)``, which
runs it and returns the exit status. :mod:`~fastrelu.cli.common` holds the options and
helpers that several commands share (the weights, the bias, the domain, the run, the
cluster), :mod:`~fastrelu.cli.applicability` the rules of which options apply in which
modes of a command, and :mod:`~fastrelu.cli.parser` builds the parser from the command
modules. This module runs a command line (:func:`main`) and re-exports
:func:`~fastrelu.cli.parser.build_parser`, :data:`~fastrelu.cli.applicability.APPLICABILITY` and
the few helpers used from outside the package (the names imported as themselves).
"""

import os
import sys
import warnings
from contextlib import contextmanager

from fastrelu._core.errors import BuildError, FastReluError
from fastrelu.cli.applicability import _KEYS as _KEYS
from fastrelu.cli.applicability import APPLICABILITY as APPLICABILITY
from fastrelu.cli.applicability import _option_names as _option_names
from fastrelu.cli.applicability import _resolve_options
from fastrelu.cli.common import cluster_from_args
from fastrelu.cli.demo import _compiled_kernels as _compiled_kernels
from fastrelu.cli.parser import build_parser

#: Exit status when the reader of stdout went away early (``fastrelu demo | head -1``):
#: 128 + SIGPIPE (13), the status a shell reports for a program that the signal ended,
#: so that ``set -o pipefail`` sees what it sees for other tools. It differs from 1
#: (``--strict``: a negative answer) and 2 (bad input).
EXIT_BROKEN_PIPE = 141


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Every warning of a command as one line on stderr, without Python's file and line."""
    text = " ".join(str(message).split())
    print(f"fastrelu: warning: {text}", file=sys.stderr)


def _silence_stdout():
    """Point the file descriptor of stdout at the null device, so that the interpreter's
    flush at exit of what is still buffered does not fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor
        pass


def main(argv=None):
    """Run the command line; returns the exit status: 0 done, 1 a negative answer under
    ``--strict``, 2 bad input (one line on stderr), 130 interrupted and
    :data:`EXIT_BROKEN_PIPE` when the reader of stdout closed it early (nothing more is
    written, no traceback)."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            code = _main(argv)
            sys.stdout.flush()  # a closed pipe shows here at the latest, not at exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


@contextmanager
def _memory_limit(text):
    """``--memory-limit``: the memory limit of this run (``FASTRELU_MEMORY_LIMIT`` for its
    duration, checked first), the environment's as it was afterwards."""
    if text is None:
        yield
        return
    from fastrelu._core.memory import MEMORY_ENV, parse_bytes

    try:
        parse_bytes(text)
    except (ValueError, IndexError):
        raise FastReluError(f"The '--memory-limit' option must be a number of bytes > 0 (optionally with a suffix K, M, G or T). Got {text!r} instead.") from None
    before = os.environ.get(MEMORY_ENV)
    os.environ[MEMORY_ENV] = text
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MEMORY_ENV, None)
        else:
            os.environ[MEMORY_ENV] = before


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    refusal = _resolve_options(parser, args)
    if refusal:
        prog = parser.commands[args.command].prog
        print(f"{prog}: error: {refusal}; see '{prog} --help'", file=sys.stderr)
        return 2
    try:
        with _memory_limit(args.memory_limit), cluster_from_args(args) as client:
            args.client = client
            return args.run(args)
    except (FastReluError, BuildError) as exc:
        if args.debug:
            raise
        print(f"fastrelu: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastrelu: interrupted", file=sys.stderr)
        return 130
