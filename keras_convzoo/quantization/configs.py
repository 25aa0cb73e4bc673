"""tfmot QuantizeConfigs for the layers of keras_convzoo, and the quantize scheme using them.

This module imports tensorflow-model-optimization and is imported only by
``quantize_aware`` and ``quantize_scope`` under tf_keras
(``TF_USE_LEGACY_KERAS=1``): tfmot sets ``TF_USE_LEGACY_KERAS=1`` in the
process environment when imported, and accepts only tf_keras models.

What each layer gets (weights: fake-quantized int8 weights, symmetric, narrow
range; output: int8 activation range learned by moving average, the
quantization points TFLite uses):

| layer                         | quantized weights                                | output |
|-------------------------------|--------------------------------------------------|--------|
| ``GroupConv2D``               | ``kernel`` (per tensor)                          | yes    |
| ``ShiftConv2D``               | ``kernel`` (per output channel)                  | yes    |
| ``LayerScale``                | ``gamma`` (per tensor)                           | yes    |
| ``GELU``                      | -                                                | yes    |
| ``SqueezeExcite``             | ``reduce_kernel``, ``expand_kernel`` (per tensor)| yes    |
| ``ReparamLargeKernelConv``    | ``deploy=True``: ``large_kernel`` (per tensor)   | yes    |
|                               | training form: none (fuse first, see below)      | yes    |
| ``SpatialTransformer``        | none (localization network stays float)          | yes    |
| ``CKConv/FlexConv/SeparableFlexConv`` | ``deploy=True``: ``baked_kernel``, ``pointwise_kernel`` (per tensor) | yes |
|                               | training form: none, not quantized (NoOp)        | no     |
| ``StochasticDepth``           | - (identity at inference)                        | no     |
| ``ChannelShuffle``, ``ChannelSplit`` | - (data movement keeps the input's scale) | no     |
| ``MAGNet``, ``KernelMLP``     | - (kernel generators, not in a deployed graph)   | no     |
| ``BatchNormalization`` (not after a Conv2D/DepthwiseConv2D) | -                  | yes    |
| ``LayerNormalization``, ``Multiply`` | -                                         | yes    |

The standard layers tfmot's default 8-bit registry already supports
(``Conv2D``, ``DepthwiseConv2D``, ``Dense``, ``Add``, ``ReLU``,
``Concatenate``, pooling, padding, ...) keep tfmot's configs, and its graph
transforms (``Conv2D`` + ``BatchNormalization`` + ``ReLU`` folding) still run.

Tensors inside a layer (the per-group outputs of ``GroupConv2D``'s split or
depthwise lowering, the depthwise output of ``SeparableFlexConv``, the
squeeze vector of ``SqueezeExcite``, the two branches of an unfused
``ReparamLargeKernelConv``) have no fake-quant node: the int8 converter
takes their ranges from ``representative_data`` (calibration). The layers'
outputs, where the error would accumulate, are all emulated.
"""

import tensorflow_model_optimization as tfmot

from keras_convzoo.backend import keras
from keras_convzoo import layers as zoo_layers

_QuantizeConfig = tfmot.quantization.keras.QuantizeConfig
_quantizers = tfmot.quantization.keras.quantizers
_Default8BitScheme = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme

from tensorflow_model_optimization.python.core.quantization.keras import (  # noqa: E402
    quantize_aware_activation as _activation_lib,
)
from tensorflow_model_optimization.python.core.quantization.keras import (  # noqa: E402
    utils as _quantize_utils,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_layout_transform as _layout_lib,
    default_8bit_quantize_registry as _registry_lib,
    default_8bit_transforms as _transforms_lib,
)
from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import (  # noqa: E402
    model_transformer as _model_transformer,
)


def _weight_quantizer(per_axis):
    """int8 symmetric narrow-range weights, the form TFLite kernels expect."""
    return _quantizers.LastValueQuantizer(
        num_bits=8, per_axis=per_axis, symmetric=True, narrow_range=True
    )


def _activation_quantizer():
    """int8 asymmetric activation range tracked by a moving average (tfmot's default)."""
    return _quantizers.MovingAverageQuantizer(
        num_bits=8, per_axis=False, symmetric=False, narrow_range=False
    )


