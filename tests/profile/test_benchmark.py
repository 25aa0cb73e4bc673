"""benchmark() and compare(): result structure, every mode on a tiny model, failing modes, interleaving, argument checks.

Timings are never asserted.
"""

import csv

import numpy as np
import pytest

from keras_convzoo.applications import create_model, get_spec
from keras_convzoo.backend import keras, tf
from keras_convzoo.profile import MODES, BenchmarkResult, benchmark, compare, count_flops, format_table, write_csv
from keras_convzoo.layers import GroupConv2D
from keras_convzoo.profile import interleaved_times, mode_call
from keras_convzoo.testing import tflite_filter_shapes

TINY = dict(get_spec("mobilenetv2_035").test_overrides)


def test_every_mode_and_batch_gets_a_positive_time(tmp_path):
    rows = benchmark("mobilenetv2_035", batch_sizes=(1, 2), input_size=32, warmup=1, repeats=2, model_kwargs=TINY)
    assert [(r.mode, r.batch_size) for r in rows] == [(m, b) for m in MODES for b in (1, 2)]
    macs = count_flops(create_model("mobilenetv2_035", input_shape=(32, 32, 3), **TINY)).total
    for r in rows:
        assert isinstance(r, BenchmarkResult) and r.ok, r.error
        assert r.model == "mobilenetv2_035" and r.input_shape == (32, 32, 3) and r.repeats == 2
        assert r.median_ms > 0 and r.iqr_ms >= 0 and 0 < r.min_ms <= r.median_ms
        assert r.images_per_s == pytest.approx(1e3 * r.batch_size / r.median_ms)
        assert r.macs == macs
    table = format_table(rows).splitlines()
    assert table[0].split()[:4] == ["model", "mode", "batch", "median"] and len(table) == 1 + 2 * len(MODES)
    assert table[-1].split()[:3] == ["mobilenetv2_035", "onnxruntime", "2"]
    write_csv(rows, tmp_path / "rows.csv")
    with open(tmp_path / "rows.csv") as f:
        read = list(csv.DictReader(f))
    assert [(r["mode"], int(r["batch_size"])) for r in read] == [(r.mode, r.batch_size) for r in rows]
    assert [float(r["median_ms"]) for r in read] == [r.median_ms for r in rows]
    assert {r["input_shape"] for r in read} == {"32x32x3"} and {r["error"] for r in read} == {""}


class _HostOp(keras.layers.Layer):
    """Runs numpy on the host: fine in eager and graph mode, impossible for XLA and TFLite."""

    def call(self, x):
        y = tf.numpy_function(lambda a: (2 * a).astype(np.float32), [x], tf.float32)
        return tf.reshape(y, tf.shape(x))

    def compute_output_shape(self, input_shape):
        return input_shape


def test_modes_that_cannot_run_report_their_error():
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3)(_HostOp()(inputs)), name="host_op")
    rows = benchmark(model, batch_sizes=(1,), input_size=None, modes=("graph", "xla", "tflite"), warmup=0,
                     repeats=2)
    by_mode = {r.mode: r for r in rows}
    assert by_mode["graph"].ok and by_mode["graph"].median_ms > 0 and by_mode["graph"].model == "host_op"
    for mode, word in (("xla", "XLA"), ("tflite", "TFLite")):
        row = by_mode[mode]
        assert not row.ok and row.median_ms is None and row.images_per_s is None
        assert word in row.error and "PyFunc" in row.error
    assert "failed: " in format_table(rows)


class _BatchOne(keras.layers.Layer):
    """Flattens with a batch of 1 written into the graph: its TFLite file cannot be resized to a batch."""

    def call(self, x):
        return tf.reshape(x, (1, 72))

    def compute_output_shape(self, input_shape):
        return (1, 72)


def test_tflite_file_that_cannot_be_resized_runs_sample_by_sample():
    inputs = keras.Input((6, 6, 2), batch_size=1)
    model = keras.Model(inputs, keras.layers.Dense(3)(_BatchOne()(inputs)))
    one, three = benchmark(model, batch_sizes=(1, 3), input_size=None, modes=("tflite",), warmup=0, repeats=2,
                           count_macs=False)
    assert one.ok and one.note is None and one.macs is None
    assert three.ok and three.batch_size == 3 and "per-sample" in three.note
    assert "(per-sample invokes" in format_table([one, three]).splitlines()[-1]


