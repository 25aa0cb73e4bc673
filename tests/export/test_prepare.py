"""prepare_for_export: continuous kernels baked (nested backbones, 1D/2D, continuous resolution), others untouched."""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.backend import LEGACY_KERAS, keras
from keras_convzoo.export.prepare import prepare_for_export
from keras_convzoo.layers import SeparableFlexConv
from keras_convzoo.layers.continuous_conv import ContinuousConvBase
from keras_convzoo.export.lowering import iter_layers as _all_layers  # every layer, nested models too
from keras_convzoo.testing import randomize_batch_norms

pytestmark = pytest.mark.export

TINY = kcz.get_spec("ccnn_4_140").test_overrides  # depth 2: a stem conv and 2 block convs


def _continuous(model):
    return [l for l in _all_layers(model) if isinstance(l, ContinuousConvBase)]


def _assert_close(got, expected, rtol=1e-5):
    scale = float(np.abs(expected).max())
    assert scale > 0
    assert np.abs(got - expected).max() <= rtol * scale, np.abs(got - expected).max() / scale


def _transfer_model(input_shape, **backbone_kwargs):
    """A user's transfer model: Input -> Rescaling -> nested CCNN backbone -> Dense."""
    backbone = kcz.create_model("ccnn_4_140", include_top=False, pooling="avg", input_shape=input_shape,
                                **dict(TINY, **backbone_kwargs))
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    outputs = keras.layers.Dense(10, name="head")(backbone(x))
    model = keras.Model(inputs, outputs, name="transfer")
    randomize_batch_norms(model)
    return model


@pytest.mark.parametrize("input_shape", [(32, 32, 3), (32, 3)], ids=["2d", "1d"])
def test_nested_ccnn_backbone_is_baked_with_equal_outputs(input_shape):
    model = _transfer_model(input_shape)
    assert [l.deploy for l in _continuous(model)] == [False] * 3
    prepared, notes = prepare_for_export(model, input_shape)
    assert prepared is not model
    assert [l.deploy for l in _continuous(prepared)] == [True] * 3
    assert notes == (
        "continuous kernels of 3 layers baked with keras_convzoo.deploy.fuse (their kernel networks and FFT "
        "convolutions do not convert)",
    )
    assert [l.name for l in prepared.layers] == [l.name for l in model.layers]
    x = np.random.default_rng(0).uniform(0, 255, (3,) + input_shape).astype("float32")
    _assert_close(prepared(x).numpy(), model(x, training=False).numpy())
    # The prepared model is left alone by a second call.
    again, again_notes = prepare_for_export(prepared, input_shape)
    assert again is prepared and again_notes == ()


@pytest.mark.xfail(
    LEGACY_KERAS, raises=ValueError, strict=True,
    reason="tf_keras: a continuous-resolution layer's output loses its static size (tf.cond), so the next one "
    "cannot be baked even in a static model",
)
def test_continuous_resolution_with_none_sizes_is_baked_at_the_sample_shape(tmp_path):
    model = _transfer_model((None, None, 3), resolution="continuous", train_size=16)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = model(x, training=False).numpy()
    prepared, notes = prepare_for_export(model, (32, 32, 3))
    assert tuple(prepared.inputs[0].shape) == (None, 32, 32, 3)
    baked = _continuous(prepared)
    assert [l.deploy for l in baked] == [True] * 3
    assert notes == (
        "continuous kernels of 3 layers baked for input (32, 32, 3) with keras_convzoo.deploy.fuse "
        "(the file runs at this size)",
    )
    _assert_close(prepared(x).numpy(), expected)
    # The kernel was baked for 32 px, twice the training size: the unfused model at 16 px differs.
    stem = next(l for l in _continuous(model) if l.name == "stem_conv")
    stem_baked = next(l for l in baked if l.name == "stem_conv")
    assert stem_baked.baked_kernel.shape[:2] != stem.kernel(np.zeros((1, 16, 16, 3), "float32")).shape[:2]
    assert tuple(model.inputs[0].shape) == (None, None, None, 3)  # the user's model is not changed

    with pytest.raises(ValueError, match=r"`sample_shape` is required.*Received: sample_shape=None"):
        prepare_for_export(model)
    # through to_onnx (dynamic sizes by default) the message names to_onnx's own argument, input_shape
    with pytest.raises(ValueError, match=r"`input_shape` is required.*pass input_shape=\(the exported size\).*"
                                         r"Received: input_shape=None"):
        kcz.export.to_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"`sample_shape` must fit the model input \(None, None, 3\)"):
        prepare_for_export(model, (32, 32, 4))
    with pytest.raises(ValueError, match=r"`sample_shape` must be the input shape without batch"):
        prepare_for_export(model, (32, 0, 3))


def test_backbone_called_at_two_sizes_cannot_be_baked():
    backbone = kcz.create_model("ccnn_4_140", include_top=False, pooling="avg", input_shape=(None, None, 3),
                                **dict(TINY, resolution="continuous", train_size=16))
    inputs = keras.Input((None, None, 3))
    half = keras.layers.AveragePooling2D(2, name="half")(inputs)
    outputs = keras.layers.Concatenate(name="both")([backbone(inputs), backbone(half)])
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match=r"build the model with input_shape=\(32, 32, 3\) and call "
                                         r"keras_convzoo\.deploy\.fuse\(model\)"):
        prepare_for_export(model, (32, 32, 3))


def test_subclassed_model_with_continuous_layers_is_refused():
    class Wrapper(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = SeparableFlexConv(4, kernel_size=5, mask_init=0.5, name="flex")

        def call(self, x):
            return self.conv(x)

    model = Wrapper()
    model(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match=r"inside `.*` \(e\.g\. `flex`\).*needs a functional model"):
        prepare_for_export(model, (8, 8, 3))
    inputs = keras.Input((8, 8, 3))
    nested = keras.Model(inputs, model(inputs))
    with pytest.raises(ValueError, match=r"needs a functional model"):
        prepare_for_export(nested, (8, 8, 3))
    with pytest.raises(TypeError, match=r"`model` must be a keras\.Model\. Received: model=SeparableFlexConv"):
        prepare_for_export(model.conv, (8, 8, 3))


def test_models_without_continuous_layers_are_returned_unchanged():
    resnext = kcz.create_model("resnext50_32x4d", input_shape=(32, 32, 3), classes=4,
                               **kcz.get_spec("resnext50_32x4d").test_overrides)
    prepared, notes = prepare_for_export(resnext, (32, 32, 3))
    assert prepared is resnext and notes == ()
    replk = kcz.create_model("replknet31_base", input_shape=(None, None, 3), classes=4,
                             **kcz.get_spec("replknet31_base").test_overrides)
    prepared, notes = prepare_for_export(replk, (32, 32, 3))  # RepLK layers convert unfused
    assert prepared is replk and notes == ()
