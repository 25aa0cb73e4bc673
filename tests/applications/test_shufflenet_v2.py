"""ShuffleNetV2: variant selection, torchvision layout, block semantics, downsample option.

Registry-wide checks (exact parameter counts of the full-size variants, the
tiny twins through run_application_test, fusion, forward/train step) run
from test_all_models.py, test_forward.py and tests/deploy automatically.

Numerical parity with torchvision: a torch subprocess (torch never loads
next to TensorFlow) builds torchvision's ``shufflenet_v2_x0_5`` and
``x1_0`` with random weights and randomised BatchNorms, runs seeded images
and writes ``torch.save(model.state_dict())`` ``.pth`` files, which
``weights=`` ports through the family's ``TORCHVISION_FORMAT`` without torch.
tools/check_shufflenet_torchvision.py does the same for all four widths.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.applications.shufflenet_v2 import (
    TORCHVISION_FORMAT,
    ShuffleNetV2Config,
    torchvision_module_name,
)
from keras_convzoo.backend import keras
from keras_convzoo.blocks import shufflenet_v2_block
from keras_convzoo.weights import WeightsMismatchError, read_state_dict

_conftest_spec = importlib.util.spec_from_file_location(
    "_weights_conftest", Path(__file__).resolve().parents[1] / "weights" / "conftest.py"
)
_weights_conftest = importlib.util.module_from_spec(_conftest_spec)
_conftest_spec.loader.exec_module(_weights_conftest)

NAMES = {0.5: "shufflenet_v2_x0_5", 1.0: "shufflenet_v2_x1_0", 1.5: "shufflenet_v2_x1_5",
         2.0: "shufflenet_v2_x2_0"}
TORCHVISION_CHANNELS = {0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024),
                        1.5: (24, 176, 352, 704, 1024), 2.0: (24, 244, 488, 976, 2048)}
TORCHVISION_PARAMS = {0.5: 1_366_792, 1.0: 2_278_604, 1.5: 3_503_624, 2.0: 7_393_996}
TINY = kcz.get_spec("shufflenet_v2_x1_0").test_overrides


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_registered_variants_follow_torchvision():
    assert kcz.list_models("shufflenet_v2*") == sorted(NAMES.values())
    for width, name in NAMES.items():
        spec = kcz.get_spec(name)
        assert spec.entrypoint == "ShuffleNetV2"
        assert spec.reference_params == TORCHVISION_PARAMS[width]
        assert spec.config.stage_out_channels == TORCHVISION_CHANNELS[width]
        assert spec.config.stage_repeats == (4, 8, 4)
        assert spec.config.bn_epsilon == 1e-5 and spec.config.padding_mode == "torch"


def test_width_multiplier_selects_the_variant():
    for width, name in NAMES.items():
        model = kcz.ShuffleNetV2(width, input_shape=(32, 32, 3), classes=3, **TINY)
        assert model.name == name and tuple(model.output_shape) == (None, 3)
    model = kcz.ShuffleNetV2(width_multiplier=0.5, include_top=False, pooling="avg", **TINY)
    assert model.name == "shufflenet_v2_x0_5" and tuple(model.output_shape) == (None, 64)
    assert "Args:" in kcz.ShuffleNetV2.__doc__ and "Example:" in kcz.ShuffleNetV2.__doc__
    with pytest.raises(ValueError, match="width_multiplier"):
        kcz.ShuffleNetV2(0.75)
    with pytest.raises(TypeError, match="width_multiplier"):
        kcz.ShuffleNetV2("1.0")
    with pytest.raises(TypeError, match="unknown argument"):
        kcz.ShuffleNetV2(1.0, alpha=1.0)


def test_layer_names_and_feature_strides():
    model = kcz.ShuffleNetV2(1.0, input_shape=(64, 64, 3), **TINY)
    names = [layer.name for layer in model.layers]
    for expected in ["stem_conv", "stem_bn", "stem_relu", "stem_pool",
                     "stage2_block1_branch1_dw_conv", "stage2_block1_branch1_pw_relu",
                     "stage2_block1_branch2_pw1_conv", "stage2_block1_branch2_dw_bn",
                     "stage2_block2_split", "stage2_block2_concat", "stage4_block1_shuffle",
                     "head_conv", "head_bn", "head_relu", "avg_pool", "predictions"]:
        assert expected in names, expected
    assert isinstance(model.get_layer("stage2_block1_branch2_dw_conv"), keras.layers.DepthwiseConv2D)
    assert model.get_layer("stem_bn").epsilon == 1e-5
    assert not any(layer.get_config().get("use_bias") for layer in model.layers
                   if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)))
    spec = kcz.get_spec("shufflenet_v2_x1_0").with_config(**TINY)
    _, features = spec.body(keras.Input((64, 64, 3)), spec.config)
    sizes = [features[k].shape[1] for k in ("stem", "stage2", "stage3", "stage4", "head")]
    assert sizes == [16, 8, 4, 2, 2]
    assert [features[k].shape[-1] for k in ("stem", "stage2", "stage3", "stage4", "head")] == [8, 16, 32, 48, 64]


def test_stride1_block_keeps_first_half_and_interleaves():
    # torchvision: cat(x1, branch2(x2)) then channel_shuffle(2): even output channels are x1.
    inputs = keras.Input((None, None, 12))
    model = keras.Model(inputs, shufflenet_v2_block(inputs, 12, name="b"))
    x = np.random.default_rng(0).standard_normal((2, 5, 6, 12)).astype("float32")
    y = model(x, training=False).numpy()
    np.testing.assert_array_equal(y[..., 0::2], x[..., :6])
    assert np.all(y[..., 1::2] >= 0) and np.abs(y[..., 1::2]).max() > 0  # branch ends with ReLU
    strided = keras.Model(inputs, shufflenet_v2_block(inputs, 20, strides=2, name="s"))
    assert tuple(strided(x).shape) == (2, 3, 3, 20)
    with pytest.raises(ValueError, match="filters"):
        shufflenet_v2_block(inputs, 16, strides=1)
    with pytest.raises(ValueError, match="filters"):
        shufflenet_v2_block(inputs, 15, strides=2)
    with pytest.raises(ValueError, match="strides"):
        shufflenet_v2_block(inputs, 12, strides=3)


def test_downsample_conv_replaces_the_stem_pool():
    pool = kcz.ShuffleNetV2(1.0, input_shape=(None, None, 3), classes=4, **TINY)
    conv = kcz.ShuffleNetV2(1.0, input_shape=(None, None, 3), classes=4, downsample="conv", **TINY)
    c = TINY["stage_out_channels"][0]
    assert _trainable(conv) - _trainable(pool) == 9 * c * c + 2 * c
    assert conv.count_params() - pool.count_params() == 9 * c * c + 4 * c
    names = [layer.name for layer in conv.layers]
    assert {"stem_pool_conv", "stem_pool_bn", "stem_pool_relu"} <= set(names)
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in conv.layers)
    x = np.random.default_rng(1).standard_normal((1, 33, 33, 3)).astype("float32")
    assert conv(x).shape == pool(x).shape == (1, 4)
    spec = kcz.get_spec("shufflenet_v2_x1_0")
    features = {}
    for mode in ("pool", "conv"):
        variant = spec.with_config(downsample=mode, **TINY)
        _, maps = variant.body(keras.Input((33, 47, 3)), variant.config)
        features[mode] = {k: tuple(v.shape) for k, v in maps.items()}
    assert features["pool"] == features["conv"]
    assert features["conv"]["stem"] == (None, 9, 12, 8)


def test_invalid_config_values():
    with pytest.raises(ValueError, match="downsample"):
        kcz.ShuffleNetV2(1.0, downsample="avg", **TINY)
    with pytest.raises(ValueError, match="stage_out_channels"):
        kcz.ShuffleNetV2(1.0, stage_out_channels=(8, 16, 32, 64))
    with pytest.raises(ValueError, match="even"):
        kcz.ShuffleNetV2(1.0, stage_out_channels=(8, 16, 33, 48, 64), stage_repeats=(1, 1, 1))
    with pytest.raises(ValueError, match="padding_mode"):
        kcz.ShuffleNetV2(1.0, padding_mode="reflect", **TINY)
    assert ShuffleNetV2Config().downsample == "pool"


# ---------------------------------------------------------------------------------------------------------
# torchvision state dicts (reference written by torch in a subprocess)

#: Run by the torch interpreter with the output folder as argument: for each width, ``<name>.pth``
#: (the state dict as torch.save writes it) and ``<name>.npz`` (NHWC images, logits, pooled features).
TORCH_SCRIPT = r"""
import os, sys
import numpy as np
import torch
import torchvision