@keras.saving.register_keras_serializable(package="keras_convzoo")
class LayerQuantizeConfig(_QuantizeConfig):
    """Quantizes named weight attributes of a layer and, optionally, its output.

    Args:
        per_axis_weights: attribute names of kernels quantized per output
            channel (their last axis), e.g. ``["kernel"]``.
        per_tensor_weights: attribute names quantized with one range.
        quantize_output: add an int8 fake-quant to the layer's output.

    Attributes that are ``None`` on a layer (e.g. a weight of another form
    of the layer) are skipped, so one config serves both forms of a layer.

    Example:
    >>> config = LayerQuantizeConfig(per_axis_weights=["kernel"])
    >>> annotated = tfmot.quantization.keras.quantize_annotate_layer(layer, config)
    """

    def __init__(self, per_axis_weights=(), per_tensor_weights=(), quantize_output=True):
        self.per_axis_weights = tuple(per_axis_weights)
        self.per_tensor_weights = tuple(per_tensor_weights)
        self.quantize_output = bool(quantize_output)

    def _weight_attrs(self, layer):
        names = [(n, True) for n in self.per_axis_weights]
        names += [(n, False) for n in self.per_tensor_weights]
        return [(n, per_axis) for n, per_axis in names if getattr(layer, n, None) is not None]

    def get_weights_and_quantizers(self, layer):
        return [
            (getattr(layer, name), _weight_quantizer(per_axis))
            for name, per_axis in self._weight_attrs(layer)
        ]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        attrs = self._weight_attrs(layer)
        if len(attrs) != len(quantize_weights):
            raise ValueError(
                f"{type(layer).__name__} '{layer.name}': expected {len(attrs)} quantized "
                f"weights ({[n for n, _ in attrs]}), received {len(quantize_weights)}."
            )
        for (name, _), value in zip(attrs, quantize_weights):
            setattr(layer, name, value)

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_activation_quantizer()] if self.quantize_output else []

    def get_config(self):
        return {
            "per_axis_weights": list(self.per_axis_weights),
            "per_tensor_weights": list(self.per_tensor_weights),
            "quantize_output": self.quantize_output,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)


@keras.saving.register_keras_serializable(package="keras_convzoo")
class NoOpQuantizeConfig(LayerQuantizeConfig):
    """Leaves a layer as it is: no weight or output quantization.

    For layers that move data without arithmetic (the int8 output keeps the
    input's scale: ``ChannelShuffle``, ``ChannelSplit``), that are the
    identity at inference (``StochasticDepth``), or that stay float during
    training (the training form of the continuous convolutions).
    """

    def __init__(self, **kwargs):
        super().__init__(quantize_output=False)

    def get_config(self):
        return {}


def _continuous_conv_config(layer):
    if getattr(layer, "deploy", False):
        return LayerQuantizeConfig(per_tensor_weights=["baked_kernel", "pointwise_kernel"])
    return NoOpQuantizeConfig()


def _reparam_config(layer):
    if getattr(layer, "deploy", False):
        return LayerQuantizeConfig(per_tensor_weights=["large_kernel"])
    return LayerQuantizeConfig()


