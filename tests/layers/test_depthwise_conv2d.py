"""layers.DepthwiseConv2D: Keras' depthwise conv with the shifted-sum lowering under XLA on CPU."""

import numpy as np
import pytest

from keras_convzoo.backend import LEGACY_KERAS, keras, tf
from keras_convzoo.layers import DepthwiseConv2D
from keras_convzoo.layers.depthwise_conv2d import depthwise_conv2d_layer
from keras_convzoo.ops import depthwise as depthwise_ops
from keras_convzoo.testing import random_array, run_layer_test


@pytest.mark.parametrize(
    "kernel, strides, padding, hw",
    [(7, 1, "same", (13, 11)), (3, 1, "same", (6, 5, 3)), (3, 2, "same", (14, 15)), (3, 2, "same", (15, 14)),
     (3, 2, "valid", (15, 14)), (5, 1, "valid", (9, 9)), ((3, 5), (2, 2), "same", (10, 12)), ((5, 3), 1, "same", (7, 12))],
)
def test_shifted_sum_equals_tf_depthwise(kernel, strides, padding, hw):
    multiplier = hw[2] if len(hw) == 3 else 1
    hw = hw[:2]
    x = tf.constant(random_array((2,) + hw + (6,)))
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    w = tf.constant(random_array((kh, kw, 6, multiplier), seed=1))
    strides = (strides, strides) if isinstance(strides, int) else strides
    expected = tf.nn.depthwise_conv2d(x, w, (1,) + strides + (1,), padding.upper())
    got = depthwise_ops.depthwise_conv2d_shifted(x, w, strides, padding)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
    # Inside XLA with unknown spatial sizes too.
    spec = tf.TensorSpec((None, None, None, 6))
    dynamic = tf.function(lambda t: depthwise_ops.depthwise_conv2d_shifted(t, w, strides, padding),
                          jit_compile=True, input_signature=[spec])
    np.testing.assert_allclose(dynamic(x).numpy(), expected.numpy(), atol=1e-5)


def test_bad_padding_is_rejected():
    with pytest.raises(ValueError, match="padding"):
        depthwise_ops.depthwise_conv2d_shifted(tf.ones((1, 4, 4, 2)), tf.ones((3, 3, 2, 1)), padding="causal")


def test_xla_context_detection():
    seen = []

    def probe(t):
        seen.append(depthwise_ops.in_xla_cpu_context())
        return t + 1

    x = tf.ones((2,))
    probe(x)
    tf.function(probe)(x)
    tf.function(probe, jit_compile=True)(x)
    tf.function(lambda t: tf.function(probe)(t), jit_compile=True)(x)  # nested in an XLA function
    has_gpu = bool(tf.config.list_logical_devices("GPU"))
    assert seen == [False, False, not has_gpu, not has_gpu]


