"""Spatial transformer: a learned affine warp with a differentiable bilinear sampler."""

from keras_convzoo.backend import keras, register_serializable, tf
from keras_convzoo.layers._validation import normalize_pair

#: Bias of the final ``Dense(6)`` at initialisation: the identity transform.
IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@register_serializable
class SpatialTransformer(keras.layers.Layer):
    """Warps its input with an affine transform predicted from the input itself.

    ``theta = Dense(6)(localization(x))`` gives, per sample, the 2x3 matrix
    ``[[a, b, c], [d, e, f]]`` (``theta = (a, b, c, d, e, f)``) that maps each
    output location ``(x_t, y_t)`` to the input location it samples from::

        x_s = a * x_t + b * y_t + c
        y_s = d * x_t + e * y_t + f

    in normalised coordinates, ``x`` along the width and ``y`` along the
    height, ``-1`` at the left/top and ``+1`` at the right/bottom (the layout
    of PyTorch's ``affine_grid``/``grid_sample``). The input is then sampled
    bilinearly at ``(x_s, y_s)``, reading zeros outside the image, so the
    output is differentiable with respect to both the input and ``theta``
    (hence the localisation weights). The sampler is written with TensorFlow
    ops only (floor, one ``gather`` per corner on the flattened input); no
    TensorFlow Addons.

    The layer appends its own final ``Dense(6)`` (named ``"affine"``) to
    ``localization``, initialised with a zero kernel and the bias
    ``(1, 0, 0, 0, 1, 0)``: at initialisation every sample gets the identity
    transform, so with ``output_size`` equal to the input size the layer
    starts as the identity whatever the localisation network computes.

    ``align_corners`` fixes the meaning of ``-1`` and ``+1`` (as in PyTorch):

    - ``False`` (default): they are the outer edges of the border pixels;
      pixel ``i`` of a side of ``n`` pixels has its centre at
      ``(2 i + 1) / n - 1``.
    - ``True``: they are the centres of the border pixels; pixel ``i`` is at
      ``2 i / (n - 1) - 1`` (``0`` when ``n == 1``).

    Both conventions apply to the output grid and to the input being
    sampled, so each gives the exact identity at initialisation.

    The layer works with ``None`` spatial sizes (the sampling grid is built
    from the runtime shape). TFLite conversion needs a fixed input size
    (``to_tflite(..., input_shape=(H, W, C))``), as for any model there;
    ONNX export keeps dynamic sizes.

    Args:
        localization: a Keras layer or model mapping the input
            ``(batch, H, W, C)`` to features ``(batch, F)`` with ``F`` known
            (end it with global pooling or ``Flatten`` on a fixed size). It is
            serialised with ``keras.layers.serialize`` in ``get_config``.
        output_size: ``None`` (the input's height and width) or an int / a
            pair ``(height, width)`` of positive ints.
        align_corners: bool, see above.
        **kwargs: base Layer arguments (``name``, ``dtype``, ``trainable``).

    Input shape:
        4D tensor ``(batch, height, width, channels)``; batch and spatial
        sizes may be ``None``.

    Output shape:
        ``(batch, out_height, out_width, channels)``.

    Example:
    >>> localization = keras.Sequential([
    ...     keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
    ...     keras.layers.GlobalAveragePooling2D(),
    ...     keras.layers.Dense(16, activation="relu")])
    >>> stn = SpatialTransformer(localization, output_size=(24, 24))
    >>> stn(tf.zeros((2, 32, 32, 3))).shape
    TensorShape([2, 24, 24, 3])

    Reference:
        Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015.
    """

    def __init__(self, localization, output_size=None, align_corners=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(localization, dict):
            localization = keras.layers.deserialize(localization)
        if not isinstance(localization, keras.layers.Layer):
            raise TypeError(
                "`localization` must be a Keras layer or model (or its serialized config). "
                f"Received: localization={localization!r}"
            )
        self.localization = localization
        self.output_size = None if output_size is None else normalize_pair("output_size", output_size)
        if not isinstance(align_corners, bool):
            raise TypeError(f"`align_corners` must be a bool. Received: align_corners={align_corners!r}")
        self.align_corners = align_corners
        self.affine = keras.layers.Dense(
            6,
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(list(IDENTITY_THETA)),
            name="affine",
        )
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"SpatialTransformer '{self.name}' expects (batch, height, width, channels) with "
                f"known channels. Received: input_shape={input_shape}"
            )
        if not self.localization.built:
            self.localization.build(input_shape)
        features = tuple(self.localization.compute_output_shape(input_shape))
        if len(features) != 2 or features[-1] is None:
            raise ValueError(
                f"`localization` must map the input to (batch, features) with known features; "
                f"end it with global pooling or Flatten. Received: output shape {features} for "
                f"input_shape={input_shape}"
            )
        self.affine.build(features)
        self.built = True

    def call(self, inputs):
        theta = self.affine(self.localization(inputs))
        return affine_sample(inputs, theta, self.output_size, self.align_corners)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        size = self.output_size or input_shape[1:3]
        return (input_shape[0],) + tuple(size) + (input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "localization": keras.layers.serialize(self.localization),
                "output_size": self.output_size,
                "align_corners": self.align_corners,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["localization"] = keras.layers.deserialize(config["localization"])
        return super().from_config(config)


def _normalized_positions(size, align_corners):
    """Normalised coordinates of the pixel centres of one side of ``size`` pixels."""
    size_f = tf.cast(size, tf.float32)
    index = tf.range(size_f)
    if align_corners:
        return 2.0 * index / tf.maximum(size_f - 1.0, 1.0) - 1.0
    return (2.0 * index + 1.0) / size_f - 1.0


def _pixel_positions(normalized, size, align_corners):
    """Inverse of ``_normalized_positions``: pixel coordinates of normalised ones."""
    size_f = tf.cast(size, tf.float32)
    if align_corners:
        return (normalized + 1.0) * 0.5 * (size_f - 1.0)
    return ((normalized + 1.0) * size_f - 1.0) * 0.5


def affine_sample(images, theta, output_size=None, align_corners=False):
    """Samples ``images`` bilinearly on the affine grid ``theta`` (zeros outside).

    The sampler of ``SpatialTransformer`` (see its docstring for the
    coordinate conventions).

    Args:
        images: tensor ``(batch, height, width, channels)``.
        theta: tensor ``(batch, 6)``, row-major 2x3 affine matrices mapping
            normalised output coordinates to normalised input coordinates.
        output_size: None (the input size) or ``(out_height, out_width)``.
        align_corners: bool.

    Returns:
        Tensor ``(batch, out_height, out_width, channels)`` of the images'
        dtype.
    """
    dtype = images.dtype
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    channels = images.shape[-1]
    if output_size is None:
        out_h, out_w = height, width
    else:
        out_h, out_w = output_size

    # Output grid (x_t, y_t, 1), flattened row-major: (out_h * out_w, 3).
    ys = _normalized_positions(out_h, align_corners)
    xs = _normalized_positions(out_w, align_corners)
    grid_y, grid_x = tf.meshgrid(ys, xs, indexing="ij")
    grid = tf.stack(
        [tf.reshape(grid_x, [-1]), tf.reshape(grid_y, [-1]), tf.ones_like(tf.reshape(grid_x, [-1]))],
        axis=1,
    )
    theta = tf.reshape(tf.cast(theta, tf.float32), [-1, 2, 3])
    source = tf.einsum("pk,bjk->bpj", grid, theta)  # (batch, points, 2): x_s, y_s
    x = _pixel_positions(source[..., 0], width, align_corners)
    y = _pixel_positions(source[..., 1], height, align_corners)

    x0 = tf.floor(x)
    y0 = tf.floor(y)
    wx1 = x - x0
    wy1 = y - y0
    wx0 = 1.0 - wx1
    wy0 = 1.0 - wy1
    x0 = tf.cast(x0, tf.int32)
    y0 = tf.cast(y0, tf.int32)

    flat = tf.reshape(images, tf.stack([-1, channels]))
    offsets = tf.range(batch) * height * width  # first flat row of each image

    def corner(yi, xi, weight):
        inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
        index = tf.clip_by_value(yi, 0, height - 1) * width + tf.clip_by_value(xi, 0, width - 1)
        values = tf.gather(flat, index + offsets[:, None])  # (batch, points, channels)
        weight = tf.where(inside, weight, tf.zeros_like(weight))
        return values * tf.cast(weight, dtype)[..., None]

    out = (
        corner(y0, x0, wy0 * wx0)
        + corner(y0, x0 + 1, wy0 * wx1)
        + corner(y0 + 1, x0, wy1 * wx0)
        + corner(y0 + 1, x0 + 1, wy1 * wx1)
    )
    return tf.reshape(out, tf.stack([batch, out_h, out_w, channels]))