#: Layer class -> function(layer) -> QuantizeConfig, for the package's layers
#: and the standard layers tfmot's default registry lacks.
_FACTORIES = {
    # Per tensor: the split/depthwise lowerings slice and transpose the kernel,
    # and the converter rejects per-axis ranges that move axes.
    zoo_layers.GroupConv2D: lambda layer: LayerQuantizeConfig(per_tensor_weights=["kernel"]),
    zoo_layers.ShiftConv2D: lambda layer: LayerQuantizeConfig(per_axis_weights=["kernel"]),
    # Keras' DepthwiseConv2D with an XLA-on-CPU lowering: tfmot's own config for it.
    zoo_layers.DepthwiseConv2D: lambda layer: _registry_lib.Default8BitConvQuantizeConfig(
        ["depthwise_kernel"], ["activation"], False
    ),
    # Keras' Conv2D / LayerNormalization with a training-step gradient of their own: tfmot's configs for them.
    zoo_layers.Conv2D: lambda layer: _registry_lib.Default8BitConvQuantizeConfig(["kernel"], ["activation"], False),
    zoo_layers.LayerNormalization: lambda layer: LayerQuantizeConfig(),
    zoo_layers.LayerScale: lambda layer: LayerQuantizeConfig(per_tensor_weights=["gamma"]),
    zoo_layers.GELU: lambda layer: LayerQuantizeConfig(),
    zoo_layers.SqueezeExcite: lambda layer: LayerQuantizeConfig(
        per_tensor_weights=["reduce_kernel", "expand_kernel"]
    ),
    zoo_layers.ReparamLargeKernelConv: _reparam_config,
    zoo_layers.SpatialTransformer: lambda layer: LayerQuantizeConfig(),
    zoo_layers.CKConv: _continuous_conv_config,
    zoo_layers.FlexConv: _continuous_conv_config,
    zoo_layers.SeparableFlexConv: _continuous_conv_config,
    zoo_layers.StochasticDepth: lambda layer: NoOpQuantizeConfig(),
    zoo_layers.ChannelShuffle: lambda layer: NoOpQuantizeConfig(),
    zoo_layers.ChannelSplit: lambda layer: NoOpQuantizeConfig(),
    zoo_layers.MAGNet: lambda layer: NoOpQuantizeConfig(),
    zoo_layers.KernelMLP: lambda layer: NoOpQuantizeConfig(),
    keras.layers.BatchNormalization: lambda layer: LayerQuantizeConfig(),
    keras.layers.LayerNormalization: lambda layer: LayerQuantizeConfig(),
    keras.layers.Multiply: lambda layer: LayerQuantizeConfig(),
}


def zoo_quantize_config(layer):
    """The keras_convzoo QuantizeConfig of ``layer``, or None for layers tfmot handles.

    Args:
        layer: a tf_keras layer.

    Returns:
        A ``QuantizeConfig`` for the package's layers and for the standard
        layers tfmot's default 8-bit registry does not support
        (``BatchNormalization`` outside a conv pattern, ``LayerNormalization``,
        ``Multiply``); ``None`` otherwise.
    """
    factory = _FACTORIES.get(type(layer))
    return None if factory is None else factory(layer)


#: Layers whose following ReLU TFLite fuses into them (one int8 rounding, after the ReLU).
#: (tfmot matches ``"^" + pattern + "$"``; registered layers are named ``keras_convzoo>Name``.)
_RELU_PRODUCERS = (
    "(?:Add|Multiply|Conv2D|DepthwiseConv2D|Dense|BatchNormalization"
    "|(?:keras_convzoo>)?(?:GroupConv2D|ShiftConv2D|ReparamLargeKernelConv))"
)


def _without_output_range(class_name, layer_config):
    """The QuantizeConfig of a package layer (by class name) with its output range removed."""
    if class_name == "GroupConv2D":
        return LayerQuantizeConfig(per_tensor_weights=["kernel"], quantize_output=False)
    if class_name == "ShiftConv2D":
        return LayerQuantizeConfig(per_axis_weights=["kernel"], quantize_output=False)
    if class_name == "ReparamLargeKernelConv" and layer_config.get("deploy"):
        return LayerQuantizeConfig(per_tensor_weights=["large_kernel"], quantize_output=False)
    return NoOpQuantizeConfig()


class _ReLUAfterLayerQuantize(_transforms_lib.LayerReLUQuantize):
    """A layer + ``ReLU``: one int8 range, after the ReLU, as TFLite fuses them.

    Replaces tfmot's transform for two reasons. tfmot gives the layer before
    the ReLU a NoOp config, which also drops its *weight* quantization: a
    ``Conv2D(use_bias=True)`` + ``ReLU`` (every conv of a ``deploy.fuse``-d
    model) then trains with float weights while TFLite runs int8 weights; here
    the layer keeps its weight quantizers and only its output range goes (its
    activation becomes tfmot's ``NoOpActivation``, as in tfmot's Conv + BN
    transform). And the package's convolutions (``GroupConv2D``,
    ``ShiftConv2D``, ``ReparamLargeKernelConv``) and a lone
    ``BatchNormalization`` get the same treatment, so QAT does not round
    twice where the TFLite kernel rounds once.
    """

    def pattern(self):
        return _transforms_lib.LayerPattern("ReLU", inputs=[_transforms_lib.LayerPattern(_RELU_PRODUCERS)])

    def replacement(self, match_layer):
        producer = match_layer.input_layers[0]
        if _transforms_lib._has_custom_quantize_config(producer):
            return match_layer
        class_name = producer.layer["class_name"].split(">")[-1]
        config = producer.layer["config"]
        if class_name in ("Conv2D", "DepthwiseConv2D", "Dense"):
            if config.get("activation") in ("linear", None):
                config["activation"] = _quantize_utils.serialize_activation(
                    _activation_lib.NoOpActivation(), use_legacy_format=True
                )
        elif class_name in ("Add", "Multiply", "BatchNormalization"):
            producer.metadata["quantize_config"] = NoOpQuantizeConfig()
        else:
            producer.metadata["quantize_config"] = _without_output_range(class_name, config)
        return match_layer

    def custom_objects(self):
        objects = dict(super().custom_objects())
        objects["NoOpActivation"] = _activation_lib.NoOpActivation
        objects["LayerQuantizeConfig"] = LayerQuantizeConfig
        objects["NoOpQuantizeConfig"] = NoOpQuantizeConfig
        return objects


