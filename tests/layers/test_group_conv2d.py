import numpy as np
import pytest

from keras_convzoo.backend import LEGACY_KERAS, keras, tf
from keras_convzoo.layers import GroupConv2D
from keras_convzoo.layers import group_conv2d
from keras_convzoo.layers.group_conv2d import IMPLEMENTATIONS
from keras_convzoo.testing import run_layer_test

CASES = [
    # in_ch, filters, groups, kernel, strides, padding, dilation
    (16, 16, 4, 3, 1, "same", 1),
    (16, 32, 8, 3, 2, "valid", 1),
    (12, 24, 3, 3, 1, "valid", 2),
    (8, 8, 8, 3, 1, "same", 1),  # depthwise
    (8, 16, 1, 1, 1, "same", 1),  # dense
    (32, 32, 4, (3, 1), (2, 1), "same", 1),  # unequal strides -> native fallback
]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_matches_keras_grouped_conv2d(case, implementation):
    in_ch, filters, groups, kernel, strides, padding, dilation = case
    x = np.random.default_rng(1).standard_normal((2, 11, 13, in_ch)).astype("float32")
    ours = GroupConv2D(
        filters, kernel, strides=strides, padding=padding, groups=groups,
        dilation_rate=dilation, implementation=implementation,
    )
    reference = keras.layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, groups=groups, dilation_rate=dilation
    )
    expected = reference(x)
    ours.build(x.shape)
    ours.set_weights([w + 0.1 for w in reference.get_weights()])
    reference.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(x).numpy(), reference(x).numpy(), atol=2e-5, rtol=1e-5)
    assert ours(x).shape == expected.shape


def test_auto_picks_native_where_the_cpu_trains_it(monkeypatch):
    monkeypatch.setattr(group_conv2d, "cpu_grouped_conv_supported", lambda: True)
    for channels in (128, 512):
        layer = GroupConv2D(channels, 3, groups=32)
        layer.build((None, 8, 8, channels))
        assert layer.resolved_implementation == "native"


def test_probe_matches_what_the_cpu_kernels_do():
    # The probe answers what a grouped conv's gradient does in this process; without oneDNN (a fresh
    # process with TF_ENABLE_ONEDNN_OPTS=0) it is False and "auto" trains through the other lowerings.
    import os
    import subprocess
    import sys

    def gradient_works():
        x, kernel = tf.ones((1, 6, 6, 8)), tf.ones((3, 3, 2, 8))
        try:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.nn.conv2d(x, kernel, 1, "SAME")
            tape.gradient(y, x).numpy()
            return True
        except tf.errors.InvalidArgumentError:
            return False

    assert group_conv2d.cpu_grouped_conv_supported() == gradient_works()
    code = (
        "import tensorflow as tf\n"
        "from keras_convzoo.layers import GroupConv2D, group_conv2d\n"
        "layer = GroupConv2D(64, 3, groups=32, padding='same')\n"
        "x = tf.random.normal((2, 8, 8, 64))\n"
        "with tf.GradientTape() as tape:\n"
        "    tape.watch(x)\n"
        "    y = layer(x)\n"
        "g = tape.gradient(y, x)\n"
        "print(group_conv2d.cpu_grouped_conv_supported(), layer.resolved_implementation, g.shape)\n"
    )
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == "False depthwise (2, 8, 8, 64)"


def test_auto_picks_depthwise_for_narrow_groups_without_native(monkeypatch):
    monkeypatch.setattr(group_conv2d, "cpu_grouped_conv_supported", lambda: False)
    narrow = GroupConv2D(128, 3, groups=32)
    narrow.build((None, 8, 8, 128))
    assert narrow.resolved_implementation == "depthwise"
    wide = GroupConv2D(512, 3, groups=32)
    wide.build((None, 8, 8, 512))
    assert wide.resolved_implementation == "split"
    dense = GroupConv2D(16, 3)
    dense.build((None, 8, 8, 16))
    assert dense.resolved_implementation == "native"


@pytest.mark.parametrize("implementation", ["auto", "depthwise"])
def test_layer_contract(implementation):
    run_layer_test(
        GroupConv2D,
        {"filters": 8, "kernel_size": 3, "groups": 4, "padding": "same", "implementation": implementation},
        input_shape=(2, 9, 7, 8),
        expected_output_shape=(2, 9, 7, 8),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
    )
    run_layer_test(
        GroupConv2D,
        {"filters": 12, "kernel_size": 3, "strides": 2, "groups": 3, "use_bias": False},
        input_shape=(1, 9, 10, 6),
        expected_output_shape=(1, 4, 4, 12),
        expected_num_trainable_weights=1,
    )


