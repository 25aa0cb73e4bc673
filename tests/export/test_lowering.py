"""Export lowerings: large depthwise kernels tiled for XNNPACK, LayerNorm without SquaredDifference/Neg."""

import collections

import numpy as np
import pytest

from keras_convzoo import deploy, export
from keras_convzoo.backend import LEGACY_KERAS, keras
from keras_convzoo.export.lowering import deployment_lowering, iter_layers
from keras_convzoo.layers import DepthwiseConv2D, ReparamLargeKernelConv, SeparableFlexConv
from keras_convzoo.ops.depthwise import depthwise_tile_count
from keras_convzoo.testing import tflite_filter_shapes

pytestmark = [
    pytest.mark.export,
    pytest.mark.skipif(LEGACY_KERAS, reason="the rewritten layers are Keras 3's; tf_keras models are left as they are"),
]


def _op_counts(path):
    from ai_edge_litert.interpreter import Interpreter

    return collections.Counter(op["op_name"] for op in Interpreter(model_path=path)._get_ops_details())


def _large_kernel_model():
    """One of each depthwise kind the TFLite lowering tiles, plus a LayerNorm."""
    inputs = keras.Input((None, None, 12))
    x = DepthwiseConv2D(7, padding="same", name="ours_7x7")(inputs)  # 49 taps: 3x7, 3x7, 1x7
    x = keras.layers.DepthwiseConv2D(9, strides=2, padding="same", depth_multiplier=2, activation="relu",
                                     name="keras_9x9")(x)  # 81 taps, 24 channels: 4 pieces
    x = keras.layers.Conv2D(24, 7, padding="same", groups=24, name="grouped_7x7")(x)  # one channel per group
    x = ReparamLargeKernelConv(13, small_kernel=5, name="replk_13x13")(x)  # 9 pieces of 5x5 + the 5x5 whole
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
    x = keras.layers.Conv2D(12, 5, padding="same", name="dense_5x5")(x)  # not depthwise: untouched
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(3)
    for weight in model.weights:
        value = rng.normal(0.0, 0.3, weight.shape)
        if "gamma" in weight.path or "variance" in weight.path:
            value = 0.5 + np.abs(value)
        weight.assign(value.astype("float32"))
    return model


def test_tflite_tiles_large_depthwise_kernels_and_matches_keras(tmp_path):
    model = _large_kernel_model()
    tiled = export.to_tflite(model, str(tmp_path / "tiled.tflite"), input_shape=(20, 18, 12))
    assert tiled.relative_diff <= export.FP32_MAX_RELATIVE_DIFF
    ops = _op_counts(tiled.path)
    assert ops["DEPTHWISE_CONV_2D"] == 3 + 4 + 3 + 9 + 1
    assert ops["CONV_2D"] == 1  # the grouped 7x7 became depthwise pieces; the dense 5x5 stays
    assert "SQUARED_DIFFERENCE" not in ops and "NEG" not in ops
    whole = export.to_tflite(model, str(tmp_path / "whole.tflite"), input_shape=(20, 18, 12), depthwise_max_taps=None)
    assert whole.relative_diff <= export.FP32_MAX_RELATIVE_DIFF
    ops = _op_counts(whole.path)
    assert ops["DEPTHWISE_CONV_2D"] == 4 and ops["CONV_2D"] == 2
    x = np.random.default_rng(0).standard_normal((1, 20, 18, 12)).astype("float32")
    np.testing.assert_allclose(export.run_tflite(tiled.path, x)[0], export.run_tflite(whole.path, x)[0],
                               atol=1e-4 * float(np.abs(model(x)).max()))
    # The layers are themselves again after the export.
    assert not any(set(vars(layer)) & {"call", "_dw", "_depthwise"} for layer in iter_layers(model))


def test_int8_tflite_keeps_layer_norm_and_large_kernels_in_xnnpack_ops(tmp_path):
    model = _large_kernel_model()
    rng = np.random.default_rng(1)
    calibration = rng.standard_normal((16, 20, 18, 12)).astype("float32")
    counts = {}
    for taps in ("auto", None):
        report = export.to_tflite(model, str(tmp_path / f"q{taps}.tflite"), input_shape=(20, 18, 12),
                                  quantization="int8", representative_data=calibration, depthwise_max_taps=taps)
        assert report.snr_db >= export.INT8_MIN_SNR_DB
        ops = _op_counts(report.path)
        # No int8 op XNNPACK lacks besides the LayerNorm's RSQRT (SQUARED_DIFFERENCE used to split the graph).
        assert "SQUARED_DIFFERENCE" not in ops and "NEG" not in ops and ops["RSQRT"] == 1
        counts[taps] = ops["DEPTHWISE_CONV_2D"]
    # "auto" tiles int8 files as float ones: 7x7 in 3 pieces, 9x9 in 4, 13x13 in 9 (the grouped 7x7
    # becomes depthwise pieces too); None keeps the four depthwise kernels whole.
    assert counts == {"auto": 3 + 4 + 3 + 9 + 1, None: 4}


def test_lowering_restores_layers_when_tracing_fails():
    model = _large_kernel_model()
    with pytest.raises(RuntimeError, match="boom"):
        with deployment_lowering(model, depthwise_max_taps=25) as switched:
            assert switched == 5  # 3 depthwise kinds + the RepLK layer + the LayerNorm
            raise RuntimeError("boom")
    assert not any(set(vars(layer)) & {"call", "_dw", "_depthwise"} for layer in iter_layers(model))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "25", "Auto"])
