"""A missing optional dependency raises MissingDependencyError: an ImportError (and a
FastReluError, so the command line reports it in one line) whose message gives the pip
command that installs it."""

import sys

import numpy as np
import pytest

import fastrelu as fr
from fastrelu import MissingDependencyError


def _layer():
    return fr.ReLULayer(np.random.default_rng(0).standard_normal((6, 3)))


def _net_file(tmp_path, suffix):
    path = tmp_path / f"net{suffix}"
    path.write_bytes(b"")
    return path


CASES = {
    "torch": (["torch"], lambda tmp, report: fr.Network.from_torch(object()), r'pip install "fastrelu\[torch\]"'),
    "torch-file": (["torch"], lambda tmp, report: fr.Network.load(_net_file(tmp, ".pt")), r'pip install "fastrelu\[torch\]"'),
    "safetensors": (["safetensors", "safetensors.numpy"], lambda tmp, report: fr.Network.load(_net_file(tmp, ".safetensors")),
                    r'pip install "fastrelu\[safetensors\]"'),
    "joblib": (["joblib"], lambda tmp, report: fr.Network.load(_net_file(tmp, ".joblib")), "pip install scikit-learn"),
    "scikit-learn": (["sklearn", "sklearn.datasets"], lambda tmp, report: fr.digits_model(), "pip install scikit-learn"),
    "dask": (["distributed"], lambda tmp, report: fr.relu_power_iteration(_layer().weight, n_starts=8, seed=0,
                                                                 client="tcp://127.0.0.1:9"),
             r'pip install "fastrelu\[dask\]"'),
    "matplotlib": (["matplotlib", "matplotlib.figure"], lambda tmp, report: fr.plot_report(report, tmp / "figs"),
                   r'pip install "fastrelu\[plot\]"'),
}


def _report():
    rng = np.random.default_rng(1)
    net = fr.Network([fr.ReLULayer(rng.standard_normal((8, 3)), np.full(8, -0.2))])
    return fr.analyze(net, rng.standard_normal((40, 3)), samples=500, seed=0, enlarge=None, n_jobs=1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_missing_extra_is_an_import_error_naming_the_pip_command(name, tmp_path, monkeypatch):
    hidden, call, pip = CASES[name]
    report = _report() if name == "matplotlib" else None  # built while matplotlib is there
    for module in hidden:
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(ImportError, match=pip) as caught:
        call(tmp_path, report)
    assert isinstance(caught.value, MissingDependencyError)
    assert isinstance(caught.value, fr.FastReluError)
    assert caught.value.name == hidden[0]  # ImportError.name: the missing module


def test_the_command_line_reports_a_missing_extra_in_one_line(tmp_path, monkeypatch, capsys):
    from fastrelu.cli import main

    np.save(tmp_path / "W.npy", np.random.default_rng(2).standard_normal((9, 3)))
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert main(["bias", str(tmp_path / "W.npy"), "--samples", "100", "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "fastrelu[dask]"' in err and "Traceback" not in err