@pytest.mark.parametrize("implementation", ["auto", "depthwise", "split", "dense"])
def test_gradients_match_keras(implementation):
    """Every trainable lowering gives Keras' gradients (wide groups too, on CPU)."""
    x = np.random.default_rng(0).standard_normal((2, 7, 7, 32)).astype("float32")
    ours = GroupConv2D(32, 3, groups=2, padding="same", implementation=implementation)
    reference = keras.layers.Conv2D(32, 3, groups=2, padding="same")
    reference(x)
    ours(x)
    ours.set_weights(reference.get_weights())
    x_var = tf.Variable(x)
    grads = []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(layer(x_var)))
        grads.append(tape.gradient(loss, [x_var] + layer.trainable_weights))
    for g_ours, g_ref in zip(*grads):
        np.testing.assert_allclose(g_ours.numpy(), g_ref.numpy(), atol=1e-4, rtol=1e-4)


def test_dynamic_spatial_size():
    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, GroupConv2D(8, 3, padding="same", groups=2)(inputs))
    for hw in [(5, 7), (16, 3)]:
        assert model(np.zeros((3,) + hw + (8,), "float32")).shape == (3,) + hw + (8,)


@pytest.mark.skipif(LEGACY_KERAS, reason="Keras 3 mixed-precision policy API")
def test_mixed_precision_output_dtype():
    layer = GroupConv2D(8, 3, groups=4, dtype="mixed_float16")
    y = layer(np.ones((1, 6, 6, 8), "float32"))
    assert y.dtype == "float16"
    assert layer.kernel.dtype == "float32"


def test_bad_arguments():
    with pytest.raises(ValueError, match="groups.*divide.*filters"):
        GroupConv2D(10, 3, groups=4)
    with pytest.raises(ValueError, match="input channels"):
        GroupConv2D(8, 3, groups=4)(np.zeros((1, 5, 5, 6), "float32"))
    with pytest.raises(ValueError, match="implementation"):
        GroupConv2D(8, 3, implementation="fast")
    with pytest.raises(ValueError, match="padding"):
        GroupConv2D(8, 3, padding="causal")
    with pytest.raises(ValueError, match="kernel_size"):
        GroupConv2D(8, (3, 3, 3))
    with pytest.raises(ValueError, match="filters"):
        GroupConv2D(0, 3)
    with pytest.raises(ValueError, match="strides"):
        GroupConv2D(8, 3, strides=2, dilation_rate=2)


@pytest.mark.parametrize(
    "groups, strides, padding, expected",
    [(16, 1, "same", "shifted"), (4, 2, "same", "split"), (2, 1, "valid", "native"), (32, 2, "valid", "shifted")],
)
def test_xla_cpu_lowering_rule_and_equality(monkeypatch, groups, strides, padding, expected):
    """Under jit_compile on CPU, "auto" follows XLA_CPU_RULE and gives the same values and gradients."""
    from keras_convzoo.layers import group_conv2d as module

    calls = []
    original = module.depthwise_conv2d_shifted
    monkeypatch.setattr(module, "depthwise_conv2d_shifted", lambda *a, **k: calls.append(1) or original(*a, **k))
    layer = GroupConv2D(64, 3, strides=strides, padding=padding, groups=groups, bias_initializer="random_normal")
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 9, 9, 64)).astype("float32"))
    layer(x)
    assert layer._xla_cpu_implementation() is None  # eager: the graph-mode rule

    def values_and_grads(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = layer(t)
            loss = tf.reduce_sum(tf.square(y))
        return [y] + tape.gradient(loss, [t] + layer.trainable_weights)

    seen = []
    monkeypatch.setattr(module.GroupConv2D, "_xla_cpu_implementation",
                        lambda self, f=module.GroupConv2D._xla_cpu_implementation: seen.append(f(self)) or seen[-1])
    expected_values = values_and_grads(x)
    got = tf.function(values_and_grads, jit_compile=True)(x)
    if not tf.config.list_logical_devices("GPU"):
        assert seen[-1] == expected and (len(calls) > 0) == (expected == "shifted")
    for a, b in zip(got, expected_values):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
