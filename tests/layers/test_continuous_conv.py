"""MAGNet, CKConv, FlexConv, SeparableFlexConv: layer contract, crop, init, resolution, precision."""

import numpy as np
import pytest

from keras_convzoo.backend import keras, tf
from keras_convzoo.layers import CKConv, FlexConv, KernelMLP, MAGNet, SeparableFlexConv
from keras_convzoo.ops.grids import crop_sizes
from keras_convzoo.testing import run_layer_test

SMALL = dict(kernel_hidden=8, omega_0=50.0, seed=1)


def test_magnet_layer_contract():
    run_layer_test(MAGNet, {"out_channels": 5, "hidden": 8, "omega_0": 10.0, "seed": 0}, (11, 2), (11, 5),
                   expected_num_trainable_weights=4 * 4 + 2 * 3 + 2)


@pytest.mark.parametrize("activation", ["sine", "gelu"])
def test_kernel_mlp_layer_contract_and_output_scale(activation):
    run_layer_test(KernelMLP, {"out_channels": 5, "hidden": 8, "activation": activation, "seed": 0}, (11, 2), (11, 5),
                   expected_num_trainable_weights=2 * 3 + 2)
    net = KernelMLP(64, hidden=64, activation=activation, output_scale=0.01, seed=1)
    net(tf.zeros((4, 1)))
    assert float(np.var(np.array(net.output_kernel))) == pytest.approx(0.01 / 64, rel=0.15)


def test_siren_kernel_network_in_a_flex_conv():
    layer = SeparableFlexConv(4, kernel_size=33, kernel_network="siren", omega_0=30.0, mask_init=0.3, seed=2)
    y = layer(tf.random.normal((2, 16, 16, 3), seed=4))
    assert isinstance(layer.kernel_network, KernelMLP) and layer.kernel_network.activation == "sine"
    assert y.shape == (2, 16, 16, 4) and np.isfinite(y.numpy()).all()
    clone = SeparableFlexConv.from_config(layer.get_config())
    assert clone.get_config()["kernel_network"] == "siren"
    with pytest.raises(ValueError, match="kernel_network"):
        SeparableFlexConv(4, kernel_network="fourier")


@pytest.mark.parametrize(
    "cls, kwargs, input_shape, weights",
    [
        (SeparableFlexConv, dict(kernel_size=9, mask_init=0.3), (2, 12, 10, 3), 4 + 24),
        (SeparableFlexConv, dict(kernel_size="same", causal=True), (2, 40, 3), 4 + 24),
        (FlexConv, dict(kernel_size=7, mask_init=0.5), (2, 9, 3), 2 + 24),
        (CKConv, dict(kernel_size=5), (1, 6, 5, 7, 2), 1 + 24),
    ],
)
def test_continuous_conv_layer_contract(cls, kwargs, input_shape, weights):
    run_layer_test(cls, dict(filters=4, **SMALL, **kwargs), input_shape, input_shape[:-1] + (4,),
                   expected_num_trainable_weights=weights, expected_num_non_trainable_weights=0)


def test_kernel_follows_the_crop_of_the_learned_width():
    layer = SeparableFlexConv(4, kernel_size=33, mask_init=0.075, **SMALL)
    layer(tf.zeros((1, 16, 16, 3)))
    assert tuple(layer.kernel().shape) == (5, 5, 3)
    layer.mask_width.assign([0.3, 0.1])
    assert list(layer.kernel().shape[:2]) == crop_sizes([0.3, 0.1], [33, 33], causal=False) == [21, 7]
    causal = SeparableFlexConv(4, kernel_size=784, causal=True, **SMALL)
    causal(tf.zeros((1, 784, 1)))
    assert tuple(causal.kernel().shape) == (65, 1)  # the reference's 65 taps at 784


def test_no_state_changes_in_call():
    layer = SeparableFlexConv(4, kernel_size=17, causal=True, **SMALL)
    x = tf.random.normal((2, 17, 3))
    layer(x)
    before = [np.array(w) for w in layer.weights]
    for training in (True, False, None):
        layer(x, training=training)
    for old, new in zip(before, layer.weights):
        np.testing.assert_array_equal(old, np.array(new))


@pytest.mark.parametrize("separable", [True, False])
def test_output_layer_is_scaled_by_one_over_taps_once_at_build(separable):
    cls = SeparableFlexConv if separable else FlexConv
    layer = cls(64, kernel_size=33, mask_init=0.2, kernel_hidden=64, omega_0=10.0, seed=4)
    layer(tf.zeros((1, 8, 8, 64)))
    taps = int(np.prod(crop_sizes([0.2, 0.2], [33, 33], causal=False)))
    expected = 1.0 / taps if separable else 1.0 / (64 * taps)
    assert layer.kernel_network.output_scale == pytest.approx(expected)
    variance = float(np.var(np.array(layer.kernel_network.output_kernel)))
    assert variance == pytest.approx(expected / 64, rel=0.15)  # uniform init: var = scale / hidden