def test_model_object_with_unknown_sizes_and_fuse():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, x)
    with pytest.raises(ValueError, match="input_size"):
        benchmark(model, input_size=None, modes=("graph",))
    (row,) = benchmark(model, batch_sizes=(3,), input_size=(10, 12), modes=("graph",), warmup=0, repeats=2,
                       fuse=True)
    assert row.ok and row.input_shape == (10, 12, 3) and row.macs == 9 * 3 * 4 * 8 * 10
    static = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1)])
    with pytest.raises(ValueError, match="input_size"):
        benchmark(static, input_size=16)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(batch_sizes=()), "batch_sizes"),
        (dict(batch_sizes=(0, 1)), "batch_sizes"),
        (dict(batch_sizes=(1.5,)), "batch_sizes"),
        (dict(modes=("fast",)), "modes"),
        (dict(modes=()), "modes"),
        (dict(modes=("graph", "graph")), "modes"),
        (dict(warmup=-1), "warmup"),
        (dict(repeats=0), "repeats"),
        (dict(repeats=True), "repeats"),
        (dict(input_size=0), "input_size"),
        (dict(input_size=(32, 32, 32)), "input_size"),
        (dict(input_size="big"), "input_size"),
        (dict(fuse="yes"), "fuse"),
        (dict(num_threads=0), "num_threads"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        benchmark("mobilenetv2_035", **kwargs)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="Unknown model name"):
        benchmark("no_such_model")
    with pytest.raises(TypeError, match="model_or_name"):
        benchmark(42)


# ------------------------------------------------------------------ compare
class _Log(keras.layers.Layer):
    """Identity that records its tag each time it runs eagerly (the call order of ``compare``)."""

    def __init__(self, tag, log, **kwargs):
        super().__init__(**kwargs)
        self.tag, self.record = tag, log.append  # a bound method: Keras would copy a list attribute

    def call(self, x):
        self.record(self.tag)
        return x


def _logged(tag, log, shape=(4, 4, 2)):
    inputs = keras.Input(shape)
    return keras.Model(inputs, keras.layers.Conv2D(2, 1)(_Log(tag, log)(inputs)), name=f"model_{tag}")


def test_compare_alternates_the_models_round_by_round():
    log = []
    models = {"a": _logged("a", log), "b": _logged("b", log)}
    log.clear()  # building each model ran its layers once
    rows = compare(models, batch_sizes=(1,), input_size=None,
                   modes=("eager",), warmup=1, repeats=5, rounds=2, count_macs=False)
    # warm-up of each, then round 1 (a first: 3 calls each), round 2 (b first: 2 calls each)
    assert "".join(log) == "ab" + "aaabbb" + "bbaa"
    assert [(r.model, r.mode, r.repeats) for r in rows] == [("a", "eager", 5), ("b", "eager", 5)]
    assert all(r.ok and r.median_ms > 0 and r.macs is None for r in rows)


def test_compare_rows_match_benchmark_layout_and_keep_failures_apart():
    tiny = create_model("mobilenetv2_035", input_shape=(32, 32, 3), **TINY)
    inputs = keras.Input((32, 32, 3))
    host = keras.Model(inputs, keras.layers.Conv2D(3, 3)(_HostOp()(inputs)), name="host_op")
    rows = compare([tiny, host], batch_sizes=(1, 2), input_size=None, modes=("graph", "tflite"), warmup=0,
                   repeats=2, rounds=2)
    assert [(r.model, r.mode, r.batch_size) for r in rows] == [
        (name, mode, b) for mode in ("graph", "tflite") for b in (1, 2) for name in (tiny.name, "host_op")
    ]
    by_key = {(r.model, r.mode, r.batch_size): r for r in rows}
    assert all(r.ok and r.median_ms > 0 for r in rows if r.mode == "graph" or r.model == tiny.name)
    assert not by_key[("host_op", "tflite", 1)].ok and "PyFunc" in by_key[("host_op", "tflite", 1)].error
    assert by_key[(tiny.name, "graph", 1)].macs == count_flops(tiny).total
    fused = compare({"plain": tiny, "again": tiny}, batch_sizes=(1,), input_size=None, modes=("graph",),
                    warmup=0, repeats=1, rounds=1, fuse=True)
    assert [r.model for r in fused] == ["plain", "again"] and all(r.ok for r in fused)


