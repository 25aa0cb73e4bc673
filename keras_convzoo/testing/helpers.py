"""Pytest-native helpers that check layers and applications the same way everywhere.

Vocabulary of keras-hub's test case, without any ``keras.src`` import, so the
helpers run on Keras 3 and on tf_keras (``TF_USE_LEGACY_KERAS=1``).
"""

import os
import tempfile

import numpy as np

from keras_convzoo.backend import keras, tf


def _random(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _as_numpy(x):
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def run_serialization_test(instance):
    """Checks that ``get_config``/``from_config`` and Keras serialization round-trip.

    Args:
        instance: a Layer (built or not).

    Returns:
        The re-created instance.

    Example:
    >>> run_serialization_test(GroupConv2D(8, 3, groups=2))
    """
    config = instance.get_config()
    clone = instance.__class__.from_config(config)
    assert clone.get_config() == config, "from_config(get_config()) changed the config"
    serialized = keras.saving.serialize_keras_object(instance)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(instance)
    assert revived.get_config() == config, "serialize/deserialize changed the config"
    return clone


def run_model_saving_test(model, input_data, atol=1e-6):
    """Saves ``model`` as ``.keras`` and as ``.weights.h5``, reloads, compares outputs.

    Args:
        model: a built ``keras.Model``.
        input_data: an input batch.
        atol: tolerance on the output difference.

    Returns:
        The reloaded model.
    """
    expected = _as_numpy(model(input_data, training=False))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        restored = keras.models.load_model(path)
        np.testing.assert_allclose(
            _as_numpy(restored(input_data, training=False)), expected, atol=atol, rtol=0
        )
        weights_path = os.path.join(tmp, "model.weights.h5")
        model.save_weights(weights_path)
        restored.load_weights(weights_path)
        np.testing.assert_allclose(
            _as_numpy(restored(input_data, training=False)), expected, atol=atol, rtol=0
        )
    return restored


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_shape,
    expected_output_shape,
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None,
    input_data=None,
    run_training_check=True,
    run_saving_check=True,
):
    """Runs the checks every layer of the package must pass.

    Builds the layer on ``input_shape`` (batch included), then checks the
    output shape, ``compute_output_shape``, weight counts, config round trip
    (a clone with copied weights gives the same output), symbolic use inside
    a functional model, one gradient step that changes the output, and a
    ``.keras`` save/load round trip.

    Args:
        layer_cls: the Layer class.
        init_kwargs: constructor arguments.
        input_shape: input shape with batch, e.g. ``(2, 8, 8, 16)``.
        expected_output_shape: the expected output shape with batch.
        expected_num_trainable_weights: number of trainable variables.
        expected_num_non_trainable_weights: number of non-trainable variables.
        input_data: optional input array (random unit normal by default).
        run_training_check: check gradients reach every trainable weight.
        run_saving_check: check the ``.keras`` round trip.

    Returns:
        The layer instance that was tested.

    Example:
    >>> run_layer_test(GroupConv2D, {"filters": 8, "kernel_size": 3, "groups": 2},
    ...                (2, 8, 8, 4), (2, 6, 6, 8), expected_num_trainable_weights=2)
    """
    data = _random(input_shape) if input_data is None else input_data
    layer = layer_cls(**init_kwargs)
    output = layer(data)
    assert tuple(output.shape) == tuple(expected_output_shape), (
        f"output shape {tuple(output.shape)} != expected {tuple(expected_output_shape)}"
    )
    computed = tuple(layer.compute_output_shape(tuple(input_shape)))
    assert computed == tuple(expected_output_shape), (
        f"compute_output_shape gave {computed}, expected {tuple(expected_output_shape)}"
    )
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights

    clone = run_serialization_test(layer)
    clone(data)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(_as_numpy(clone(data)), _as_numpy(output), atol=1e-6, rtol=0)

    symbolic_shape = (None,) + tuple(input_shape[1:])
    inputs = keras.Input(batch_shape=symbolic_shape)
    model = keras.Model(inputs, layer_cls(**init_kwargs)(inputs))
    model.layers[-1].set_weights(layer.get_weights())
    np.testing.assert_allclose(_as_numpy(model(data)), _as_numpy(output), atol=1e-5, rtol=1e-5)

    if run_training_check and model.trainable_weights:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(data, training=True)))
        grads = tape.gradient(loss, model.trainable_weights)
        for weight, grad in zip(model.trainable_weights, grads):
            assert grad is not None, f"no gradient reaches {weight.name}"
            assert np.all(np.isfinite(_as_numpy(grad))), f"non-finite gradient for {weight.name}"
        assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads), "all gradients are zero"
    if run_saving_check:
        run_model_saving_test(model, data)
    return layer


