"""keras-hub adapter: any registered model as a ``keras_hub.models.Backbone``.

The backbone is a ``keras_hub.models.FeaturePyramidBackbone`` (a
``keras_hub.models.Backbone`` with ``pyramid_outputs``), so it plugs into
``keras_hub.models.ImageClassifier`` and the keras-hub models that take an
image encoder with pyramid outputs (e.g. ``keras_hub.models.RetinaNetBackbone``).
keras-hub (0.32) is imported by ``import keras_convzoo.integrations.keras_hub``
(never by ``import keras_convzoo``), which registers ``KerasHubBackbone`` for
Keras serialization: a saved keras-hub model with a zoo backbone loads with
``keras.saving.load_model`` after that import alone. Without keras-hub the
module still imports, and ``backbone()`` names the pip command.

Dtype policies follow keras-hub's backbones: ``dtype=`` (a policy name such
as ``"mixed_float16"``, ``"mixed_bfloat16"``, ``"bfloat16"``, or a
``keras.dtype_policies.DTypePolicyMap`` keyed by layer paths) is the policy
every layer is built with, so outputs, output specs and weights carry its
dtypes, and it round-trips through ``get_config`` and ``.keras`` files.
Quantized policies (``"int8_from_float32"``, ``"float8_from_float32"``) in a
map apply to Dense / EinsumDense layers, which are quantized from their float
weights (the ConvNeXt blocks' pointwise MLPs, CCNN's pointwise linears).
CCNN's kernel generators (``MAGNet``) stay float32 under every policy: they
multiply positions by large frequencies; the kernels they produce are cast
to the policy's compute dtype.

Example:
>>> import keras_hub
>>> from keras_convzoo.integrations import keras_hub as kcz_hub
>>> backbone = kcz_hub.backbone("convnext_tiny")
>>> sorted(backbone.pyramid_outputs)
['P2', 'P3', 'P4', 'P5']
>>> classifier = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=10)
>>> half = kcz_hub.backbone("convnext_tiny", dtype="mixed_bfloat16")
>>> half.compute_dtype, half.get_layer("stem_conv").kernel.dtype
('bfloat16', 'float32')
"""

from keras_convzoo.integrations import _common

KERAS_HUB_VERSION = "0.32.0"

_CLASS = []


def backbone_class():
    """Returns ``KerasHubBackbone``, the ``keras_hub.models.FeaturePyramidBackbone`` subclass.

    Imports keras-hub. The class is registered for Keras serialization as
    ``"keras_convzoo>KerasHubBackbone"``: to load a saved model that contains
    one in a fresh process, call this (or ``backbone()``) first.

    Returns:
        The class.

    Raises:
        ImportError: when keras-hub is missing, naming the pip command.
    """
    if _CLASS:
        return _CLASS[0]
    keras_hub = _common.import_optional("keras_hub", "keras-hub", KERAS_HUB_VERSION)
    from keras_convzoo.backend import keras

    @keras.saving.register_keras_serializable(package="keras_convzoo")
    class KerasHubBackbone(keras_hub.models.FeaturePyramidBackbone):
        """A keras_convzoo trunk as a ``keras_hub.models.FeaturePyramidBackbone``.

        The functional graph is the zoo model's, built with
        ``include_top=False`` (same layers, names and weights);
        ``pyramid_outputs`` maps ``"P2"`` .. ``"P5"`` to the stage outputs
        of stride 4 .. 32 (the deepest stage of each stride);
        ``pyramid_layers`` gives their layer names. The default name is
        keras-hub's class-derived one (``"keras_hub_backbone"``, made
        unique by Keras).

        Args:
            model_name: registry name, e.g. ``"resnext50_32x4d"``.
            image_shape: input shape without batch (keras-hub's name);
                default ``(None, None, channels)``.
            model_kwargs: other builder arguments: ``weights`` (not kept in
                the config; the saved model holds the weights) and family
                options (e.g. ``{"depths": ...}``).
            dtype: None (the global policy) or the dtype policy every layer
                is built with: a name, a ``keras.DTypePolicy`` or a
                ``keras.dtype_policies.DTypePolicyMap`` keyed by layer paths
                (see the module docstring).
            **kwargs: ``keras_hub.models.Backbone`` arguments (``name``,
                ``trainable``).
        """

        def __init__(self, model_name, image_shape=None, model_kwargs=None, dtype=None, **kwargs):
            model_kwargs = dict(model_kwargs or {})
            _common.check_model_kwargs("keras_convzoo's KerasHubBackbone", model_kwargs)
            policy = _common.check_dtype(dtype)  # build_trunk returns a plain quantized policy as its map
            trunk, pyramid, policy = _common.build_trunk(model_name, image_shape, model_kwargs, dtype=policy)
            super().__init__(inputs=trunk.input, outputs=trunk.output, dtype=policy, **kwargs)
            self.model_name = model_name
            self.image_shape = None if image_shape is None else tuple(image_shape)
            self.data_format = "channels_last"
            self.model_kwargs = _common.config_kwargs(model_kwargs)
            self.pyramid_outputs = {level: self.get_layer(info.layer).output for level, info in pyramid.items()}
            self.pyramid_layers = {level: info.layer for level, info in pyramid.items()}

        def compute_output_spec(self, inputs, training=None, mask=None):
            # arrays become specs first: keras' functional graph passes them on as they are (see as_specs)
            return super().compute_output_spec(_common.as_specs(self, inputs), training=training, mask=mask)

        def get_config(self):
            config = super().get_config()
            config.update(
                {
                    "model_name": self.model_name,
                    "image_shape": self.image_shape,
                    "model_kwargs": dict(self.model_kwargs),
                }
            )
            return config

    KerasHubBackbone.__qualname__ = "KerasHubBackbone"
    _CLASS.append(KerasHubBackbone)
    return KerasHubBackbone