def test_direct_and_fft_paths_agree():
    x = tf.random.normal((2, 300, 3), seed=1)
    outputs = []
    for method in ("direct", "fft", "auto"):
        layer = SeparableFlexConv(4, kernel_size=300, causal=True, mask_init=0.5, conv_method=method, **SMALL)
        outputs.append(layer(x).numpy())
        assert layer.kernel().shape[0] > 50  # the auto rule takes the FFT here
    scale = np.abs(outputs[0]).max()
    assert np.abs(outputs[1] - outputs[0]).max() <= 1e-5 * scale
    np.testing.assert_array_equal(outputs[2], outputs[1])


def _traced_op_types(layer, input_shape, training):
    fn = tf.function(lambda x: layer(x, training=training))
    graph_def = fn.get_concrete_function(tf.TensorSpec((None,) + tuple(input_shape[1:]))).graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types |= {node.op for node in function.node_def}
    return types


@pytest.mark.parametrize(
    "input_shape, grid, fft_possible",
    [((2, 64, 3), 32, False), ((2, 64, 3), 33, True), ((2, 16, 16, 3), 13, False), ((2, 16, 16, 3), 15, True)],
)
def test_fft_branch_is_traced_only_when_some_kernel_can_exceed_the_threshold(input_shape, grid, fft_possible):
    """The crop only shrinks the grid: with at most 32 (1D) / 13 (2D) taps the FFT never runs, so it is not traced."""
    causal = len(input_shape) == 3
    layer = SeparableFlexConv(4, kernel_size=grid, causal=causal, mask_init=1.0, **SMALL)
    x = tf.random.normal(input_shape, seed=2)
    y = layer(x)
    assert layer.max_kernel_taps(input_shape) == [grid] * (len(input_shape) - 2)
    for training in (False, True):
        types = _traced_op_types(layer, input_shape, training)
        assert bool(types & {"RFFT", "RFFT2D", "IRFFT", "IRFFT2D"}) == fft_possible, types
        assert bool(types & {"If", "StatelessIf"}) == fft_possible, types
    direct = SeparableFlexConv(4, kernel_size=grid, causal=causal, mask_init=1.0, conv_method="direct", **SMALL)
    direct(x)
    direct.set_weights(layer.get_weights())
    np.testing.assert_allclose(y.numpy(), direct(x).numpy(), atol=1e-5 * np.abs(y.numpy()).max())


def test_continuous_resolution_bounds_the_kernel_by_the_scaled_grid():
    layer = SeparableFlexConv(4, kernel_size=9, resolution="continuous", train_size=16, mask_init=1.0, **SMALL)
    layer(tf.zeros((1, 16, 16, 3)))
    for size in (16, 24, 40, 41):
        bound = layer.max_kernel_taps((None, size, size, 3))
        taps = layer.kernel(tf.zeros((1, size, size, 3))).shape[:2]
        assert all(t <= b <= t + 1 for t, b in zip(taps, bound)), (size, taps, bound)  # mask 1.0: no crop
    assert layer.max_kernel_taps((None, None, None, 3)) is None


def test_3d_inference_unrolls_the_depth_taps_and_equals_training():
    """Inference unrolls the sum over depth taps to the grid (exportable); training keeps the tf.while_loop."""
    layer = SeparableFlexConv(4, kernel_size=9, mask_init=0.4, **SMALL)
    x = tf.random.normal((2, 7, 6, 5, 3), seed=3)
    inference = layer(x, training=False).numpy()
    assert layer.kernel().shape[:3] == (7, 7, 7)  # cropped below the grid of 9
    np.testing.assert_allclose(inference, layer(x, training=True).numpy(), atol=1e-6)
    infer_types = _traced_op_types(layer, x.shape, False)
    train_types = _traced_op_types(layer, x.shape, True)
    assert not infer_types & {"While", "StatelessWhile"} and train_types & {"While", "StatelessWhile"}


def _signal_1d(n, channels=2):
    t = (np.arange(n) + 0.5) / n
    return np.stack([np.sin(2 * np.pi * t * (k + 1)) + 0.5 * np.cos(6 * np.pi * t) for k in range(channels)], -1)[None]