@pytest.mark.parametrize("use_bias, activation", [(True, None), (False, "relu")])
def test_layer_under_xla_takes_the_shifted_form_and_matches(monkeypatch, use_bias, activation):
    calls = []
    original = depthwise_ops.depthwise_conv2d_shifted

    def spy(*args, **kwargs):
        calls.append(args[1].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr("keras_convzoo.layers.depthwise_conv2d.depthwise_conv2d_shifted", spy)
    layer = DepthwiseConv2D(7, padding="same", use_bias=use_bias, activation=activation,
                            bias_initializer="random_normal")
    x = tf.constant(random_array((2, 9, 10, 8)))
    eager = layer(x)
    graph = tf.function(layer)(x)
    assert not calls  # eager and plain graph: Keras' own kernel
    xla = tf.function(layer, jit_compile=True)(x)
    assert len(calls) == (0 if tf.config.list_logical_devices("GPU") else 1)
    np.testing.assert_allclose(graph.numpy(), eager.numpy(), atol=1e-6)
    np.testing.assert_allclose(xla.numpy(), eager.numpy(), atol=1e-5)


def test_depth_multiplier_under_xla():
    layer = DepthwiseConv2D(3, depth_multiplier=3, strides=2, padding="same", bias_initializer="random_normal")
    x = tf.constant(random_array((2, 9, 8, 4)))
    eager = layer(x)
    assert eager.shape == (2, 5, 4, 12)
    np.testing.assert_allclose(tf.function(layer, jit_compile=True)(x).numpy(), eager.numpy(), atol=1e-5)


def test_layer_falls_back_for_dilation_and_large_kernels(monkeypatch):
    calls = []
    monkeypatch.setattr("keras_convzoo.layers.depthwise_conv2d.depthwise_conv2d_shifted",
                        lambda *a, **k: calls.append(1))
    x = tf.constant(random_array((1, 8, 8, 4)))
    for layer in (DepthwiseConv2D(3, dilation_rate=2, padding="same"),
                  DepthwiseConv2D(11, padding="same")):
        np.testing.assert_allclose(tf.function(layer, jit_compile=True)(x).numpy(), layer(x).numpy(), atol=1e-5)
    assert not calls


def test_gradients_match_under_xla():
    layer = DepthwiseConv2D(3, strides=2, padding="same")
    x = tf.constant(random_array((2, 9, 9, 4)))
    layer(x)

    def grads(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            loss = tf.reduce_sum(tf.square(layer(t)))
        return tape.gradient(loss, [t] + layer.trainable_weights)

    expected = grads(x)
    got = tf.function(grads, jit_compile=True)(x)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


def test_run_layer_test():
    run_layer_test(
        DepthwiseConv2D,
        {"kernel_size": 3, "strides": 2, "padding": "same"},
        input_shape=(2, 8, 8, 4),
        expected_output_shape=(2, 4, 4, 4),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
    )


def test_builders_use_it_under_keras3_only():
    layer = depthwise_conv2d_layer(3, padding="same")
    assert type(layer) is (keras.layers.DepthwiseConv2D if LEGACY_KERAS else DepthwiseConv2D)


@pytest.mark.parametrize(
    "kernel, strides, padding, hw, multiplier, max_taps",
    [(7, 1, "same", (13, 11), 1, 25), (9, 2, "same", (15, 14), 2, 25), (31, 1, "same", (9, 10), 1, 25),
     ((5, 9), 2, "valid", (12, 13), 1, 25), (7, 1, "valid", (9, 9), 1, 4), (3, 1, "same", (6, 6), 1, 25),
     (5, 2, "same", (11, 12), 1, 1), (7, 2, "same", (2, 3), 1, 25), (9, 1, "same", (1, 1), 2, 25)],
)
def test_tiled_depthwise_equals_tf_depthwise(kernel, strides, padding, hw, multiplier, max_taps):
    x = tf.constant(random_array((2,) + hw + (6,)))
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    w = tf.constant(random_array((kh, kw, 6, multiplier), seed=1))
    strides = (strides, strides) if isinstance(strides, int) else strides
    expected = tf.nn.depthwise_conv2d(x, w, (1,) + strides + (1,), padding.upper())
    got = depthwise_ops.depthwise_conv2d_tiled(x, w, strides, padding, max_taps)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4)
    spec = tf.TensorSpec((None, None, None, 6))
    dynamic = tf.function(lambda t: depthwise_ops.depthwise_conv2d_tiled(t, w, strides, padding, max_taps),
                          input_signature=[spec])
    np.testing.assert_allclose(dynamic(x).numpy(), expected.numpy(), atol=1e-4)
    # Every piece is a depthwise conv of at most max_taps taps; the pieces cover, once, every
    # tap that meets the input (all of them with unknown sizes; with known sizes, "same" drops
    # the taps that only ever see padding: here those of the 31x31 kernel on 9x10).
    def pieces(fn, *args):
        graph = fn.get_concrete_function(*args).graph
        return [op.inputs[1].shape for op in graph.get_operations() if op.type == "DepthwiseConv2dNative"]

    def reached(n, k, stride):
        out = -(-n // stride) if padding == "same" else (n - k) // stride + 1
        before = max((out - 1) * stride + k - n, 0) // 2 if padding == "same" else 0
        return sum(any(0 <= stride * i + a - before < n for i in range(out)) for a in range(k))

    dynamic_pieces = pieces(dynamic)
    assert all(shape[0] * shape[1] <= max_taps for shape in dynamic_pieces)
    assert len(dynamic_pieces) == depthwise_ops.depthwise_tile_count((kh, kw), max_taps)
    assert sum(shape[0] * shape[1] for shape in dynamic_pieces) == kh * kw
    static = tf.function(lambda t: depthwise_ops.depthwise_conv2d_tiled(t, w, strides, padding, max_taps))
    static_pieces = pieces(static, tf.TensorSpec(x.shape))
    assert all(shape[0] * shape[1] <= max_taps for shape in static_pieces)
    assert sum(shape[0] * shape[1] for shape in static_pieces) == (
        reached(hw[0], kh, strides[0]) * reached(hw[1], kw, strides[1]))
    np.testing.assert_allclose(static(x).numpy(), expected.numpy(), atol=1e-4)


@pytest.mark.parametrize("kernel, max_taps, expected", [((7, 7), 25, 3), ((9, 9), 25, 4), ((13, 13), 25, 9),
                                                      ((31, 31), 25, 44), ((33, 33), 25, 49), ((1, 64), 25, 3),
                                                      ((5, 5), 25, 1), ((6, 5), 4, 9)])
def test_tiled_depthwise_uses_the_fewest_rectangular_pieces(kernel, max_taps, expected):
    # No grid of equal h x w pieces (h * w <= max_taps) covers the kernel in fewer.
    fewest = min(-(-kernel[0] // h) * -(-kernel[1] // w) for h in range(1, max_taps + 1)
                 for w in range(1, max_taps // h + 1))
    assert depthwise_ops.depthwise_tile_count(kernel, max_taps) == fewest == expected


def test_tiled_depthwise_adds_the_pieces_smallest_first_with_tap_weights():
    x = tf.constant(random_array((1, 12, 12, 3)))
    w = tf.constant(random_array((9, 9, 3, 1), seed=1))
    weights = np.abs(w.numpy()).sum(axis=(2, 3))
    fn = tf.function(lambda t: depthwise_ops.depthwise_conv2d_tiled(t, w, tap_weights=weights))
    graph = fn.get_concrete_function(tf.TensorSpec(x.shape)).graph
    # The kernel slices in graph order, found back in the kernel by value.
    slices = [op.inputs[1] for op in graph.get_operations() if op.type == "DepthwiseConv2dNative"]
    sums = []
    for sliced in slices:
        begin = sliced.op.inputs[1]
        start = tf.get_static_value(begin)
        h, wd = sliced.shape[:2]
        sums.append(weights[start[0] : start[0] + h, start[1] : start[1] + wd].sum())
    assert len(sums) == 4 and sums == sorted(sums)
    expected = tf.nn.depthwise_conv2d(x, w, (1, 1, 1, 1), "SAME")
    np.testing.assert_allclose(fn(x).numpy(), expected.numpy(), atol=1e-4)


def test_tiled_depthwise_rejects_bad_arguments():
    x, w = tf.zeros((1, 8, 8, 2)), tf.zeros((7, 7, 2, 1))
    with pytest.raises(ValueError, match="padding"):
        depthwise_ops.depthwise_conv2d_tiled(x, w, padding="full")
    for bad in (0, 2.5, True, "25"):
        with pytest.raises(ValueError, match="max_taps"):
            depthwise_ops.depthwise_conv2d_tiled(x, w, max_taps=bad)
    with pytest.raises(ValueError, match="tap_weights"):
        depthwise_ops.depthwise_conv2d_tiled(x, w, tap_weights=np.ones((7, 6)))


# --- the kernel gradient of training steps (ops.depthwise.depthwise_conv2d_trainable) ---------------------------

@pytest.mark.parametrize(
    "kernel, padding, shape",
    [(5, "same", (2, 9, 11, 6)), ((7, 3), "valid", (3, 12, 10, 4)), (4, "same", (2, 8, 8, 3)),
     (31, "same", (1, 8, 8, 2)), ((1, 13), "same", (2, 5, 16, 3))],
)
def test_filter_gradient_equals_tensorflows_backprop_filter(kernel, padding, shape):
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = tf.constant(random_array(shape, seed=1))
    out_shape = tf.nn.depthwise_conv2d(x, tf.zeros(kernel + (shape[-1], 1)), [1, 1, 1, 1], padding.upper()).shape
    dy = tf.constant(random_array(out_shape, seed=2))
    expected = tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
        input=x, filter_sizes=list(kernel) + [shape[-1], 1], out_backprop=dy, strides=[1, 1, 1, 1],
        padding=padding.upper())
    got = depthwise_ops.depthwise_filter_gradient(x, dy, kernel, padding)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


def test_filter_gradient_with_unknown_batch_and_size():
    fn = tf.function(lambda x, dy: depthwise_ops.depthwise_filter_gradient(x, dy, (7, 7)),
                     input_signature=[tf.TensorSpec((None, None, None, 4))] * 2)
    x, dy = tf.constant(random_array((3, 6, 9, 4), seed=3)), tf.constant(random_array((3, 6, 9, 4), seed=4))
    expected = tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
        input=x, filter_sizes=[7, 7, 4, 1], out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME")
    np.testing.assert_allclose(fn(x, dy).numpy(), expected.numpy(), rtol=1e-5, atol=1e-4)


def test_fast_filter_gradient_rule():
    applies = depthwise_ops.fast_filter_gradient_applies
    assert applies((5, 5)) and applies((7, 7)) and applies((31, 31)) and applies((1, 13))
    assert not applies((3, 3))  # TensorFlow's own kernel is faster there
    assert not applies((7, 7), strides=(2, 2)) and not applies((7, 7), dilation_rate=(2, 2))
    assert not applies((7, 7), multiplier=2)
    assert not tf.function(lambda: tf.constant(applies((7, 7))), jit_compile=True)()  # XLA: the shifted form


@pytest.mark.skipif(LEGACY_KERAS, reason="layers.DepthwiseConv2D under Keras 3 (tf_keras builds use Keras' own)")
@pytest.mark.parametrize("kernel, strides, padding", [(7, 1, "same"), (5, 1, "valid"), (3, 1, "same"), (7, 2, "same")])
def test_layer_training_step_takes_the_fast_gradient_only_where_it_applies(monkeypatch, kernel, strides, padding):
    calls = []
    real = depthwise_ops.depthwise_filter_gradient

    def recording(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(depthwise_ops, "depthwise_filter_gradient", recording)
    layer = DepthwiseConv2D(kernel, strides=strides, padding=padding, activation="relu")
    x = tf.constant(random_array((2, 11, 10, 5), seed=5))
    layer(x)

    def step(training):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(tf.square(y - 0.1))
        return [y] + tape.gradient(loss, [x] + layer.trainable_weights)

    expected = step(False)  # Keras' layer: TensorFlow's own gradient ops
    assert not calls
    got = step(True)
    assert calls == ([(kernel, kernel)] if kernel > 3 and strides == 1 else [])
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5 * float(np.abs(b).max()))
    calls.clear()
    layer.trainable = False
    step(True)
    assert not calls  # a frozen kernel needs no gradient


@pytest.mark.skipif(LEGACY_KERAS, reason="tf_keras builds use Keras' own DepthwiseConv2D (tfmot)")
def test_convnext_fit_uses_the_fast_gradient_and_matches_keras_gradients(monkeypatch):
    """A training step of ConvNeXt's test twin: the kernel gradients equal TensorFlow's own (training=False path)."""
    import keras_convzoo as kcz

    spec = kcz.get_spec("convnext_tiny")
    model = kcz.create_model("convnext_tiny", input_shape=(32, 32, 3), classes=4, classifier_activation=None,
                             weights=None, **spec.test_overrides)
    x, y = tf.constant(random_array((2, 32, 32, 3), seed=6)), tf.constant([1, 3])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    kernels = [w for w in model.trainable_weights if "dw_conv" in w.path and w.path.endswith("kernel")]
    assert kernels

    def gradients(training):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=training))
        return tape.gradient(loss, kernels)

    calls = []
    real = depthwise_ops.depthwise_filter_gradient
    monkeypatch.setattr(depthwise_ops, "depthwise_filter_gradient", lambda *a: calls.append(1) or real(*a))
    fast = gradients(True)
    assert len(calls) == len(kernels)
    monkeypatch.setattr(depthwise_ops, "fast_filter_gradient_applies", lambda *a, **k: False)
    monkeypatch.setattr("keras_convzoo.layers.depthwise_conv2d.fast_filter_gradient_applies", lambda *a, **k: False)
    reference = gradients(True)  # the same step through TensorFlow's DepthwiseConv2dNativeBackpropFilter
    for a, b in zip(fast, reference):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5 * float(np.abs(b).max()))