def backbone(name, input_shape=None, trainable=True, dtype=None, **kwargs):
    """Builds a registered model as a ``keras_hub.models.Backbone``.

    Returns a ``keras_hub.models.FeaturePyramidBackbone`` whose graph is the
    zoo trunk (``include_top=False``) and whose ``pyramid_outputs`` maps
    ``"P2"`` .. ``"P5"`` to the deepest stage output of stride 4, 8, 16 and
    32 (levels the model lacks are left out: CCNN has none).

    Args:
        name: registry name (see ``keras_convzoo.list_models()``).
        input_shape: input shape without the batch axis; default
            ``(None, None, channels)``.
        trainable: whether the backbone's weights are trainable.
        dtype: None (the global policy) or the dtype policy every layer
            computes and stores in, as for keras-hub's backbones: a name
            (``"mixed_float16"``, ``"mixed_bfloat16"``, ``"bfloat16"``), a
            ``keras.DTypePolicy`` or a ``keras.dtype_policies.DTypePolicyMap``
            keyed by layer paths (``int8_from_float32`` /
            ``float8_from_float32`` on Dense or EinsumDense layers quantize
            them from their float weights).
        **kwargs: ``weights`` (a ``.weights.h5`` path or ``"imagenet"``) and
            the family's config fields.

    Returns:
        A ``KerasHubBackbone``.

    Raises:
        ImportError: when keras-hub is not installed (``pip install keras-hub==0.32.0``).
        ValueError: for an unknown name or a bad argument value (e.g. an
            unknown dtype policy name, a map key that is no layer path, a
            quantized policy on a layer Keras does not quantize).
        TypeError: for an argument the adapter sets itself (``include_top``,
            ``pooling``, ``classes``, ``input_tensor``, ``name``) or an
            unknown one.

    Example:
    >>> import keras_hub
    >>> from keras_convzoo.integrations.keras_hub import backbone
    >>> model = keras_hub.models.ImageClassifier(backbone=backbone("mobilenetv2_100"), num_classes=10)
    """
    options = dict(model_name=name, image_shape=input_shape, model_kwargs=kwargs, trainable=trainable)
    if dtype is not None:
        options["dtype"] = dtype
    return backbone_class()(**options)


def __getattr__(attribute):
    if attribute == "KerasHubBackbone":
        return backbone_class()
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")


# Importing this module is using keras-hub: register the class now, as keras-hub's own models are registered
# by `import keras_hub`, so that load_model finds it. Without keras-hub (or under tf_keras) backbone() explains.
try:
    backbone_class()
except (ImportError, RuntimeError):
    pass
