"""CCNN: parity with the official code's fixtures, any dimensionality and size, init scale, training."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.backend import keras
from keras_convzoo.applications import port_ccnn
from keras_convzoo.weights import WeightsMismatchError

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "ccnn_reference"
#: The official-code cases of ``../shared/fixtures/ccnn_reference`` (its README). Listed here, not globbed:
#: a missing or incomplete folder fails these tests instead of leaving them with no case to run.
CASES = ("ccnn_1d_causal_fft", "ccnn_1d_causal_small", "ccnn_2d_cropped", "ccnn_2d_full_kernel")
#: ``=1``: run without the fixtures folder; the tests that read it then skip and say why (an explicit opt-out).
NO_FIXTURES_ENV = "KERAS_CONVZOO_NO_CCNN_FIXTURES"


def _skip_if_opted_out():
    if os.environ.get(NO_FIXTURES_ENV) == "1":
        pytest.skip(f"{NO_FIXTURES_ENV}=1: the official CCNN fixtures ({FIXTURES}) are not checked")


def test_official_fixtures_folder_is_complete():
    _skip_if_opted_out()
    assert FIXTURES.is_dir(), (
        f"The official CCNN parity fixtures are missing: {FIXTURES} (the shared fixtures folder beside the "
        f"checkout). Provide it, or set {NO_FIXTURES_ENV}=1 to run without the parity cases."
    )
    assert sorted(p.stem for p in FIXTURES.glob("*.json")) == list(CASES)
    assert sorted(p.stem for p in FIXTURES.glob("*.npz")) == list(CASES)


def _fixture(case):
    _skip_if_opted_out()
    config = json.loads((FIXTURES / f"{case}.json").read_text())
    data = np.load(FIXTURES / f"{case}.npz")
    state = {k: data[k] for k in data.files if k not in ("input", "output")}
    return config, state, np.moveaxis(data["input"], 1, -1), data["output"]


def _model_for(config, **kwargs):
    size = config["kernel_size"] if config["kernel_size"] != "same" else config["spatial"][0]
    return kcz.CCNN(
        input_shape=(None,) * config["dim"] + (config["in_channels"],), classes=config["classes"],
        classifier_activation=None, depth=config["depth"], width=config["width"],
        kernel_hidden=config["kernel_hidden"], kernel_size=size, causal=config["causal"],
        omega_0=config["omega_0"], mask_init=config["mask_init"], **kwargs,
    )


@pytest.mark.parity
@pytest.mark.parametrize("case", CASES)
def test_official_fixture_outputs_reproduced(case):
    config, state, x, expected = _fixture(case)
    model = port_ccnn(_model_for(config), state)
    assert kcz.profile.count_params(model)["trainable"] == config["params"]
    got = model.predict(x, verbose=0)
    assert np.abs(got - expected).max() / np.abs(expected).max() <= config["tolerance_rel"]
    for name, taps in config["kernel_taps_after_crop"].items():
        layer = model.get_layer("stem_conv" if name == "conv1" else f"block{int(name.split('.')[1]) + 1}_conv")
        assert list(layer.kernel().shape[:-1]) == taps


@pytest.mark.parity
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_fixture_with_forced_conv_method_and_weights_file(method, tmp_path):
    from safetensors.numpy import save_file

    config, state, x, expected = _fixture("ccnn_1d_causal_fft")
    path = tmp_path / "official.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path))
    model = _model_for(config, conv_method=method, weights=str(path))
    got = model.predict(x, verbose=0)
    assert np.abs(got - expected).max() / np.abs(expected).max() <= config["tolerance_rel"]
    fused = kcz.deploy.fuse(model)
    assert np.abs(fused.predict(x, verbose=0) - expected).max() / np.abs(expected).max() <= config["tolerance_rel"]


def test_port_refuses_mismatches_and_leaves_the_model_unchanged():
    config, state, _, _ = _fixture("ccnn_2d_cropped")
    model = _model_for(dict(config, kernel_size=31))  # the checkpoint's grid is 33
    before = [np.array(w) for w in model.weights]
    with pytest.raises(WeightsMismatchError, match="kernel_size=33"):
        port_ccnn(model, state)
    model = _model_for(config)
    before = [np.array(w) for w in model.weights]
    broken = dict(state)
    del broken["blocks.1.linear1.bias"]
    with pytest.raises(WeightsMismatchError, match="blocks.1.linear1.bias"):
        port_ccnn(model, broken)
    with pytest.raises(WeightsMismatchError, match="no place"):
        port_ccnn(model, dict(state, extra=np.zeros(3)))
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, np.array(new))
    trunk = kcz.CCNN(input_shape=(None, None, 3), include_top=False, pooling="avg", depth=2, width=16,
                     kernel_hidden=16, kernel_size=33, mask_init=0.075)
    port_ccnn(trunk, {"network." + k: v for k, v in state.items()})  # Lightning prefix, head left out


@pytest.mark.parametrize("name, params", [("ccnn_4_140", 199_117), ("ccnn_6_380", 1_993_983)])
def test_sequence_parameter_counts_equal_reference(name, params):
    model = kcz.create_model(name, input_shape=(1024, 3), classes=10)
    assert kcz.profile.count_params(model)["trainable"] == params


def test_dimensionality_follows_the_input_and_sizes_are_free():
    image = kcz.CCNN(input_shape=(None, None, 3), classes=10, **kcz.get_spec("ccnn_4_140").test_overrides)
    for size in ((32, 32), (64, 64), (100, 37)):
        assert image(np.random.rand(2, *size, 3).astype("float32")).shape == (2, 10)
    sequence = kcz.CCNN(input_shape=(None, 1), classes=4, depth=1, width=8, kernel_hidden=8, kernel_size=64)
    assert sequence.get_layer("stem_conv").causal
    for length in (17, 64, 300):
        assert sequence(np.random.rand(1, length, 1).astype("float32")).shape == (1, 4)
    volume = kcz.CCNN(input_shape=(None, None, None, 2), classes=3, depth=1, width=8, kernel_hidden=8,
                      kernel_size=5, mask_init=0.5)
    assert volume(np.random.rand(1, 6, 7, 5, 2).astype("float32")).shape == (1, 3)
    features = kcz.CCNN(input_shape=(None, 5), include_top=False, depth=1, width=8, kernel_hidden=8, kernel_size=32)
    assert features(np.zeros((2, 40, 5), "float32")).shape == (2, 40, 8)
    with pytest.raises(ValueError, match="2 or 3 or 4 entries"):
        kcz.CCNN(input_shape=(4, 4, 4, 4, 3))
    with pytest.raises(ValueError, match="causal"):
        kcz.CCNN(input_shape=(None, None, 3), causal=True)


def test_sequence_kernel_defaults_to_the_static_length():
    model = kcz.CCNN(input_shape=(784, 1), classes=10, depth=1, width=8, kernel_hidden=8)
    assert model.get_layer("stem_conv").grid_sizes == (784,)
    assert tuple(model.get_layer("stem_conv").kernel().shape) == (65, 1)  # reference: 65 taps at init


@pytest.mark.parametrize("shape", [(1024, 3), (32, 32, 3)])
def test_full_size_logits_have_unit_scale_at_init(shape):
    """The sqrt(1/K) initialisation: ccnn_4_140 logits std in [0.1, 10] on unit-variance inputs."""
    keras.utils.set_random_seed(0)
    model = kcz.CCNN(input_shape=shape, classes=10, classifier_activation=None, seed=0)
    x = np.random.default_rng(0).standard_normal((4,) + shape).astype("float32")
    std = float(model.predict(x, verbose=0).std())
    assert 0.1 <= std <= 10, std


def test_mixed_precision_model():
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = kcz.CCNN(input_shape=(None, None, 3), classes=5, **kcz.get_spec("ccnn_4_140").test_overrides)
        y = model(np.random.rand(2, 16, 16, 3).astype("float32"))
        assert model.get_layer("stem_conv").kernel_network.compute_dtype == "float32"
        assert np.all(np.isfinite(np.array(y, dtype="float32")))
    finally:
        keras.mixed_precision.set_global_policy(policy)


def test_short_training_run_on_digit_sequences_reaches_80_percent():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0 - 0.5).astype("float32").reshape(-1, 64, 1)
    y = digits.target
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    keras.utils.set_random_seed(0)
    model = kcz.CCNN(input_shape=(64, 1), classes=10, depth=2, width=32, kernel_hidden=16, mask_init=0.3,
                     omega_0=10.0, seed=0)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[train], y[train], batch_size=64, epochs=6, verbose=0)  # 132 steps
    accuracy = model.evaluate(x[test], y[test], verbose=0)[1]
    assert accuracy >= 0.8, accuracy