@pytest.mark.parametrize(
    "models, kwargs, error, text",
    [
        ("one", {}, TypeError, "`models`"),
        ([], {}, ValueError, "at least two"),
        (["mobilenetv2_035"], {}, ValueError, "at least two"),
        (["mobilenetv2_035", "mobilenetv2_050"], dict(input_size=(32, 32, 32)), ValueError, "`input_size`"),
        ({"x": "mobilenetv2_035", "y": "mobilenetv2_035"}, dict(rounds=0), ValueError, "`rounds`"),
        ({"x": "mobilenetv2_035", "y": "mobilenetv2_035"}, dict(repeats=2, rounds=3), ValueError, "`repeats`"),
        ({"x": "mobilenetv2_035", "y": "mobilenetv2_035"}, dict(modes=("fast",)), ValueError, "`modes`"),
    ],
)
def test_compare_bad_arguments(models, kwargs, error, text):
    with pytest.raises(error, match=text):
        compare(models, **kwargs)


def test_compare_needs_one_input_shape_and_distinct_labels():
    small = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1)], name="small")
    big = keras.Sequential([keras.Input((9, 9, 3)), keras.layers.Conv2D(2, 1)], name="small")
    with pytest.raises(ValueError, match="same input shape"):
        compare({"a": small, "b": big}, input_size=None)
    with pytest.raises(ValueError, match="distinct"):
        compare([small, keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1)], name="small")],
                input_size=None)


def test_interleaved_times_rotates_and_drops_a_failing_call():
    log = []

    def recorder(tag, fail_after=None):
        def call():
            log.append(tag)
            if fail_after is not None and log.count(tag) > fail_after:
                raise RuntimeError(f"{tag} broke")

        return call

    times = interleaved_times({"a": recorder("a"), "b": recorder("b"), "c": recorder("c", fail_after=2)},
                              warmup=1, repeats=3, rounds=3)
    # warm-ups a b c; round 1: a b c (c's 2nd call); round 2: b c a (c raises on its 3rd); round 3: c skipped
    assert "".join(log) == "abc" + "abc" + "bca" + "ab"
    assert len(times["a"]) == len(times["b"]) == 3 and all(t >= 0 for t in times["a"] + times["b"])
    assert isinstance(times["c"], RuntimeError) and "c broke" in str(times["c"])
    with pytest.raises(ValueError, match="`repeats`"):
        interleaved_times({"a": recorder("a")}, repeats=2, rounds=3)
    with pytest.raises(TypeError, match="`calls`"):
        interleaved_times([recorder("a")])


def test_interleaved_times_takes_timers_that_time_themselves():
    class Remote:  # work timed elsewhere: reports its own times
        def __init__(self):
            self.asked = []

        def time_ms(self, n):
            self.asked.append(n)
            return [7.0 + len(self.asked)] * n

    remote, log = Remote(), []
    times = interleaved_times({"local": lambda: log.append(len(remote.asked)), "remote": remote}, warmup=2,
                              repeats=5, rounds=2)
    assert remote.asked == [2, 3, 2]  # warm-up, then its share in each round
    assert times["remote"] == [9.0] * 3 + [10.0] * 2
    assert log == [0, 0] + [1, 1, 1] + [3, 3]  # local warm-up; round 1 before remote; round 2 after it


def test_mode_call_runs_the_model_in_each_mode():
    # 64x64: at 32x32 the last feature map is 1x1 and the converter fixes batch 1 in a reshape
    model = create_model("mobilenetv2_035", input_shape=(64, 64, 3), **TINY)
    x = np.random.default_rng(3).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    for mode, tolerance in (("eager", 1e-5), ("graph", 1e-5), ("xla", 1e-4), ("tflite", 1e-4), ("onnxruntime", 1e-4)):
        call, note = mode_call(model, mode, x)
        np.testing.assert_allclose(call(), expected, atol=tolerance, err_msg=mode)
        assert note is None
    call, _ = mode_call(model, "tflite_int8", x, num_threads=1)
    assert call().shape == expected.shape
    with pytest.raises(ValueError, match="`modes`"):
        mode_call(model, "turbo", x)