def _image(n):
    t = (np.arange(n) + 0.5) / n
    return (np.sin(2 * np.pi * t)[:, None] * np.cos(2 * np.pi * t)[None, :])[None, ..., None].repeat(2, -1)


@pytest.mark.parametrize("cls, causal", [(SeparableFlexConv, True), (SeparableFlexConv, False), (CKConv, True)])
def test_continuous_resolution_agrees_across_resolutions_1d(cls, causal):
    """A smooth signal at 64 and 128 samples: outputs agree after pairing samples (the documented tolerance: 3%)."""
    errors = {}
    for mode in ("fixed", "continuous"):
        kwargs = dict(mask_init=0.5) if cls is SeparableFlexConv else {}
        layer = cls(3, kernel_size=65, causal=causal, omega_0=0.3, resolution=mode, train_size=64, seed=3, **kwargs)
        coarse = layer(_signal_1d(64).astype("float32")).numpy()
        fine = layer(_signal_1d(128).astype("float32")).numpy()
        errors[mode] = np.abs(0.5 * (fine[:, 0::2] + fine[:, 1::2]) - coarse).max() / np.abs(coarse).max()
    assert errors["continuous"] < 0.03
    assert errors["fixed"] > 0.3  # the reference behaviour: the kernel shrinks relative to the signal


def test_continuous_resolution_2d():
    layer = SeparableFlexConv(3, kernel_size=17, omega_0=0.3, mask_init=0.5, resolution="continuous",
                              train_size=32, seed=1)
    coarse = layer(_image(32).astype("float32")).numpy()
    fine = layer(_image(64).astype("float32")).numpy()
    pooled = 0.25 * (fine[:, 0::2, 0::2] + fine[:, 1::2, 0::2] + fine[:, 0::2, 1::2] + fine[:, 1::2, 1::2])
    assert np.abs(pooled - coarse).max() / np.abs(coarse).max() < 0.03
    assert tuple(layer.kernel(tf.zeros((1, 64, 64, 2))).shape) == (33, 33, 2)  # (17 - 1) * 2 + 1 points


def test_deploy_form_equals_the_generated_kernel():
    layer = SeparableFlexConv(4, kernel_size=33, mask_init=0.2, **SMALL)
    x = tf.random.normal((2, 20, 18, 3), seed=2)
    expected = layer(x).numpy()
    config = dict(layer.get_config(), **layer.deploy_config())
    baked = SeparableFlexConv.from_config(config)
    baked.build(x.shape)
    baked.set_weights(layer.merged_weights())
    assert not hasattr(baked, "kernel_network")
    np.testing.assert_allclose(baked(x).numpy(), expected, atol=1e-5)


def test_mixed_precision_keeps_the_kernel_network_in_float32():
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = SeparableFlexConv(4, kernel_size=33, omega_0=4231.57, mask_init=0.3, seed=5)
        x = tf.random.normal((1, 16, 16, 3), seed=3)
        y = layer(x)
        assert y.dtype == tf.float16
        assert layer.kernel_network.compute_dtype == "float32"
        kernel = layer.kernel()
        assert kernel.dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy(policy)
    reference = SeparableFlexConv.from_config(layer.get_config())
    reference(x)
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(kernel.numpy(), reference.kernel().numpy(), rtol=0, atol=1e-6)  # no float16 phase error
    np.testing.assert_allclose(y.numpy().astype("float32"), reference(x).numpy(), atol=2e-2, rtol=2e-2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="conv_method"):
        FlexConv(4, conv_method="winograd")
    with pytest.raises(ValueError, match="resolution"):
        FlexConv(4, resolution="adaptive")
    with pytest.raises(ValueError, match="kernel_size"):
        FlexConv(4, kernel_size=0)
    with pytest.raises(ValueError, match="mask_threshold"):
        SeparableFlexConv(4, mask_threshold=1.5)
    with pytest.raises(ValueError, match="deploy_taps"):
        SeparableFlexConv(4, deploy=True)
    with pytest.raises(ValueError, match="causal"):
        SeparableFlexConv(4, kernel_size=9, causal=True)(tf.zeros((1, 8, 8, 2)))
    with pytest.raises(ValueError, match="kernel_size='same'"):
        keras.Sequential([keras.Input((None, 2)), SeparableFlexConv(4)])
    with pytest.raises(ValueError, match="train_size"):
        keras.Sequential([keras.Input((None, None, 2)), SeparableFlexConv(4, kernel_size=9, resolution="continuous")])
    with pytest.raises(ValueError, match="odd"):
        CKConv(4, kernel_size=8)(tf.zeros((1, 8, 2)))
