"""Grouped 2D convolution that runs fast on CPU and exports to TFLite and ONNX."""

import functools

from keras_convzoo.backend import keras, register_serializable, tf
from keras_convzoo.ops.depthwise import MAX_SHIFTED_TAPS, depthwise_conv2d_shifted, gpu_visible, in_xla_cpu_context
from keras_convzoo.layers._validation import (
    check_choice,
    check_positive_int,
    normalize_pair,
)

IMPLEMENTATIONS = ("auto", "native", "depthwise", "split", "dense")

#: On a CPU whose TensorFlow cannot run a grouped ``Conv2D`` and its
#: gradients (``cpu_grouped_conv_supported()`` is False: TensorFlow's own
#: kernels, without oneDNN, say "Gradients for grouped convolutions are not
#: supported on CPU"), ``"auto"`` lowers to ``"depthwise"`` when each group
#: has at most this many input channels, else to ``"split"``. With oneDNN
#: (TensorFlow's default on x86) the native grouped op is the fastest
#: lowering forward and backward (``tools/benchmark_group_conv.py``;
#: measurements on the documentation's benchmarks page) and ``"auto"`` takes
#: it. Under ``jit_compile=True`` (XLA) on CPU ``"auto"`` follows
#: ``XLA_CPU_RULE`` instead.
DEPTHWISE_MAX_GROUP_CHANNELS = 4

#: Inside ``jit_compile=True`` on CPU, ``"auto"`` lowers a grouped conv with
#: at most 4 input channels per group to the depthwise form computed as a sum
#: of shifted products (``ops.depthwise``, which XLA fuses), with at most 16
#: to ``"split"``, and with more to ``"native"`` (measurements on the
#: documentation's benchmarks page).
XLA_CPU_RULE = ((4, "shifted"), (16, "split"))


@functools.lru_cache(maxsize=None)
def cpu_grouped_conv_supported():
    """Whether this TensorFlow runs a grouped ``tf.nn.conv2d`` and its gradients on the CPU.

    TensorFlow's oneDNN kernels (its default on x86 CPUs) do, and there the
    grouped op is the fastest lowering; TensorFlow's own kernels
    (``TF_ENABLE_ONEDNN_OPTS=0``, other CPUs) raise "Gradients for grouped
    convolutions are not supported on CPU". Probed once per process on a
    tiny convolution, eagerly (also when first asked while tracing).

    Returns:
        bool.

    Example:
    >>> cpu_grouped_conv_supported()
    True
    """
    with tf.init_scope(), tf.device("/CPU:0"):
        x = tf.ones((1, 4, 4, 4))
        kernel = tf.ones((3, 3, 2, 4))  # 2 groups of 2 input channels
        strides = [1, 1, 1, 1]
        try:
            y = tf.nn.conv2d(x, kernel, strides=strides, padding="SAME")
            grad_x = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=y, strides=strides, padding="SAME")
            grad_kernel = tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=tf.shape(kernel), out_backprop=y, strides=strides, padding="SAME")
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.NotFoundError):
            return False
        return grad_x.shape == x.shape and grad_kernel.shape == kernel.shape