# ------------------------------------------------------------ tflite_options
def _grouped_model():
    inputs = keras.Input((12, 12, 32))
    x = GroupConv2D(32, 3, padding="same", groups=8, name="narrow")(inputs)  # 4 input channels per group
    x = GroupConv2D(16, 3, strides=2, padding="same", groups=2, name="wide")(x)  # 16 per group
    model = keras.Model(inputs, x, name="grouped")
    rng = np.random.default_rng(4)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def _recording_converter(monkeypatch):
    """Wraps ``export.to_tflite``: each written file's CONV_2D filter shapes are appended to the returned list."""
    from keras_convzoo import export

    real, written = export.to_tflite, []

    def to_tflite(model, path, **kwargs):
        report = real(model, path, **kwargs)
        written.append(tflite_filter_shapes(path))
        return report

    monkeypatch.setattr(export, "to_tflite", to_tflite)
    return written


def test_tflite_options_shape_the_timed_files(monkeypatch):
    model = _grouped_model()
    written = _recording_converter(monkeypatch)
    grouped, narrow_dense = [(32, 3, 3, 4), (16, 3, 3, 16)], [(32, 3, 3, 32), (16, 3, 3, 16)]
    rows = benchmark(model, batch_sizes=(1, 2), input_size=None, modes=("tflite", "tflite_int8"), warmup=0, repeats=1)
    assert all(r.ok for r in rows) and written == [grouped, grouped]
    written.clear()
    rows = benchmark(model, batch_sizes=(1, 2), input_size=None, modes=("tflite", "tflite_int8"), warmup=0, repeats=1,
                     tflite_options={"dense_group_channels": 4})
    assert all(r.ok for r in rows) and written == [narrow_dense, narrow_dense]
    written.clear()
    rows = compare({"a": model, "b": model}, batch_sizes=(1,), input_size=None, modes=("tflite",), warmup=0,
                   repeats=1, rounds=1, tflite_options={"dense_group_channels": 16})
    assert all(r.ok for r in rows) and written == [[(32, 3, 3, 32), (16, 3, 3, 32)]] * 2
    written.clear()
    x = np.random.default_rng(6).standard_normal((2, 12, 12, 32)).astype("float32")
    call, note = mode_call(model, "tflite", x, tflite_options={"dense_group_channels": 4})
    np.testing.assert_allclose(call(), model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)
    assert note is None and written == [narrow_dense]
    assert [layer.implementation for layer in model.layers[1:]] == ["auto", "auto"]  # restored after each file


@pytest.mark.parametrize(
    "options, error, text",
    [
        ("dense", TypeError, "`tflite_options` must be a dict"),
        ({"quantization": "int8"}, ValueError, "unknown keys: \\['quantization'\\]"),
        ({"dense_group_channels": 0}, ValueError, "`dense_group_channels`"),
        ({"dense_group_channels": 2.0}, ValueError, "`dense_group_channels`"),
        ({"depthwise_max_taps": -1}, ValueError, "`depthwise_max_taps`"),
    ],
)
def test_bad_tflite_options_are_rejected_before_timing(options, error, text):
    for run in (
        lambda: benchmark("mobilenetv2_035", tflite_options=options),
        lambda: compare(["mobilenetv2_035", "mobilenetv2_050"], tflite_options=options),
        lambda: mode_call(keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 1)]), "tflite",
                          np.zeros((1, 4, 4, 3), "float32"), tflite_options=options),
    ):
        with pytest.raises(error, match=text):
            run()


def test_onnxruntime_mode_runs_the_exported_file_with_the_given_threads(monkeypatch):
    # The timed call is an onnxruntime session over to_onnx's file, opened with num_threads intra-op threads.
    from keras_convzoo import export

    opened = []
    real = export.onnx_session

    def recording(model, num_threads=None):
        session = real(model, num_threads=num_threads)
        opened.append(session.get_session_options().intra_op_num_threads)
        return session

    monkeypatch.setattr(export, "onnx_session", recording)
    model = create_model("mobilenetv2_035", input_shape=(32, 32, 3), **TINY)
    x = np.random.default_rng(5).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    call, note = mode_call(model, "onnxruntime", x, num_threads=1)
    np.testing.assert_allclose(call(), model.predict(x, verbose=0), atol=1e-4)
    assert note is None and opened == [1]


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_onnx_session_rejects_bad_thread_counts(threads):
    from keras_convzoo import export

    with pytest.raises(ValueError, match=r"`num_threads` must be a positive int or None. Received: num_threads="):
        export.onnx_session(b"", num_threads=threads)
