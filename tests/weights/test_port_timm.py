"""port_timm reproduces timm's logits; weights='imagenet', port-timm and the all-or-nothing checks.

The timm side runs in a subprocess (``timm_reference.py``, see ``conftest.py``):
models with random weights (fixed seed, BatchNorm statistics and affine
parameters randomised, ConvNeXt layer scales O(1)), eval mode, random 64x64
images. The Keras side ports the written state dict and compares logits.
"""

from pathlib import Path

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo import cli
from keras_convzoo.backend import keras
from keras_convzoo.applications import port_timm
from keras_convzoo.weights import WeightsMismatchError, read_state_dict

pytestmark = pytest.mark.parity

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64
TOLERANCE = 1e-4
SHORT_RESNET = (2, 1, 1, 1)  # full widths, fewer blocks (block index 2 and the shortcut-free path stay)
SHORT_CONVNEXT = (1, 1, 2, 1)


def _case(case_id, name, short=None, slow=False):
    """A parity case: the registry model ``name``, full size or with ``short`` depths."""
    timm_kwargs, ours = {}, {}
    if short is not None:
        family = kcz.get_spec(name).family
        timm_kwargs = {"depths" if family == "convnext" else "layers": list(short)}
        ours = {"depths": tuple(short)}
    return {"id": case_id, "name": name, "timm_kwargs": timm_kwargs, "ours": ours, "slow": slow}


FULL = ["resnext50_32x4d", "seresnet50", "mobilenetv2_100", "convnext_tiny", "seresnet18",
        "mobilenetv2_035", "mobilenetv2_050", "mobilenetv2_075", "mobilenetv2_140"]
BIG_RESIDUAL = ["resnext101_32x8d", "seresnet34", "seresnet101", "seresnet152", "seresnext50_32x4d",
                "seresnext101_32x4d"]
BIG_CONVNEXT = ["convnext_small", "convnext_base", "convnext_large", "convnext_xlarge"]
CASES = (
    [_case(name, name) for name in FULL]
    + [_case(f"{name}-short", name, SHORT_RESNET) for name in BIG_RESIDUAL]
    + [_case(f"{name}-short", name, SHORT_CONVNEXT) for name in BIG_CONVNEXT]
    + [_case(name, name, slow=True) for name in BIG_RESIDUAL + BIG_CONVNEXT]
)


def _reference_case(case):
    spec = kcz.get_spec(case["name"])
    return {"id": case["id"], "timm_name": spec.timm_name, "timm_kwargs": case["timm_kwargs"],
            "size": SIZE, "batch": 2, "seed": 0}


@pytest.fixture(scope="module")
def refs(timm_references):
    """Directory with the references of every fast case, made in one subprocess."""
    return timm_references([_reference_case(c) for c in CASES if not c["slow"]])


def _snapshot(model):
    return [np.array(w) for w in model.weights]


def test_every_timm_model_has_a_case():
    timm_models = {n for n in kcz.list_models() if kcz.get_spec(n).timm_name}
    assert timm_models == {c["name"] for c in CASES}
    assert timm_models == set(FULL + BIG_RESIDUAL + BIG_CONVNEXT)


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c["id"], marks=[pytest.mark.slow] if c["slow"] else []) for c in CASES]
)
def test_logits_match_timm(case, request, timm_references, record_property):
    root = timm_references([_reference_case(case)]) if case["slow"] else request.getfixturevalue("refs")
    reference = np.load(root / f"{case['id']}.npz")
    model = kcz.create_model(
        case["name"], weights=str(root / f"{case['id']}.safetensors"), input_shape=(SIZE, SIZE, 3),
        classifier_activation=None, **case["ours"],
    )
    logits = model(reference["inputs"], training=False).numpy()
    diff = float(np.abs(logits - reference["logits"]).max())
    record_property("max_abs_diff", diff)
    print(f"{case['id']}: max |keras - timm| = {diff:.3g} (logits std {reference['logits'].std():.3g})")
    assert reference["logits"].std() > 0.05  # not a flat output
    assert diff <= TOLERANCE


