"""The argument parser: the top-level options and one subcommand per command module."""

import argparse

from fastrelu.cli import (
    batch,
    bias,
    check,
    demo,
    experiment,
    reconstruct,
    report,
    svals,
    verify,
    width,
)
from fastrelu.cli.applicability import _defer_defaults

#: The command modules, in the order ``fastrelu --help`` lists them.
COMMANDS = (bias, check, reconstruct, svals, width, verify, report, experiment, batch, demo)


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error on one line, like every other error of the CLI (exit
    code 2); ``--help`` still prints the usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser():
    """The parser of the command line: ``parser.commands`` maps each command to its
    subparser, whose option defaults are deferred (see :mod:`fastrelu.cli.applicability`)."""
    parser = _Parser(prog="fastrelu", description="Frame-theoretic analysis of ReLU layers ReLU(W x - alpha).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--memory-limit", metavar="SIZE", help="memory the run may plan for, in bytes or with a suffix K, M, G or T (powers of 1024, e.g. 8G); default FASTRELU_MEMORY_LIMIT, else 90%% of the available memory")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)  # takes the module's run function as it is at this call
    parser.commands = sub.choices
    for command in sub.choices.values():
        command.deferred_defaults = _defer_defaults(command)
    return parser