def run_application_test(
    spec_or_name,
    overrides=None,
    sizes=((64, 64), (97, 131)),
    classes=7,
    check_saving=True,
):
    """Checks a registered variant (usually its tiny twin) against keras.applications semantics.

    - ``include_top=True`` with ``classes``: output ``(batch, classes)``,
      rows sum to one (softmax), last layer a Dense named ``predictions``.
    - ``classifier_activation=None`` gives logits whose softmax equals the
      softmax head's output when weights are shared.
    - ``include_top=False`` with ``pooling`` None / "avg" / "max" at
      ``input_shape=(None, None, C)`` runs at every size in ``sizes``
      (4D map for None, vectors for the pools; avg/max equal the family
      head applied to the reductions of the feature map).
    - ``input_tensor`` given as a Keras tensor becomes the model input.
    - ``.keras`` and ``.weights.h5`` round trips give identical outputs.

    Args:
        spec_or_name: a ``ModelSpec`` or a registry name.
        overrides: config overrides (default: the spec's ``test_overrides``).
        sizes: spatial sizes to run with ``None`` input dims.
        classes: classes of the test head.
        check_saving: run the save/load round trips.
    """
    from keras_convzoo.applications import build_application, get_spec

    spec = get_spec(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    overrides = dict(spec.test_overrides if overrides is None else overrides)
    channels = spec.input_channels
    size = sizes[0]
    free_shape = (None,) * spec.spatial_dims + (channels,)
    batch = _random((2,) + tuple(size) + (channels,))

    top = build_application(spec, input_shape=free_shape, classes=classes, **overrides)
    assert top.layers[-1].name == "predictions"
    assert isinstance(top.layers[-1], keras.layers.Dense)
    probs = _as_numpy(top(batch, training=False))
    assert probs.shape == (2, classes)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-4)

    logits_model = build_application(
        spec, input_shape=free_shape, classes=classes, classifier_activation=None, **overrides
    )
    logits_model.set_weights(top.get_weights())
    logits = _as_numpy(logits_model(batch, training=False))
    np.testing.assert_allclose(_as_numpy(tf.nn.softmax(logits)), probs, atol=1e-5)

    trunk = build_application(spec, include_top=False, input_shape=free_shape, **overrides)
    trunk.set_weights(top.get_weights()[: len(trunk.weights)])
    pooled = {}
    for pooling in ("avg", "max"):
        pooled[pooling] = build_application(
            spec, include_top=False, pooling=pooling, input_shape=free_shape, **overrides
        )
        pooled[pooling].set_weights(top.get_weights()[: len(pooled[pooling].weights)])
    for hw in sizes:
        x = _random((2,) + tuple(hw) + (channels,), seed=1)
        feature_map = _as_numpy(trunk(x, training=False))
        assert feature_map.ndim == spec.spatial_dims + 2 and feature_map.shape[0] == 2
        axes = tuple(range(1, spec.spatial_dims + 1))
        for pooling, reduce in (("avg", np.mean), ("max", np.max)):
            model = pooled[pooling]
            # the family head (e.g. ConvNeXt's LayerNorm) follows the pooling
            reduced = reduce(feature_map, axis=axes)
            if model.layers[-1].name != f"{pooling}_pool":
                head = keras.Model(model.get_layer(f"{pooling}_pool").output, model.output)
                reduced = _as_numpy(head(reduced))
            np.testing.assert_allclose(
                _as_numpy(model(x, training=False)),
                reduced,
                atol=1e-4,
                rtol=1e-4,
            )
        assert _as_numpy(top(x, training=False)).shape == (2, classes)

    tensor = keras.Input(shape=tuple(size) + (channels,), name="given_input")
    with_tensor = build_application(spec, input_tensor=tensor, classes=classes, **overrides)
    assert with_tensor.inputs[0] is tensor or with_tensor.inputs[0].name == tensor.name
    assert tuple(with_tensor.output_shape) == (None, classes)

    if check_saving:
        run_model_saving_test(top, batch)
    return top


def random_array(shape, seed=0):
    """A seeded standard-normal float32 array: the tests' default input.

    Args:
        shape: the array's shape.
        seed: int, the NumPy generator seed.

    Returns:
        A float32 ``numpy.ndarray``.

    Example:
    >>> random_array((2, 32, 32, 3), seed=1).dtype
    dtype('float32')
    """
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def randomize_batch_norms(model, seed=0):
    """Gives every ``BatchNormalization`` of ``model`` random affine weights and statistics.

    Freshly initialised BNs are identities (and a zero-initialised residual
    branch stays silent), which hides fusion, export and porting mistakes;
    after this each BN is a distinct per-channel affine map: gamma and the
    moving variance uniform in [0.5, 1.5], beta and the moving mean normal
    with std 0.2.

    Args:
        model: a Keras model (nested models are visited, in layer order).
        seed: int, the NumPy generator seed.

    Returns:
        ``model``, changed in place.

    Example:
    >>> model = randomize_batch_norms(kcz.ResNeXt50(weights=None), seed=1)
    """
    rng = np.random.default_rng(seed)

    def batch_norms(container):
        for layer in container.layers:
            if isinstance(layer, keras.Model):
                yield from batch_norms(layer)
            elif isinstance(layer, keras.layers.BatchNormalization):
                yield layer

    for layer in batch_norms(model):
        weights = []
        for w in layer.weights:
            name = w.name.split("/")[-1].split(":")[0]
            if "gamma" in name or "variance" in name:
                weights.append(rng.uniform(0.5, 1.5, w.shape))
            else:  # beta, moving_mean
                weights.append(rng.normal(0.0, 0.2, w.shape))
        layer.set_weights([w.astype("float32") for w in weights])
    return model


def tflite_filter_shapes(file, op_name="CONV_2D"):
    """The filter shapes of a TFLite file's ``op_name`` ops, in execution order.

    Shows which lowering a file carries: a grouped ``CONV_2D`` has filters
    ``(out, kh, kw, in // groups)``, a dense one ``(out, kh, kw, in)``; a
    ``DEPTHWISE_CONV_2D`` filter is ``(1, kh, kw, channels)``.

    Args:
        file: a ``.tflite`` path or the flatbuffer bytes.
        op_name: the TFLite op name, e.g. ``"CONV_2D"``, ``"DEPTHWISE_CONV_2D"``.

    Returns:
        A list of int tuples, one per op (the op's second input).

    Example:
    >>> tflite_filter_shapes("resnext.tflite")[:2]
    [(128, 1, 1, 64), (128, 3, 3, 4)]
    """
    from keras_convzoo.export import tflite_interpreter

    interpreter = tflite_interpreter(file)
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interpreter.get_tensor_details()}
    return [shapes[op["inputs"][1]] for op in interpreter._get_ops_details() if op["op_name"] == op_name]
