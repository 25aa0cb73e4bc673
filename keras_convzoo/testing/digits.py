"""scikit-learn's digits as small RGB photos, and a tiny classifier trained on them.

The digits ship with scikit-learn (nothing is downloaded), so tests, tools and
examples can train a real model offline in seconds: a user's fine-tuned model
in miniature, taking 0-255 pixels with its scaling inside, which is what the
export checks must handle.
"""

import numpy as np


def load_digits_images(size=32, channels=3, test_fraction=0.25, seed=0, limit=None):
    """scikit-learn's 8x8 digits as images with values 0-255, split in train/test.

    The 8x8 images (values 0-16) are scaled to 0-255, resized bilinearly to
    ``size`` x ``size`` and repeated over ``channels``, like photos in the
    range ``keras.applications`` models expect before ``preprocess_input``.

    Args:
        size: output side in pixels (8 keeps the original images).
        channels: 1 or 3.
        test_fraction: share of the 1797 images held out, stratified by class.
        seed: seed of the split.
        limit: keep at most this many images in each split (quick runs).

    Returns:
        ``(x_train, y_train, x_test, y_test)``: float32 ``(N, size, size,
        channels)`` images and int64 labels.

    Example:
    >>> x_train, y_train, x_test, y_test = load_digits_images(32)
    >>> x_train.shape, float(x_train.max())
    ((1347, 32, 32, 3), 255.0)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).astype("float32")[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    if limit is not None:
        x_train, y_train, x_test, y_test = x_train[:limit], y_train[:limit], x_test[:limit], y_test[:limit]
    x_train, x_test = (resize_images(x, size, channels) for x in (x_train, x_test))
    return x_train, y_train.astype("int64"), x_test, y_test.astype("int64")


def resize_images(images, size, channels=None):
    """Bilinear resize of ``(N, H, W, C)`` float images to ``size`` x ``size`` (numpy in, numpy out).

    Args:
        images: float array ``(N, H, W, C)``.
        size: output side.
        channels: repeat a single channel to this many (None keeps them).

    Returns:
        A float32 array ``(N, size, size, channels or C)``.
    """
    from keras_convzoo.backend import tf

    images = np.asarray(images, "float32")
    if images.shape[1:3] != (size, size):
        images = tf.image.resize(images, (size, size), method="bilinear").numpy()
    if channels is not None and images.shape[-1] != channels:
        images = np.repeat(images, channels, axis=-1)
    return np.clip(images, 0.0, 255.0)


def digits_classifier(name, size=32, tiny=True, seed=0):
    """A registry backbone (random init) with a 10-class head, taking 0-255 RGB digits.

    The input scaling is inside the model (``kcz.preprocessing_layers`` of the
    variant; ``"tf"`` scaling to -1..1 for families without ImageNet scaling,
    e.g. CCNN), the backbone is nested as one layer, as in a transfer model.

    Args:
        name: registry name, e.g. ``"mobilenetv2_100"``.
        size: input side in pixels.
        tiny: use the variant's tiny twin (``spec.test_overrides``).
        seed: seed of the head's and backbone's initialisation.

    Returns:
        An uncompiled functional model named ``"digits_<name>"``.
    """
    from keras_convzoo.applications import create_model, get_spec, preprocessing_layers
    from keras_convzoo.backend import keras

    keras.utils.set_random_seed(seed)
    spec = get_spec(name)
    overrides = dict(spec.test_overrides) if tiny else {}
    backbone = create_model(
        name, include_top=False, pooling="avg", input_shape=(size, size, 3), **overrides
    )
    inputs = keras.Input((size, size, 3), name="pixels")
    mode = None if spec.preprocessing else "tf"
    x = inputs
    for layer in preprocessing_layers(name, mode=mode):
        x = layer(x)
    x = backbone(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name=f"digits_{name}")


def train_digits_classifier(name, size=32, epochs=8, tiny=True, seed=0, batch_size=32, learning_rate=3e-3):
    """Trains ``digits_classifier(name)`` on the digits; returns it with its data.

    Args:
        name: registry name.
        size: input side in pixels.
        epochs: training epochs (Adam).
        tiny: use the variant's tiny twin.
        seed: seed of the initialisation, the split and the shuffling.
        batch_size: training batch size.
        learning_rate: Adam's learning rate.

    Returns:
        ``(model, (x_train, y_train, x_test, y_test))``.

    Example:
    >>> model, (_, _, x_test, y_test) = train_digits_classifier("mobilenetv2_100", epochs=2)
    """
    from keras_convzoo.backend import keras

    data = load_digits_images(size, 3, seed=seed)
    x_train, y_train, _, _ = data
    model = digits_classifier(name, size=size, tiny=tiny, seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    return model, data


def accuracy(probabilities, labels):
    """Top-1 accuracy of ``(N, classes)`` scores against integer labels."""
    return float(np.mean(np.argmax(np.asarray(probabilities), axis=-1) == np.asarray(labels)))
