"""keras-hub's backbone contract on the adapter: ``dtype=`` (policies and policy maps), config, predict, saving.

Mirrors the checks of keras-hub's own test base (``TestCase.run_backbone_test``,
``run_precision_test``, ``run_quantization_test``, ``run_serialization_test``,
``run_model_saving_test``) on one tiny twin per family, 32x32 inputs, batch 2.

Tolerances (relative to the largest float32 output; the largest ratio measured
over the families, on Keras 3.15 / TF 2.21 CPU, is in brackets):
mixed_float16 1e-2 (3.9e-3), mixed_bfloat16 / bfloat16 6e-2 (2.1e-2),
int8 Dense layers 2e-2 (5.6e-3), float8 Dense layers 1e-1 (3.0e-2).
"""

import json
import re

import numpy as np
import pytest
import tensorflow as tf

import keras_cv  # noqa: F401  (both libraries load in one process: keras-cv first, as in test_keras_cv)
import keras_hub

import keras_convzoo as kcz
from keras_convzoo.backend import keras
from keras_convzoo.export.lowering import iter_layers
from keras_convzoo.integrations import keras_cv as kcz_cv
from keras_convzoo.integrations import keras_hub as kcz_hub

FAMILY_MODELS = sorted({kcz.get_spec(n).family: n for n in reversed(kcz.list_models())}.values())
#: The families whose trunk has Dense layers (quantized policies apply to those).
DENSE_FAMILIES = ("ccnn", "convnext")
POLICIES = ("mixed_float16", "mixed_bfloat16", "bfloat16")
RELATIVE_BOUND = {"float16": 1e-2, "bfloat16": 6e-2, "int8": 2e-2, "float8": 1e-1}
#: Layers that compute in float32 under every policy: CCNN's kernel generators (positions times
#: frequencies of 1e4-1e5); the kernels they make are cast to the compute dtype by their convolution.
FLOAT32_LAYERS = {"MAGNet"}
SHAPE = (32, 32, 3)
X = np.random.default_rng(0).uniform(-1, 1, size=(2,) + SHAPE).astype("float32")


def _build(name, **kwargs):
    return kcz_hub.backbone(name, input_shape=SHAPE, **kcz.get_spec(name).test_overrides, **kwargs)


def _sublayers(model):
    return [
        layer for layer in iter_layers(model)
        if layer is not model and not isinstance(layer, keras.layers.InputLayer)
    ]


def _relative_error(value, reference):
    value, reference = np.asarray(value, "float32"), np.asarray(reference, "float32")
    return float(np.max(np.abs(value - reference)) / np.max(np.abs(reference)))


def _dense_map(model, mode, default="float32"):
    """keras-hub's run_quantization_test map: every Dense / EinsumDense layer path to ``<mode>_from_float32``."""
    policy_map = keras.dtype_policies.DTypePolicyMap(default)
    for layer in _sublayers(model):
        if type(layer) in (keras.layers.Dense, keras.layers.EinsumDense):
            policy_map[layer.path] = keras.dtype_policies.get(f"{mode}_from_float32")
    return policy_map


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_every_sublayer_output_spec_and_weight_takes_the_policy(name, policy):
    policy = keras.dtype_policies.get(policy)
    backbone = _build(name, dtype=policy.name)
    assert backbone.dtype_policy.name == policy.name

    kept = [layer for layer in _sublayers(backbone) if type(layer).__name__ in FLOAT32_LAYERS]
    assert bool(kept) == (kcz.get_spec(name).family == "ccnn")
    for layer in _sublayers(backbone):
        wanted = ("float32", "float32") if layer in kept else (policy.compute_dtype, policy.variable_dtype)
        assert (layer.compute_dtype, layer.variable_dtype) == wanted, layer.path
    kept_weights = {id(w) for layer in kept for w in layer.weights}
    for weight in backbone.weights:
        assert weight.dtype == ("float32" if id(weight) in kept_weights else policy.variable_dtype), weight.path
    # no float32 in the middle of the graph: every functional layer's output is in the compute dtype
    for layer in backbone.layers[1:]:
        assert {t.dtype for t in keras.tree.flatten(layer.output)} == {policy.compute_dtype}, layer.name

    output = backbone(X)
    spec = backbone.compute_output_spec(X)  # numpy input, as keras-hub's precision test does with tensors
    assert keras.backend.standardize_dtype(output.dtype) == policy.compute_dtype
    assert spec.dtype == policy.compute_dtype and tuple(spec.shape) == tuple(output.shape)
    if backbone.pyramid_outputs:  # CCNN keeps the resolution: no pyramid
        pyramid = keras.Model(backbone.input, backbone.pyramid_outputs)
        assert {k: keras.backend.standardize_dtype(v.dtype) for k, v in pyramid(X).items()} == {
            level: policy.compute_dtype for level in backbone.pyramid_outputs
        }

    # the same weights in float32 compute the same features within the policy's rounding
    reference = _build(name)
    reference.set_weights(backbone.get_weights())
    assert _relative_error(output, reference(X)) <= RELATIVE_BOUND[policy.compute_dtype]


