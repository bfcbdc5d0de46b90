"""The examples in the docstrings of the public API run and show what they claim.

Every name in ``fastrelu.__all__`` is searched for doctests (its own docstring and those
of its methods and properties); each runs in an empty namespace, so an example imports
what it uses. The functions listed in ``MUST_HAVE_EXAMPLES`` must keep at least one.
"""

import doctest

import pytest

import fastrelu as fr
import fastrelu.torch as fr_torch

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

#: Public functions whose docstrings must show at least one example.
MUST_HAVE_EXAMPLES = (
    "mcbe",
    "pbe",
    "check_bias",
    "injectivity_summary",
    "pointwise_injectivity",
    "verify_injective",
    "reconstruct",
    "invert",
    "relu_power_iteration",
    "relu_singular_values",
    "gaussian_mean_width",
    "local_metrics",
    "frame_bounds",
    "covering_radius",
    "ReLULayer",
    "Network",
    "relu_layers",
    "capture",
    "analyze_model",
    "torch.InjectivityMonitor",
)


#: The public names with their module: the package's, and the training monitor's in
#: fastrelu.torch.
PUBLIC = {**{name: fr for name in fr.__all__},
          **{f"torch.{name}": fr_torch for name in fr_torch.__all__}}


def _doctests(name):
    """The doctests of ``fastrelu.<name>`` (and of its members, for a class), each with
    an empty namespace."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    return finder.find(getattr(PUBLIC[name], name.rpartition(".")[2]), f"fastrelu.{name}", globs={})


def _own_examples(name):
    """Number of examples in the docstring of ``fastrelu.<name>`` itself."""
    return sum(len(test.examples) for test in _doctests(name) if test.name == f"fastrelu.{name}")


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_the_examples_run(name):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    failed = []
    for test in _doctests(name):
        result = runner.run(test, out=failed.append)
        assert result.attempted == len(test.examples)
    assert runner.failures == 0, "".join(failed)


@pytest.mark.parametrize("name", MUST_HAVE_EXAMPLES)
def test_the_main_functions_have_examples(name):
    assert name in PUBLIC
    assert _own_examples(name) >= 1, f"fastrelu.{name} has no example in its docstring"


def test_a_failing_example_fails():
    # guards the runner itself: a wrong expected output is reported, not passed over
    def wrong():
        """>>> 1 + 1
        3
        """

    runner = doctest.DocTestRunner(optionflags=FLAGS)
    messages = []
    for test in doctest.DocTestFinder().find(wrong, "wrong", globs={}):
        runner.run(test, out=messages.append)
    assert runner.failures == 1 and "Expected" in "".join(messages)
