"""RepLKNet against the official PyTorch code (fixture), its blocks, deploy form and fusion."""

from pathlib import Path

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.backend import keras
from keras_convzoo.layers import ReparamLargeKernelConv

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "replknet_official_tiny.npz"
TINY = dict(depths=(1, 1, 2, 1), channels=(8, 16, 24, 32), large_kernel_sizes=(7, 7, 5, 3), small_kernel=3)


def _conv(w, depthwise):
    return w.transpose(2, 3, 0, 1) if depthwise else w.transpose(2, 3, 1, 0)


def _official_weights(layer, state):
    """Our layer's weights from the official state dict (tools/make_replknet_fixture.py)."""

    def bn(prefix):
        return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]

    name = layer.name
    if name.startswith("stem_"):
        index = int(name[-1]) - 1
        if "_bn" in name:
            return bn(f"stem.{index}.bn")
        return [_conv(state[f"stem.{index}.conv.weight"], depthwise=index in (1, 3))]
    if name == "final_bn":
        return bn("norm")
    if name == "predictions":
        return [state["head.weight"].T, state["head.bias"]]
    stage, second, *rest = name.split("_")
    stage = int(stage[len("stage"):]) - 1
    if second == "transition":
        prefix = f"transitions.{stage - 1}.{int(rest[0][-1]) - 1}"
        if rest[0].startswith("bn"):
            return bn(f"{prefix}.bn")
        return [_conv(state[f"{prefix}.conv.weight"], depthwise=rest[0] == "conv2")]
    kind, part = rest[0], "_".join(rest[1:])
    base = f"stages.{stage}.blocks.{2 * (int(second[len('block'):]) - 1) + (kind == 'ffn')}"
    if part == "pre_bn":
        return bn(f"{base}.{'prelkb_bn' if kind == 'replk' else 'preffn_bn'}")
    if part == "large_kernel":
        lk = f"{base}.large_kernel"
        return [
            _conv(state[f"{lk}.lkb_origin.conv.weight"], True),
            _conv(state[f"{lk}.small_conv.conv.weight"], True),
        ] + bn(f"{lk}.lkb_origin.bn") + bn(f"{lk}.small_conv.bn")
    module, kind_of = part.rsplit("_", 1)
    if kind_of == "bn":
        return bn(f"{base}.{module}.bn")
    return [_conv(state[f"{base}.{module}.conv.weight"], False)]


@pytest.fixture(scope="module")
def official():
    data = np.load(FIXTURE)
    state = {k[len("state/"):]: data[k] for k in data.files if k.startswith("state/")}
    model = kcz.create_model(
        "replknet31_base", input_shape=(None, None, 3), classes=10, classifier_activation=None, **TINY
    )
    used = 0
    for layer in model.layers:
        if layer.weights:
            weights = _official_weights(layer, state)
            layer.set_weights(weights)
            used += len(weights)
    assert used == len(state)  # every official tensor mapped exactly once
    return model, data["input"].transpose(0, 2, 3, 1), data["output"]


def test_outputs_equal_official_code(official):
    model, x, expected = official
    got = model.predict(x, verbose=0)
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_fused_and_deploy_forms_equal_official_code(official):
    model, x, expected = official
    fused = kcz.deploy.fuse(model)
    assert np.abs(fused.predict(x, verbose=0) - expected).max() <= 1e-5 * np.abs(expected).max()
    kinds = {type(l).__name__ for l in fused.layers}
    assert [l.name for l in fused.layers if type(l).__name__ == "BatchNormalization"] == ["final_bn"]
    assert all(l.deploy for l in fused.layers if isinstance(l, ReparamLargeKernelConv))
    assert "ReparamLargeKernelConv" in kinds

    deployed = kcz.create_model(
        "replknet31_base", input_shape=(None, None, 3), classes=10, classifier_activation=None,
        deploy=True, **TINY,
    )
    for layer in deployed.layers:
        source = model.get_layer(layer.name)
        if isinstance(layer, ReparamLargeKernelConv):
            layer.set_weights(source.merged_weights())
        elif layer.weights:
            layer.set_weights(source.get_weights())
    got = deployed.predict(x, verbose=0)
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_block_layer_names_and_shapes():
    inputs = keras.Input((None, None, 16))
    y = kcz.blocks.replk_block(inputs, kernel_size=7, small_kernel=3, dw_ratio=1.5, name="b_replk")
    y = kcz.blocks.conv_ffn_block(y, ffn_ratio=2, drop_path_rate=0.1, name="b_ffn")
    model = keras.Model(inputs, y)
    names = [l.name for l in model.layers[1:]]
    assert names == [
        "b_replk_pre_bn", "b_replk_pw1_conv", "b_replk_pw1_bn", "b_replk_pw1_relu", "b_replk_large_kernel",
        "b_replk_lk_relu", "b_replk_pw2_conv", "b_replk_pw2_bn", "b_replk_add",
        "b_ffn_pre_bn", "b_ffn_pw1_conv", "b_ffn_pw1_bn", "b_ffn_gelu", "b_ffn_pw2_conv", "b_ffn_pw2_bn",
        "b_ffn_drop_path", "b_ffn_add",
    ]
    assert model.get_layer("b_replk_pw1_conv").filters == 24
    assert model.get_layer("b_ffn_pw1_conv").filters == 32
    for size in ((9, 9), (16, 23)):
        assert model(np.zeros((1, *size, 16), "float32")).shape == (1, *size, 16)


def test_deploy_argument_and_config_errors():
    full = kcz.RepLKNet31B(deploy=True, include_top=False)
    lk = [l for l in full.layers if isinstance(l, ReparamLargeKernelConv)]
    assert len(lk) == 24 and all(l.deploy for l in lk)
    assert [l.kernel_size for l in lk[:1] + lk[2:3] + lk[4:5] + lk[-1:]] == [31, 29, 27, 13]
    with pytest.raises(ValueError, match="large_kernel_sizes"):
        kcz.create_model("replknet31_base", large_kernel_sizes=(31, 29))
    with pytest.raises(ValueError, match="drop_path_rate"):
        kcz.create_model("replknet31_base", drop_path_rate=1.5, **TINY)
