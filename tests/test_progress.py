"""keras_convzoo.progress.ProgressBar and the progress callbacks of benchmark and port_timm."""

import io

import pytest

from keras_convzoo.backend import keras
from keras_convzoo.profile import benchmark
from keras_convzoo.progress import ProgressBar, check_progress


def test_bar_draws_on_one_line_and_ends_full():
    stream = io.StringIO()
    bar = ProgressBar("work", stream=stream, width=10)
    for i in range(4):
        bar(i + 1, 4)
    text = stream.getvalue()
    frames = text.split("\r")[1:]
    assert frames[0] == "work [##........] 1/4"
    assert frames[-1] == "work [##########] 4/4\n"
    assert text.count("\n") == 1


def test_bad_arguments():
    with pytest.raises(TypeError, match="label"):
        ProgressBar(3)
    with pytest.raises(ValueError, match="width"):
        ProgressBar("x", width=0)
    with pytest.raises(ValueError, match="progress"):
        check_progress("yes")
    assert check_progress(None) is None


def test_benchmark_reports_each_mode_and_batch():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    calls = []
    rows = benchmark(model, batch_sizes=(1, 2), input_size=None, modes=("eager", "graph"), warmup=0, repeats=1,
                     progress=lambda done, total: calls.append((done, total)))
    assert len(rows) == 4 and all(r.ok for r in rows)
    assert calls[-1] == (4, 4) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert {t for _, t in calls} == {4}
    with pytest.raises(ValueError, match="progress"):
        benchmark(model, input_size=None, modes=("graph",), progress=1)


def test_bar_on_a_log_file_writes_one_line(monkeypatch):
    # Default stream (sys.stderr) that is not a terminal: no "\r" redraws in logs.
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    bar = ProgressBar("work", width=4)
    for i in range(3):
        bar(i + 1, 3)
    assert log.getvalue() == "work [####] 3/3\n"