def test_bad_depthwise_max_taps_is_rejected_before_writing(tmp_path, bad):
    model = _large_kernel_model()
    path = tmp_path / "never.tflite"
    with pytest.raises(ValueError, match="depthwise_max_taps"):
        export.to_tflite(model, str(path), input_shape=(16, 16, 12), depthwise_max_taps=bad)
    assert not path.exists()


def test_int8_kernel_larger_than_the_input_leaves_out_taps_that_only_see_padding(tmp_path):
    """A 7x7 kernel on a 3x3 map: the rows/columns that never meet the input are dropped, so no
    piece is all padding (an all-zero int8 tensor has an empty range, which XNNPACK refuses)."""
    inputs = keras.Input((3, 3, 8))
    model = keras.Model(inputs, DepthwiseConv2D(7, padding="same")(inputs))
    rng = np.random.default_rng(2)
    report = export.to_tflite(model, str(tmp_path / "small.tflite"), quantization="int8",
                              representative_data=rng.standard_normal((16, 3, 3, 8)).astype("float32"))
    assert report.snr_db >= export.INT8_MIN_SNR_DB
    assert _op_counts(report.path)["DEPTHWISE_CONV_2D"] == 1  # the 5x5 taps that reach the map, one piece


def _depthwise_filter_shapes(path):
    return [shape[1:3] for shape in tflite_filter_shapes(path, "DEPTHWISE_CONV_2D")]


@pytest.mark.parametrize("shape, kernel_size, causal", [((20, 18, 6), 13, False), ((70, 6), 61, False),
                                                        ((70, 6), 61, True)])
def test_tflite_tiles_the_baked_kernel_of_a_fused_continuous_conv(shape, kernel_size, causal, tmp_path):
    inputs = keras.Input(shape)
    conv = SeparableFlexConv(8, kernel_size=kernel_size, causal=causal, mask_init=1.0, seed=0)
    model = deploy.fuse(keras.Model(inputs, conv(inputs)))
    (baked,) = [layer for layer in model.layers if isinstance(layer, SeparableFlexConv)]
    taps = tuple(baked.baked_kernel.shape[:-1])
    taps2d = (1,) + taps if len(taps) == 1 else taps
    assert taps2d[0] * taps2d[1] > 25  # the test needs a kernel worth tiling
    tiled = export.to_tflite(model, str(tmp_path / "tiled.tflite"))
    assert tiled.relative_diff <= export.FP32_MAX_RELATIVE_DIFF
    filters = _depthwise_filter_shapes(tiled.path)
    assert len(filters) == depthwise_tile_count(taps2d) > 1
    assert all(h * w <= 25 for h, w in filters) and sum(h * w for h, w in filters) == taps2d[0] * taps2d[1]
    whole = export.to_tflite(model, str(tmp_path / "whole.tflite"), depthwise_max_taps=None)
    assert _depthwise_filter_shapes(whole.path) == [taps2d]
    x = np.random.default_rng(3).standard_normal((1,) + shape).astype("float32")
    np.testing.assert_allclose(export.run_tflite(tiled.path, x)[0], export.run_tflite(whole.path, x)[0],
                               atol=1e-4 * float(np.abs(model(x)).max()))
    assert not any(set(vars(layer)) & {"call", "_dw", "_depthwise"} for layer in iter_layers(model))


def test_int8_tiled_sum_of_a_centred_kernel_is_more_accurate_smallest_piece_first():
    """Each int8 ADD re-quantizes the running sum to its range: small (outer) pieces first keep the
    early steps fine (measured 31.0 vs 27.7 dB on a 28x28x64 layer; whole kernel 34.7)."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from keras_convzoo.ops.depthwise import depthwise_conv2d_tiled

    rng = np.random.default_rng(0)
    grid = np.linspace(-1, 1, 31)
    envelope = np.exp(-0.5 * (grid[:, None] ** 2 + grid[None] ** 2) / 0.25**2)
    kernel = (rng.standard_normal((31, 31, 16, 1)) * envelope[..., None, None] * 0.05).astype("float32")
    calibration = rng.uniform(-1, 1, (16, 24, 24, 16)).astype("float32")
    x = rng.uniform(-1, 1, (4, 24, 24, 16)).astype("float32")
    reference = tf.nn.depthwise_conv2d(x, kernel, (1, 1, 1, 1), "SAME").numpy()
    snr = {}
    for order, weights in (("raster", None), ("smallest_first", np.abs(kernel).sum(axis=(2, 3)))):
        def tiled(t, weights=weights):
            return depthwise_conv2d_tiled(t, tf.constant(kernel), tap_weights=weights)

        fn = tf.function(lambda t, tiled=tiled: tiled(t), input_signature=[tf.TensorSpec((1, 24, 24, 16))])
        converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(16))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        interpreter = Interpreter(model_content=converter.convert())
        interpreter.allocate_tensors()
        outputs = []
        for sample in x:
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample[None])
            interpreter.invoke()
            outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
        noise = np.sum((np.concatenate(outputs) - reference) ** 2)
        snr[order] = 10 * np.log10(np.sum(reference**2) / noise)
    assert snr["smallest_first"] >= snr["raster"] + 1.5, snr