def test_port_timm_cli_writes_a_file_that_loads_by_path(refs, tmp_path, capsys):
    name = "mobilenetv2_035"
    checkpoint = str(refs / f"{name}.safetensors")
    reference = np.load(refs / f"{name}.npz")
    out = tmp_path / "w.weights.h5"
    assert cli.main(["port-timm", name, "--checkpoint", checkpoint, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"porting {name} [" in err
    total = err.rstrip().rsplit(" ", 1)[1]
    assert total.split("/")[0] == total.split("/")[1]  # the bar ends full
    model = kcz.MobileNetV2(alpha=0.35, weights=str(out), input_shape=(None, None, 3), classifier_activation=None)
    assert model.get_layer("stem_conv_pad") is not None  # built with the recorded timm layout (symmetric padding)
    logits = model(reference["inputs"], training=False).numpy()
    np.testing.assert_allclose(logits, reference["logits"], atol=TOLERANCE, rtol=0)
    with pytest.raises(ValueError, match="3 input channels"):
        kcz.MobileNetV2(alpha=0.35, weights="imagenet", include_top=False, input_shape=(64, 64, 1))
    assert cli.main(["port-timm", "ccnn_4_140", "--out", str(tmp_path / "x.weights.h5")]) == 2
    assert "no timm counterpart" in capsys.readouterr().err
    assert cli.main(["port-timm", name, "--checkpoint", checkpoint, "--out", str(tmp_path / "x.h5")]) == 2
    assert "must end with '.weights.h5'" in capsys.readouterr().err


def test_without_top_head_norm_used_or_skipped(refs):
    case = "convnext_base-short"
    checkpoint = str(refs / f"{case}.safetensors")
    inputs = np.load(refs / f"{case}.npz")["inputs"]
    kwargs = {"depths": SHORT_CONVNEXT, "input_shape": (SIZE, SIZE, 3), "weights": checkpoint}
    full = kcz.ConvNeXtBase(**kwargs)
    inside = keras.Model(full.input, [full.get_layer("stage4_block1_add").output,
                                       full.get_layer("head_norm").output])
    feature_map, pooled = (t.numpy() for t in inside(inputs))
    plain = kcz.ConvNeXtBase(include_top=False, **kwargs)  # no head_norm: head.norm and head.fc unused
    np.testing.assert_allclose(plain(inputs).numpy(), feature_map, atol=1e-6, rtol=0)
    avg = kcz.ConvNeXtBase(include_top=False, pooling="avg", **kwargs)  # head.norm used
    np.testing.assert_allclose(avg(inputs).numpy(), pooled, atol=1e-6, rtol=0)


def test_mismatched_checkpoints_are_rejected_and_nothing_changes(refs):
    state = read_state_dict(refs / "mobilenetv2_035.safetensors")
    model = kcz.MobileNetV2(alpha=0.35, input_shape=(SIZE, SIZE, 3), **kcz.get_spec("mobilenetv2_035").timm_config)
    before = _snapshot(model)

    bad = dict(state, **{"blocks.2.1.conv_pwl.weight": state["blocks.2.1.conv_pwl.weight"][:8]})
    with pytest.raises(WeightsMismatchError, match=r"'stage3_block2_project_conv'.*'blocks\.2\.1\.conv_pwl\.weight'"):
        port_timm(model, bad)
    missing = {k: v for k, v in state.items() if k != "blocks.4.0.bn2.running_var"}
    with pytest.raises(WeightsMismatchError, match=r"no 'blocks\.4\.0\.bn2\.running_var'.*'stage5_block1_dw_bn'"):
        port_timm(model, missing)
    with pytest.raises(WeightsMismatchError, match=r"no place.*'blocks\.9\.0\.conv\.weight'"):
        port_timm(model, dict(state, **{"blocks.9.0.conv.weight": np.zeros((1, 1, 1, 1), "float32")}))
    with pytest.raises(WeightsMismatchError, match="resnet|ResNeXt|counterpart|no '"):
        port_timm(model, read_state_dict(refs / "seresnet18.safetensors"))
    for old, new in zip(before, _snapshot(model)):
        np.testing.assert_array_equal(old, new)

    with pytest.raises(WeightsMismatchError, match=r"'predictions'.*'classifier\.weight'"):
        kcz.MobileNetV2(alpha=0.35, classes=10, weights=str(refs / "mobilenetv2_035.safetensors"))


def test_model_not_built_for_timm_is_refused(refs):
    state = read_state_dict(refs / "mobilenetv2_035.safetensors")
    keras_layout = kcz.MobileNetV2(alpha=0.35, input_shape=(SIZE, SIZE, 3))  # keras.applications' padding
    before = _snapshot(keras_layout)
    with pytest.raises(WeightsMismatchError, match=r"'stem_conv'.*padding_mode='torch', bn_epsilon=1e-05"):
        port_timm(keras_layout, state)
    for old, new in zip(before, _snapshot(keras_layout)):
        np.testing.assert_array_equal(old, new)
    with pytest.raises(WeightsMismatchError, match="BatchNorm epsilon 0.001"):
        port_timm(kcz.MobileNetV2(alpha=0.35, input_shape=(SIZE, SIZE, 3), padding_mode="torch"), state)
    with pytest.raises(ValueError, match="padding_mode='torch'.*Received: padding_mode='keras'"):
        kcz.MobileNetV2(alpha=0.35, padding_mode="keras", weights=str(refs / "mobilenetv2_035.safetensors"))
    with pytest.raises(WeightsMismatchError, match="'stem_pool_conv'.*no counterpart"):
        port_timm(kcz.SEResNet18(input_shape=(SIZE, SIZE, 3), downsample="conv"),
                  read_state_dict(refs / "seresnet18.safetensors"))
