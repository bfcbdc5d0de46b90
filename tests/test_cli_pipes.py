"""The command line writing into a pipe whose reader went away (``fastrelu ... | head``)."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from fastrelu.cli import EXIT_BROKEN_PIPE, main


def _command():
    script = Path(sys.executable).parent / "fastrelu"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fastrelu"]


def test_reader_closing_after_the_first_bytes_of_a_long_output(tmp_path):
    # ~2 MB of JSON (every point fails: the bias switches every row off), far more than
    # a pipe holds, so the command is still writing when the reader goes away
    rng = np.random.default_rng(0)
    np.save(tmp_path / "W.npy", rng.standard_normal((4, 3)))
    np.save(tmp_path / "X.npy", rng.standard_normal((200_000, 3)))
    proc = subprocess.Popen(_command() + ["check", "W.npy", "--bias", "10", "--data", "X.npy", "--json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = proc.stdout.readline(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE == 141
    assert head.startswith(b'{"domain": "Data(points=<200000 x 3>)"')
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err
    assert err == ""


def test_reader_closed_before_a_short_text_output(tmp_path):
    # demo's table sits in the stdout buffer until the exit flush: that flush must not
    # print "Exception ignored ... BrokenPipeError" either
    proc = subprocess.Popen(_command() + ["demo", "--samples", "2000", "--jobs", "1"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # no reader at all before the first byte is written
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err


class _ClosedPipe:
    """A stdout whose reader has gone: every write and flush raises BrokenPipeError."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_main_returns_the_broken_pipe_status_in_process(tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "W.npy", np.random.default_rng(1).standard_normal((9, 3)))
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["check", str(tmp_path / "W.npy"), "--points", "50"]) == EXIT_BROKEN_PIPE
    monkeypatch.undo()
    assert capsys.readouterr().err == ""