@pytest.mark.parametrize("name", ["convnext_tiny", "ccnn_4_140"])
@pytest.mark.parametrize("mode", ["int8", "float8"])
def test_policy_map_quantizes_the_dense_layers_from_their_weights(name, mode, tmp_path):
    assert kcz.get_spec(name).family in DENSE_FAMILIES
    float_model = _build(name)
    path = str(tmp_path / "float.weights.h5")
    float_model.save_weights(path)
    policy_map = _dense_map(float_model, mode)
    assert len(policy_map) >= 2

    model = _build(name, dtype=policy_map, weights=path)
    assert model.dtype_policy is policy_map
    modes = {layer.path: layer.quantization_mode for layer in _sublayers(model)}
    assert {p: m for p, m in modes.items() if m is not None} == {key: mode for key in policy_map}
    assert _relative_error(model(X), float_model(X)) <= RELATIVE_BOUND[mode]

    # keras-hub's quantization check: config round trip, then the weights load into the revived model
    config = model.get_config()
    assert keras.dtype_policies.deserialize(config["dtype"]).get_config() == policy_map.get_config()
    revived = type(model).from_config(config)
    assert revived.get_config() == config
    revived.set_weights(model.get_weights())
    np.testing.assert_array_equal(np.asarray(revived(X)), np.asarray(model(X)))


def test_policy_map_with_a_regex_key_and_a_mixed_default():
    name = "convnext_tiny"
    policy_map = keras.dtype_policies.DTypePolicyMap(
        "mixed_bfloat16", {r"stage\d_block\d_pw_conv1": keras.dtype_policies.get("int8_from_mixed_bfloat16")}
    )
    model = _build(name, dtype=policy_map)
    for layer in _sublayers(model):
        quantized = bool(re.fullmatch(r"stage\d_block\d_pw_conv1", layer.path))
        assert layer.quantization_mode == ("int8" if quantized else None), layer.path
        assert (layer.compute_dtype, layer.variable_dtype) == ("bfloat16", "float32"), layer.path
    assert keras.backend.standardize_dtype(model(X).dtype) == "bfloat16"


@pytest.mark.parametrize("name", [n for n in FAMILY_MODELS if kcz.get_spec(n).family not in DENSE_FAMILIES])
def test_policy_map_on_families_without_dense_layers(name):
    """No layer to quantize: a map's float entries still reach the layers its keys (paths, regexes) name."""
    plain = _build(name)
    weighted = [layer for layer in _sublayers(plain) if layer.weights]
    first, last = weighted[0].path, weighted[-1].path
    policy_map = keras.dtype_policies.DTypePolicyMap(
        "float32", {first: keras.DTypePolicy("bfloat16"), re.escape(last): keras.DTypePolicy("mixed_float16")}
    )
    model = _build(name, dtype=policy_map)
    expected = {first: ("bfloat16", "bfloat16"), last: ("float16", "float32")}
    for layer in _sublayers(model):
        wanted = expected.get(layer.path, ("float32", "float32"))
        assert (layer.compute_dtype, layer.variable_dtype) == wanted, layer.path
        if len(list(iter_layers(layer))) == 1:  # its own variables only (no nested layers with their own policy)
            assert {w.dtype for w in layer.weights} <= {wanted[1]}, layer.path
    assert all(layer.quantization_mode is None for layer in _sublayers(model))
    output_layer = model.layers[-1]
    assert model.compute_output_spec(X).dtype == output_layer.compute_dtype
    # the map round-trips through the config
    revived = type(model).from_config(model.get_config())
    assert revived.get_layer(first).kernel.dtype == "bfloat16"
    assert revived.get_config() == model.get_config()


@pytest.mark.parametrize("dtype", [None, "mixed_float16", "bfloat16"])
def test_config_and_serialization_round_trip(dtype):
    name = "seresnext50_32x4d"
    backbone = kcz_hub.backbone(name, dtype=dtype, **kcz.get_spec(name).test_overrides)
    config = backbone.get_config()
    expected_policy = keras.config.dtype_policy() if dtype is None else keras.dtype_policies.get(dtype)
    assert keras.dtype_policies.deserialize(config["dtype"]).name == expected_policy.name
    as_json = json.dumps(config, sort_keys=True)
    revived = type(backbone).from_config(config)
    assert json.dumps(revived.get_config(), sort_keys=True) == as_json
    assert set(dir(revived)) == set(dir(backbone))
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(backbone)))
    deserialized = keras.saving.deserialize_keras_object(serialized)
    assert type(deserialized) is type(backbone)
    assert json.dumps(deserialized.get_config(), sort_keys=True) == as_json
    assert deserialized.dtype_policy.name == expected_policy.name