class _ReLUActivationAfterLayerQuantize(_ReLUAfterLayerQuantize):
    """The same for ``Activation("relu")`` after the layer."""

    def pattern(self):
        return _transforms_lib.LayerPattern(
            "Activation",
            config={"activation": "relu"},
            inputs=[_transforms_lib.LayerPattern(_RELU_PRODUCERS)],
        )


class ZooQuantizeLayoutTransform(_layout_lib.Default8BitQuantizeLayoutTransform):
    """tfmot's default 8-bit graph transforms, with the ReLU transforms keeping weight quantization."""

    def apply(self, model, layer_quantize_map):
        transforms = [
            _transforms_lib.InputLayerQuantize(),
            _transforms_lib.SeparableConv1DQuantize(),
            _transforms_lib.SeparableConvQuantize(),
            _transforms_lib.Conv2DReshapeBatchNormReLUQuantize(),
            _transforms_lib.Conv2DReshapeBatchNormActivationQuantize(),
            _transforms_lib.Conv2DBatchNormReLUQuantize(),
            _transforms_lib.Conv2DBatchNormActivationQuantize(),
            _transforms_lib.Conv2DReshapeBatchNormQuantize(),
            _transforms_lib.Conv2DBatchNormQuantize(),
            _transforms_lib.ConcatTransform6Inputs(),
            _transforms_lib.ConcatTransform5Inputs(),
            _transforms_lib.ConcatTransform4Inputs(),
            _transforms_lib.ConcatTransform3Inputs(),
            _transforms_lib.ConcatTransform(),
            _transforms_lib.DenseBatchNormQuantize(),
            _transforms_lib.DenseBatchNormReLUQuantize(),
            _transforms_lib.DenseBatchNormActivationQuantize(),
            _ReLUAfterLayerQuantize(),
            _ReLUActivationAfterLayerQuantize(),
        ]
        return _model_transformer.ModelTransformer(
            model, transforms, set(layer_quantize_map.keys()), layer_quantize_map
        ).transform()


class ZooQuantizeRegistry(_registry_lib.Default8BitQuantizeRegistry):
    """tfmot's default 8-bit registry plus the configs of ``zoo_quantize_config``."""

    def supports(self, layer):
        return type(layer) in _FACTORIES or super().supports(layer)

    def get_quantize_config(self, layer):
        config = zoo_quantize_config(layer)
        if config is not None:
            return config
        return super().get_quantize_config(layer)


class ZooQuantizeScheme(_Default8BitScheme):
    """tfmot's default 8-bit scheme (TFLite int8) with the keras_convzoo registry and transforms."""

    def get_layout_transformer(self):
        return ZooQuantizeLayoutTransform()

    def get_quantize_registry(self):
        return ZooQuantizeRegistry(disable_per_axis=self._disable_per_axis)


def custom_objects():
    """Names ``quantize_scope`` must know to clone and load QAT models of the package."""
    objects = zoo_layers.custom_objects()
    objects.update(
        {"LayerQuantizeConfig": LayerQuantizeConfig, "NoOpQuantizeConfig": NoOpQuantizeConfig}
    )
    return objects


__all__ = [
    "LayerQuantizeConfig",
    "NoOpQuantizeConfig",
    "ZooQuantizeRegistry",
    "ZooQuantizeScheme",
    "zoo_quantize_config",
    "custom_objects",
]
