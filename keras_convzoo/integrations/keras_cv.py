"""keras-cv adapter: any registered model as a ``keras_cv.models.Backbone``.

keras-cv (0.9) is imported when ``backbone()`` or ``KerasCVBackbone`` is
first used, never by ``import keras_convzoo``.

Example:
>>> import keras_cv
>>> from keras_convzoo.integrations import keras_cv as kcz_cv
>>> backbone = kcz_cv.backbone("resnext50_32x4d", input_shape=(None, None, 3))
>>> backbone.pyramid_level_inputs
{'P2': 'stage1_block3_out', 'P3': 'stage2_block4_out', 'P4': 'stage3_block6_out', 'P5': 'stage4_block3_out'}
>>> classifier = keras_cv.models.ImageClassifier(backbone=backbone, num_classes=10)
>>> detector = keras_cv.models.RetinaNet(backbone=backbone, num_classes=20, bounding_box_format="xywh")
"""

from keras_convzoo.integrations import _common

KERAS_CV_VERSION = "0.9.0"

_CLASS = []


def _import_keras_cv():
    keras_cv = _common.import_optional("keras_cv", "keras-cv", KERAS_CV_VERSION)
    from keras_cv.src.backend import config

    if not config.keras_3():
        raise ImportError(
            "keras-cv was imported in its Keras 2 mode (tf.keras resolved to tf_keras, e.g. because "
            "tensorflow_model_optimization was imported first, which sets TF_USE_LEGACY_KERAS=1). "
            "keras_convzoo's keras-cv adapter needs Keras 3: import keras_cv (or call this adapter) "
            "before tensorflow_model_optimization, or run QAT in another process."
        )
    return keras_cv


def backbone_class():
    """Returns ``KerasCVBackbone``, the ``keras_cv.models.Backbone`` subclass (imports keras-cv).

    The class is registered for Keras serialization as
    ``"keras_convzoo>KerasCVBackbone"``: to load a saved keras-cv model that
    contains one in a fresh process, call this (or ``backbone()``) first.

    Returns:
        The class.

    Raises:
        ImportError: when keras-cv is missing, naming the pip command.
    """
    if _CLASS:
        return _CLASS[0]
    keras_cv = _import_keras_cv()
    from keras_convzoo.backend import keras

    @keras.saving.register_keras_serializable(package="keras_convzoo")
    class KerasCVBackbone(keras_cv.models.Backbone):
        """A keras_convzoo trunk as a ``keras_cv.models.Backbone``.

        The functional graph is the zoo model's, built with
        ``include_top=False`` (same layers, names and weights);
        ``pyramid_level_inputs`` maps ``"P2"`` .. ``"P5"`` to the layers
        whose outputs have stride 4 .. 32 (the deepest stage of each stride).

        Args:
            model_name: registry name, e.g. ``"resnext50_32x4d"``.
            input_shape: input shape without batch; default
                ``(None, None, channels)``.
            model_kwargs: other builder arguments: ``weights`` (a path, or
                ``"imagenet"``; not kept in the config, the saved model holds
                the weights) and family options (e.g. ``{"depths": ...}``).
            dtype: None (the global policy) or the dtype policy of every
                layer: a name (``"mixed_float16"``, ``"bfloat16"`` ...), a
                ``keras.DTypePolicy`` or a ``keras.dtype_policies.DTypePolicyMap``
                keyed by layer paths (as for the keras-hub adapter).
            **kwargs: ``keras.Model`` arguments (``name``, ``trainable``).
        """

        def __init__(self, model_name, input_shape=None, model_kwargs=None, dtype=None, **kwargs):
            model_kwargs = dict(model_kwargs or {})
            _common.check_model_kwargs("keras_convzoo's KerasCVBackbone", model_kwargs)
            policy = _common.check_dtype(dtype)  # build_trunk returns a plain quantized policy as its map
            trunk, pyramid, policy = _common.build_trunk(model_name, input_shape, model_kwargs, dtype=policy)
            kwargs.setdefault("name", f"{model_name}_backbone")
            super().__init__(inputs=trunk.input, outputs=trunk.output, **kwargs)
            if policy is not None:
                # as keras_hub.models.Backbone: the model's own policy (a quantized one quantizes it)
                self.dtype_policy = policy
            self.model_name = model_name
            self.image_shape = None if input_shape is None else tuple(input_shape)
            self.model_kwargs = _common.config_kwargs(model_kwargs)
            self.pyramid_level_inputs = {level: info.layer for level, info in pyramid.items()}
            self.pyramid_level_channels = {level: info.channels for level, info in pyramid.items()}

        def compute_output_spec(self, inputs, training=None, mask=None):
            # arrays become specs first: keras' functional graph passes them on as they are (see as_specs)
            return super().compute_output_spec(_common.as_specs(self, inputs), training=training, mask=mask)

        def get_config(self):
            config = super().get_config()
            config.update(
                {
                    "model_name": self.model_name,
                    "input_shape": self.image_shape,
                    "model_kwargs": dict(self.model_kwargs),
                    "dtype": keras.dtype_policies.serialize(self.dtype_policy),
                }
            )
            return config

    KerasCVBackbone.__qualname__ = "KerasCVBackbone"
    _CLASS.append(KerasCVBackbone)
    return KerasCVBackbone


def backbone(name, input_shape=None, trainable=True, dtype=None, **kwargs):
    """Builds a registered model as a ``keras_cv.models.Backbone``.

    The backbone is the zoo trunk (``include_top=False``) with keras-cv's
    ``pyramid_level_inputs``: ``{"P2": layer name, ..., "P5": layer name}``,
    the deepest stage output of stride 4, 8, 16 and 32 (levels the model
    lacks are left out: CCNN keeps the resolution and has none). It plugs
    into ``keras_cv.models.ImageClassifier`` (any model) and the detectors
    that read pyramid levels, e.g. ``keras_cv.models.RetinaNet`` (P3-P5).

    Args:
        name: registry name (see ``keras_convzoo.list_models()``).
        input_shape: input shape without the batch axis; default
            ``(None, None, channels)``.
        trainable: whether the backbone's weights are trainable.
        dtype: None (the global policy) or the dtype policy every layer
            computes and stores in: a name (``"mixed_float16"``,
            ``"mixed_bfloat16"``, ``"bfloat16"``), a ``keras.DTypePolicy`` or
            a ``keras.dtype_policies.DTypePolicyMap`` keyed by layer paths
            (quantized policies on Dense / EinsumDense layers).
        **kwargs: ``weights`` (a ``.weights.h5`` path or ``"imagenet"``) and
            the family's config fields (e.g. ``drop_path_rate=0.1``).

    Returns:
        A ``KerasCVBackbone`` (subclass of ``keras_cv.models.Backbone``).

    Raises:
        ImportError: when keras-cv is not installed (``pip install keras-cv==0.9.0``).
        ValueError: for an unknown name or a bad argument value (e.g. an
            unknown dtype policy name).
        TypeError: for an argument the adapter sets itself (``include_top``,
            ``pooling``, ``classes``, ``input_tensor``, ``name``) or an
            unknown one.

    Example:
    >>> import keras_cv
    >>> from keras_convzoo.integrations.keras_cv import backbone
    >>> model = keras_cv.models.ImageClassifier(backbone=backbone("seresnet50"), num_classes=10)
    """
    return backbone_class()(
        model_name=name, input_shape=input_shape, model_kwargs=kwargs, trainable=trainable, dtype=dtype
    )


def __getattr__(attribute):
    if attribute == "KerasCVBackbone":
        return backbone_class()
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