@pytest.mark.parametrize("dtype", ["mixed_bfloat16", "bfloat16"])
def test_predict_on_arrays_and_a_dataset(dtype):
    name = "mobilenetv2_100"
    backbone = _build(name, dtype=dtype)
    from_array = backbone.predict(X, verbose=0)
    from_dataset = backbone.predict(tf.data.Dataset.from_tensor_slices(X).batch(2), verbose=0)
    assert str(from_array.dtype) == str(from_dataset.dtype) == "bfloat16"
    np.testing.assert_array_equal(from_array, from_dataset)
    np.testing.assert_array_equal(from_array, np.asarray(backbone(X)))


@pytest.mark.parametrize(
    "name, dtype",
    [("resnext50_32x4d", None), ("resnext50_32x4d", "mixed_float16"), ("convnext_tiny", "int8"),
     ("ccnn_4_140", "mixed_bfloat16")],
)
def test_keras_file_round_trip(name, dtype, tmp_path):
    if dtype == "int8":
        dtype = _dense_map(_build(name), "int8")
    model = _build(name, dtype=dtype)
    path = str(tmp_path / "backbone.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is kcz_hub.KerasHubBackbone
    assert loaded.name == model.name and loaded.dtype_policy.name == model.dtype_policy.name
    assert [(w.path, w.dtype) for w in loaded.weights] == [(w.path, w.dtype) for w in model.weights]
    np.testing.assert_array_equal(np.asarray(loaded(X)), np.asarray(model(X)))


def test_default_name_is_derived_from_the_class():
    snake = re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", "KerasHubBackbone")).lower()
    first = kcz_hub.backbone("shufflenet_v2_x0_5", **kcz.get_spec("shufflenet_v2_x0_5").test_overrides)
    second = kcz_hub.backbone("shufflenet_v2_x0_5", **kcz.get_spec("shufflenet_v2_x0_5").test_overrides)
    assert re.fullmatch(rf"{snake}(_\d+)?", first.name) and re.fullmatch(rf"{snake}(_\d+)?", second.name)
    assert first.name != second.name
    overrides = dict(kcz.get_spec("shufflenet_v2_x0_5").test_overrides)
    named = kcz_hub.KerasHubBackbone("shufflenet_v2_x0_5", model_kwargs=overrides, name="encoder")
    assert named.name == "encoder"


def test_global_policy_is_restored():
    keras.config.set_dtype_policy("float32")
    _build("seresnet18", dtype="mixed_float16")
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(TypeError, match="drop_pathrate"):
        _build("seresnet18", dtype="bfloat16", drop_pathrate=0.1)
    assert keras.config.dtype_policy().name == "float32"
    # under a global mixed policy, an explicit dtype wins and the global one stays
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _build("seresnet18", dtype="float32")
        assert {layer.compute_dtype for layer in _sublayers(model)} == {"float32"}
        assert keras.config.dtype_policy().name == "mixed_float16"
    finally:
        keras.config.set_dtype_policy("float32")


def test_bad_dtype_arguments():
    name = "seresnet18"
    with pytest.raises(ValueError, match=r"`dtype` must name a Keras dtype policy .*Received: dtype='mixed_flaot16'"):
        _build(name, dtype="mixed_flaot16")
    with pytest.raises(TypeError, match=r"`dtype` must be None, a dtype policy name.*Received: dtype=16 of type int"):
        _build(name, dtype=16)
    with pytest.raises(ValueError, match=r"floating point policy.*'int32'"):
        _build(name, dtype="int32")
    unknown_entry = keras.dtype_policies.DTypePolicyMap("float32", {"stem_conv": "float17"})
    with pytest.raises(ValueError, match=r"maps a layer path to something that names no Keras dtype policy"):
        _build(name, dtype=unknown_entry)
    # (a map built from policy names: DTypePolicyMap's constructor keeps them as strings)
    quantized_conv = keras.dtype_policies.DTypePolicyMap("float32", {"stem_conv": "int8_from_float32"})
    with pytest.raises(ValueError, match=r"Conv2D layer 'stem_conv'.*Dense and EinsumDense"):
        _build(name, dtype=quantized_conv)
    misspelt = keras.dtype_policies.DTypePolicyMap("float32", {"stem_cnov": "bfloat16"})
    with pytest.raises(ValueError, match=r"not in this backbone: \['stem_cnov'\]"):
        _build(name, dtype=misspelt)


def test_keras_cv_backbone_takes_the_policy_too():
    name = "resnext50_32x4d"
    backbone = kcz_cv.backbone(name, input_shape=SHAPE, dtype="mixed_float16", **kcz.get_spec(name).test_overrides)
    assert backbone.dtype_policy.name == "mixed_float16"
    assert {(layer.compute_dtype, layer.variable_dtype) for layer in _sublayers(backbone)} == {("float16", "float32")}
    assert keras.backend.standardize_dtype(backbone(X).dtype) == "float16"
    assert backbone.compute_output_spec(X).dtype == "float16"
    clone = type(backbone).from_config(backbone.get_config())
    assert clone.dtype_policy.name == "mixed_float16"
    assert {layer.compute_dtype for layer in _sublayers(clone)} == {"float16"}


def test_image_classifier_over_a_mixed_backbone():
    """keras-hub's ImageClassifier on a mixed_bfloat16 backbone: bfloat16 features, trainable float32 weights."""
    name = "convnext_tiny"
    backbone = _build(name, dtype="mixed_bfloat16")
    classifier = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=3, dtype="mixed_bfloat16")
    logits = classifier(X)
    assert tuple(logits.shape) == (2, 3)
    assert all(w.dtype == "float32" for w in classifier.trainable_weights)