out = sys.argv[1]
for seed, name in enumerate(("shufflenet_v2_x0_5", "shufflenet_v2_x1_0")):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = getattr(torchvision.models, name)(weights=None)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # no BN is the identity
                c = module.num_features
                module.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c).astype("float32")))
                module.bias.copy_(torch.from_numpy(rng.normal(0.0, 0.2, c).astype("float32")))
                module.running_mean.copy_(torch.from_numpy(rng.normal(0.0, 0.2, c).astype("float32")))
                module.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c).astype("float32")))
    model.eval()
    pooled = {}
    model.fc.register_forward_hook(lambda module, inputs, output: pooled.update(x=inputs[0]))
    images = rng.standard_normal((2, 64, 64, 3)).astype("float32")
    with torch.no_grad():
        logits = model(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    torch.save(model.state_dict(), os.path.join(out, name + ".pth"))
    np.savez(os.path.join(out, name + ".npz"), images=images, logits=logits.numpy(), pooled=pooled["x"].numpy())
"""

TORCHVISION_WIDTHS = {0.5: "shufflenet_v2_x0_5", 1.0: "shufflenet_v2_x1_0"}


@pytest.fixture(scope="module")
def torchvision_refs(tmp_path_factory):
    """The folder of ``<name>.pth`` / ``<name>.npz`` references, written once by torch in a subprocess."""
    return _weights_conftest.run_torch_script(TORCH_SCRIPT, tmp_path_factory.mktemp("shufflenet_torchvision"))


def test_torchvision_format_is_registered_with_the_default_layout():
    for name in NAMES.values():
        spec = kcz.get_spec(name)
        assert spec.weight_formats == {"torchvision": TORCHVISION_FORMAT}
        assert spec.port_weights is not None
    key_map = TORCHVISION_FORMAT.key_map
    assert dict(TORCHVISION_FORMAT.config) == {}  # the default config is torchvision's layout
    assert key_map.module_name is torchvision_module_name and key_map.head_prefixes == ("fc.",)
    assert key_map.bn_epsilon == ShuffleNetV2Config().bn_epsilon == 1e-5
    assert ShuffleNetV2Config().padding_mode == "torch"


def test_torchvision_module_name_rules():
    expected = {
        "stem_conv": "conv1.0", "stem_bn": "conv1.1", "head_conv": "conv5.0", "head_bn": "conv5.1",
        "predictions": "fc",
        "stage2_block1_branch1_dw_conv": "stage2.0.branch1.0", "stage2_block1_branch1_dw_bn": "stage2.0.branch1.1",
        "stage2_block1_branch1_pw_conv": "stage2.0.branch1.2", "stage2_block1_branch1_pw_bn": "stage2.0.branch1.3",
        "stage3_block8_branch2_pw1_conv": "stage3.7.branch2.0", "stage3_block8_branch2_pw1_bn": "stage3.7.branch2.1",
        "stage4_block2_branch2_dw_conv": "stage4.1.branch2.3", "stage4_block2_branch2_dw_bn": "stage4.1.branch2.4",
        "stage4_block2_branch2_pw2_conv": "stage4.1.branch2.5", "stage4_block2_branch2_pw2_bn": "stage4.1.branch2.6",
    }
    for ours, theirs in expected.items():
        assert torchvision_module_name(ours, frozenset()) == theirs, ours
    for no_counterpart in ("stem_pool_conv", "stem_pool_bn", "stem_relu", "stem_pool", "avg_pool",
                           "stage2_block2_split", "stage2_block1_branch2_pw1_relu", "stage2_block1_branch3_dw_conv"):
        assert torchvision_module_name(no_counterpart, frozenset()) is None, no_counterpart
    # every weighted layer of a full-size model has its own module
    model = kcz.ShuffleNetV2(0.5, input_shape=(64, 64, 3))
    names = frozenset(layer.name for layer in model.layers)
    modules = [torchvision_module_name(layer.name, names) for layer in model.layers if layer.weights]
    assert None not in modules and len(set(modules)) == len(modules) == 113


@pytest.mark.parity
@pytest.mark.parametrize("width", sorted(TORCHVISION_WIDTHS))
def test_torchvision_state_dict_gives_torchvision_logits(torchvision_refs, width):
    name = TORCHVISION_WIDTHS[width]
    ref = np.load(torchvision_refs / f"{name}.npz")
    assert float(ref["logits"].std()) > 0.05  # not a degenerate reference
    model = kcz.ShuffleNetV2(width_multiplier=width, weights=str(torchvision_refs / f"{name}.pth"),
                             input_shape=(64, 64, 3), classifier_activation=None)
    assert model.name == name
    logits = model(ref["images"], training=False).numpy()
    assert np.abs(logits - ref["logits"]).max() < 1e-4

    features = kcz.ShuffleNetV2(width_multiplier=width, weights=str(torchvision_refs / f"{name}.pth"),
                                input_shape=(64, 64, 3), include_top=False, pooling="avg")
    assert not any(layer.name == "predictions" for layer in features.layers)
    pooled = features(ref["images"], training=False).numpy()
    full_pooled = keras.Model(model.input, model.get_layer("avg_pool").output)(ref["images"], training=False)
    np.testing.assert_allclose(pooled, full_pooled.numpy(), rtol=0, atol=1e-6)
    assert np.abs(pooled - ref["pooled"]).max() < 1e-4


@pytest.mark.parity
def test_torchvision_state_dict_of_another_width_is_refused(torchvision_refs):
    small = str(torchvision_refs / "shufflenet_v2_x0_5.pth")
    model = kcz.ShuffleNetV2(1.0, input_shape=(64, 64, 3))
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(WeightsMismatchError) as info:
        kcz.get_spec("shufflenet_v2_x1_0").port_weights(model, read_state_dict(small))
    assert info.value.layer and info.value.layer in {layer.name for layer in model.layers}
    assert repr(info.value.layer) in str(info.value) and "No weight was changed" in str(info.value)
    # the first 1x1 convs of stage 2 are the first layers whose width differs (24 -> 24 or 58 channels)
    assert info.value.layer in ("stage2_block1_branch1_pw_conv", "stage2_block1_branch2_pw1_conv")
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    with pytest.raises(WeightsMismatchError, match=r"stage2_block1_branch(1_pw|2_pw1)_conv"):
        kcz.ShuffleNetV2(1.0, weights=small, input_shape=(64, 64, 3))
    # an option torchvision has not: the learned stem downsample has no counterpart
    with pytest.raises(WeightsMismatchError, match="stem_pool_conv"):
        kcz.ShuffleNetV2(0.5, weights=small, input_shape=(64, 64, 3), downsample="conv")


@pytest.mark.parity
def test_weights_by_name_come_through_a_mirror_checked_by_torchvisions_hash_prefix(torchvision_refs, tmp_path,
                                                                                   monkeypatch):
    """weights="imagenet": torchvision's file name carries its sha256 prefix; a random file fails that check
    (and a mirror file is never removed), the same file under its own prefix loads and equals torchvision."""
    from keras_convzoo.weights import pretrained

    name = "shufflenet_v2_x0_5"
    entry = pretrained.resolve(name, "imagenet")
    assert (entry.source, entry.tag, entry.num_classes) == ("torchvision", "imagenet1k_v1", 1000)
    assert entry.url.endswith(entry.filename) and entry.filename.endswith(f"-{entry.sha256_prefix}.pth")
    mirror = tmp_path / "mirror"
    (mirror / "torchvision").mkdir(parents=True)
    served = mirror / "torchvision" / entry.filename
    served.write_bytes((torchvision_refs / f"{name}.pth").read_bytes())
    monkeypatch.setenv(pretrained.MIRROR_ENV, str(mirror))
    with pytest.raises(pretrained.CorruptDownloadError, match=f"does not match its sha256 {entry.sha256_prefix}"):
        kcz.ShuffleNetV2(width_multiplier=0.5, weights="imagenet")
    assert served.exists()

    import hashlib

    own = pretrained.PretrainedEntry(**dict(entry.as_dict(), sha256_prefix=hashlib.sha256(
        served.read_bytes()).hexdigest()[:10]))
    monkeypatch.setattr(pretrained, "resolve", lambda *args, **kwargs: own)
    ref = np.load(torchvision_refs / f"{name}.npz")
    model = kcz.ShuffleNetV2(width_multiplier=0.5, weights="imagenet", input_shape=(64, 64, 3),
                             classifier_activation=None)
    assert model.pretrained_cfg.key == "shufflenet_v2_x0_5.imagenet1k_v1"
    assert np.abs(model(ref["images"], training=False).numpy() - ref["logits"]).max() < 1e-4