@register_serializable
class GroupConv2D(keras.layers.Layer):
    """2D convolution whose channels are split into independent groups.

    Gives the same output as ``keras.layers.Conv2D(groups=groups)`` and stores
    its kernel in the same layout, ``(kh, kw, in_channels // groups, filters)``,
    so weights move between the two with ``set_weights``. Unlike Keras 3's
    grouped ``Conv2D`` (which TensorFlow runs through a nested XLA call), it
    lowers to plain TensorFlow ops that convert to TFLite and, through
    tf2onnx, to ONNX, and it picks the lowering that is fastest on CPU:

    - ``"native"``: one ``tf.nn.conv2d`` with the grouped kernel (TFLite
      CONV_2D with groups, ONNX Conv with ``group``).
    - ``"depthwise"``: a depthwise convolution with channel multiplier
      ``filters // groups`` followed by a sum over each group's input channels;
      the same FLOPs, faster when groups have few channels.
    - ``"split"``: one convolution per group, concatenated.
    - ``"dense"``: one dense convolution with a block-diagonal kernel
      (``groups`` times the FLOPs; useful only for tiny layers).
    - ``"auto"``: ``"native"`` when a GPU is visible (cuDNN grouped
      convolution), ``groups == 1`` or the CPU kernels run grouped
      convolutions and their gradients (``cpu_grouped_conv_supported()``:
      oneDNN, TensorFlow's default on x86); on other CPUs ``"depthwise"`` when
      ``in_channels // groups <= DEPTHWISE_MAX_GROUP_CHANNELS`` (4) and the
      strides are equal, else ``"split"`` (see ``tools/benchmark_group_conv.py``);
      inside ``jit_compile=True`` on CPU, ``XLA_CPU_RULE``: up to 4 channels
      per group the depthwise form as a sum of shifted products (fused by
      XLA), up to 16 ``"split"``, beyond ``"native"``.

    Without oneDNN, TensorFlow has no CPU gradient for a grouped
    ``tf.nn.conv2d``: there the ``"native"`` lowering trains on GPU only;
    every other lowering trains everywhere and gives the same numbers.

    Args:
        filters: int, number of output channels, divisible by ``groups``.
        kernel_size: int or pair of ints.
        strides: int or pair of ints.
        padding: ``"valid"`` or ``"same"`` (TensorFlow semantics).
        groups: int, number of groups; must divide the input channels and
            ``filters``.
        dilation_rate: int or pair of ints (strides must be 1 when > 1).
        use_bias: bool.
        kernel_initializer: as in ``keras.layers.Conv2D``.
        bias_initializer: as in ``keras.layers.Conv2D``.
        kernel_regularizer: as in ``keras.layers.Conv2D``.
        bias_regularizer: as in ``keras.layers.Conv2D``.
        implementation: one of ``"auto"``, ``"native"``, ``"depthwise"``,
            ``"split"``, ``"dense"``. Does not change the weights.
        **kwargs: base Layer arguments (``name``, ``dtype``, ``trainable``).

    Input shape:
        4D tensor ``(batch, height, width, in_channels)``.

    Output shape:
        4D tensor ``(batch, new_height, new_width, filters)``.

    Example:
    >>> layer = GroupConv2D(64, 3, padding="same", groups=32)
    >>> layer(tf.zeros((1, 8, 8, 128))).shape
    TensorShape([1, 8, 8, 64])

    Reference:
        Xie et al., "Aggregated Residual Transformations for Deep Neural
        Networks" (ResNeXt), CVPR 2017.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        groups=1,
        dilation_rate=1,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        implementation="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = normalize_pair("kernel_size", kernel_size)
        self.strides = normalize_pair("strides", strides)
        self.padding = check_choice("padding", padding, ("valid", "same"))
        self.groups = check_positive_int("groups", groups)
        self.dilation_rate = normalize_pair("dilation_rate", dilation_rate)
        if max(self.dilation_rate) > 1 and max(self.strides) > 1:
            raise ValueError(
                "`strides` must be 1 when `dilation_rate` > 1. "
                f"Received: strides={strides}, dilation_rate={dilation_rate}"
            )
        if filters % groups:
            raise ValueError(
                f"`groups` must divide `filters`. Received: filters={filters}, groups={groups}"
            )
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.implementation = check_choice("implementation", implementation, IMPLEMENTATIONS)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if in_channels is None:
            raise ValueError(
                f"GroupConv2D '{self.name}' needs a known channel count. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        in_channels = int(in_channels)
        if in_channels % self.groups:
            raise ValueError(
                f"`groups` must divide the input channels of GroupConv2D '{self.name}'. "
                f"Received: groups={self.groups}, input channels={in_channels}"
            )
        self.in_channels = in_channels
        self.kernel = self.add_weight(
            name="kernel",
            shape=self.kernel_size + (in_channels // self.groups, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            trainable=True,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                trainable=True,
            )
        else:
            self.bias = None
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: in_channels})
        self.built = True

    @property
    def resolved_implementation(self):
        """The lowering ``call`` uses (``"auto"`` resolved); needs a built layer."""
        if self.implementation != "auto":
            return self.implementation
        if self.groups == 1 or gpu_visible() or cpu_grouped_conv_supported():
            return "native"
        group_channels = self.in_channels // self.groups
        if group_channels <= DEPTHWISE_MAX_GROUP_CHANNELS and self.strides[0] == self.strides[1]:
            return "depthwise"
        return "split"

    def _xla_cpu_implementation(self):
        """The lowering under XLA on CPU (``XLA_CPU_RULE``), or None outside it."""
        if self.implementation != "auto" or self.groups == 1 or not in_xla_cpu_context():
            return None
        group_channels = self.in_channels // self.groups
        for limit, impl in XLA_CPU_RULE:
            if group_channels <= limit:
                if impl == "shifted" and (
                    self.dilation_rate != (1, 1) or self.kernel_size[0] * self.kernel_size[1] > MAX_SHIFTED_TAPS
                ):
                    return "split"
                return impl
        return "native"

    def call(self, inputs):
        kernel = tf.cast(self.kernel, inputs.dtype)
        impl = self._xla_cpu_implementation() or self.resolved_implementation
        if impl == "depthwise" and self.strides[0] != self.strides[1]:
            impl = "native"
        if impl == "native":
            outputs = self._conv(inputs, kernel)
        elif impl in ("depthwise", "shifted"):
            outputs = self._depthwise(inputs, kernel, shifted=impl == "shifted")
        elif impl == "split":
            xs = tf.split(inputs, self.groups, axis=-1)
            ks = tf.split(kernel, self.groups, axis=-1)
            outputs = tf.concat([self._conv(a, b) for a, b in zip(xs, ks)], axis=-1)
        else:
            outputs = self._conv(inputs, self._block_diagonal(kernel))
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, tf.cast(self.bias, outputs.dtype))
        return outputs

    def _conv(self, inputs, kernel):
        return tf.nn.conv2d(
            inputs,
            kernel,
            strides=(1,) + self.strides + (1,),
            padding=self.padding.upper(),
            dilations=(1,) + self.dilation_rate + (1,),
        )

    def _depthwise(self, inputs, kernel, shifted=False):
        kh, kw = self.kernel_size
        g = self.groups
        k = self.in_channels // g
        m = self.filters // g
        # (kh, kw, k, g*m) -> (kh, kw, g, k, m) -> (kh, kw, g*k, m): input channel
        # c = gi*k + ki gets the m filters of its group.
        dw_kernel = tf.reshape(
            tf.transpose(tf.reshape(kernel, (kh, kw, k, g, m)), (0, 1, 3, 2, 4)),
            (kh, kw, g * k, m),
        )
        if shifted:
            y = depthwise_conv2d_shifted(inputs, dw_kernel, self.strides, self.padding)
        else:
            y = tf.nn.depthwise_conv2d(
                inputs,
                dw_kernel,
                strides=(1,) + self.strides + (1,),
                padding=self.padding.upper(),
                dilations=self.dilation_rate,
            )
        if k == 1:
            return y
        shape = tf.shape(y)
        y = tf.reshape(y, tf.stack([shape[0], shape[1], shape[2], g, k, m]))
        y = tf.reduce_sum(y, axis=4)
        return tf.reshape(y, tf.stack([shape[0], shape[1], shape[2], g * m]))

    def _block_diagonal(self, kernel):
        kh, kw = self.kernel_size
        g = self.groups
        k = self.in_channels // g
        m = self.filters // g
        blocks = tf.reshape(kernel, (kh, kw, k, g, m))
        eye = tf.eye(g, dtype=kernel.dtype)
        # A broadcast product, not an einsum: the TFLite converter folds it into a
        # constant filter, while an Einsum stays an op whose output int8
        # quantization treats as an activation (asymmetric), which CONV_2D rejects.
        dense = blocks[:, :, None] * eye[None, None, :, None, :, None]
        return tf.reshape(dense, (kh, kw, g * k, g * m))

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        spatial = []
        for i, size in enumerate(input_shape[1:3]):
            if size is None:
                spatial.append(None)
                continue
            effective = (self.kernel_size[i] - 1) * self.dilation_rate[i] + 1
            if self.padding == "same":
                spatial.append(-(-int(size) // self.strides[i]))
            else:
                spatial.append((int(size) - effective) // self.strides[i] + 1)
        return (input_shape[0], spatial[0], spatial[1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "groups": self.groups,
                "dilation_rate": self.dilation_rate,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "implementation": self.implementation,
            }
        )
        return config