@pytest.mark.parametrize("policy", ["mixed_bfloat16"])
def test_a_fine_tuned_16_bit_image_classifier_exports_through_its_float32_form(policy, tmp_path):
    """keras-hub's ImageClassifier is a subclassed model: the exporters rebuild it from its config in float32.

    The files are verified against that float32 form (same weights) and agree
    with the user's 16-bit model within bfloat16 rounding.
    """
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (24,) + SHAPE).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype("int32")  # a learnable label: brightness of the red channel
    classifier = keras_hub.models.ImageClassifier(backbone=_build("mobilenetv2_035", dtype=policy), num_classes=2,
                                                  dtype=policy)
    classifier.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    classifier.fit(x, y, epochs=2, batch_size=8, verbose=0)
    ours = np.asarray(classifier.predict(x, verbose=0), "float32")
    form, notes = kcz.export.float32_form(classifier)
    assert type(form) is type(classifier) and "rebuilt from its config with float32 policies" in notes[0]
    assert all(w.dtype == "float32" for w in form.weights)
    for copied, trained in zip(form.get_weights(), classifier.get_weights()):  # the user's weights, exactly
        np.testing.assert_array_equal(copied, np.asarray(trained, "float32"))
    for fmt, export, run in (("tflite", kcz.export.to_tflite, kcz.export.run_tflite),
                             ("onnx", kcz.export.to_onnx, kcz.export.run_onnx)):
        path = tmp_path / f"m.{fmt}"
        report = export(classifier, path, input_shape=SHAPE, verification_data=x)
        assert report.relative_diff <= 1e-4 and any("float32" in note for note in report.notes), report
        (probs,) = run(path, x)
        # the user's model computes in bfloat16 (3 significant digits through ~50 layers): the same logits up to that
        # rounding, the same class on nearly every input
        assert np.max(np.abs(probs - ours)) <= 0.25 * np.max(np.abs(ours)), (fmt, np.max(np.abs(probs - ours)))
        assert np.mean(probs.argmax(-1) == ours.argmax(-1)) >= 20 / 24
    assert classifier.dtype_policy.name == policy  # the user's model is left as it was


def test_a_plain_quantized_policy_quantizes_the_dense_layers_only(tmp_path):
    import warnings

    name = "convnext_tiny"
    weights = tmp_path / "float.weights.h5"
    float_backbone = _build(name)
    float_backbone.save_weights(weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backbone = _build(name, dtype="int8_from_float32", weights=str(weights))
    assert not [w for w in caught if "quantize" in str(w.message)]  # no "does not have a quantize method" flood
    dense = [layer for layer in _sublayers(backbone) if type(layer) is keras.layers.Dense]
    assert dense and all(layer.quantization_mode == "int8" for layer in dense)
    others = [layer for layer in _sublayers(backbone) if type(layer) is not keras.layers.Dense]
    assert all(getattr(layer, "quantization_mode", None) is None for layer in others)
    expected = float_backbone(X)
    assert _relative_error(backbone(X), expected) <= RELATIVE_BOUND["int8"]
    # the config records the map it became; a revived backbone is the same int8 model
    config = backbone.get_config()
    assert isinstance(keras.dtype_policies.get(config["dtype"]), keras.dtype_policies.DTypePolicyMap)
    path = tmp_path / "int8.keras"
    backbone.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(again(X)), np.asarray(backbone(X)))


def test_a_plain_quantized_policy_without_dense_layers_is_refused():
    with pytest.raises(ValueError, match=r"`dtype` 'int8_from_float32' quantizes Dense and EinsumDense layers; the "
                                         r"'resnext50_32x4d' backbone has none"):
        _build("resnext50_32x4d", dtype="int8_from_float32")
