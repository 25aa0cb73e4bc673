"""Shared machinery of CKConv, FlexConv and SeparableFlexConv (1D, 2D and 3D)."""

import math

import numpy as np

from keras_convzoo.backend import keras, tf
from keras_convzoo.layers._validation import check_choice, check_positive_int
from keras_convzoo.layers.kernel_mlp import KernelMLP
from keras_convzoo.layers.magnet import MAGNet
from keras_convzoo.ops.fft_conv import direct_conv, direct_depthwise_conv, fft_conv, fft_depthwise_conv
from keras_convzoo.ops.grids import crop_ranges, crop_sizes, linspace, linspace_tf

CONV_METHODS = ("auto", "direct", "fft")
KERNEL_NETWORKS = ("magnet", "siren", "mlp")
#: Default taps per dim above which "auto" convolves through the FFT, measured on a 2-core CPU
#: (tools/benchmark_ccnn.py --crossover): forward + backward of a 140-channel separable layer.
FFT_THRESHOLDS = {1: 32, 2: 13, 3: None}
RESOLUTIONS = ("fixed", "continuous")
#: kaiming_normal_ of PyTorch (untruncated, fan_in, gain sqrt(2)): the reference's pointwise init.
KAIMING_NORMAL = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_in", "distribution": "untruncated_normal"},
}


def _check_sizes(name, value, allow_same):
    if allow_same and value == "same":
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not value or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value
    ):
        allowed = "'same', " if allow_same else ""
        raise ValueError(f"`{name}` must be {allowed}a positive int or a tuple of them. Received: {name}={value!r}")
    return tuple(int(v) for v in value)


class ContinuousConvBase(keras.layers.Layer):
    """A convolution whose kernel is generated from tap positions by ``MAGNet``.

    Subclasses fix ``mask`` (FlexConv's Gaussian mask with dynamic cropping)
    and ``separable`` (depthwise continuous kernel + pointwise conv).
    See ``FlexConv`` for the arguments.
    """

    mask = True
    separable = False

    def __init__(
        self,
        filters,
        kernel_size="same",
        causal=False,
        mask_init=0.075,
        mask_threshold=0.1,
        dynamic_cropping=True,
        kernel_network="magnet",
        kernel_hidden=32,
        kernel_layers=3,
        omega_0=2976.49,
        use_bias=True,
        conv_method="auto",
        fft_threshold=None,
        resolution="fixed",
        train_size=None,
        pointwise_initializer=KAIMING_NORMAL,
        seed=None,
        deploy=False,
        deploy_taps=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = _check_sizes("kernel_size", kernel_size, allow_same=True)
        if not isinstance(causal, bool):
            raise ValueError(f"`causal` must be a bool. Received: causal={causal!r}")
        self.causal = causal
        if isinstance(mask_init, bool) or not isinstance(mask_init, (int, float)) or mask_init <= 0:
            raise ValueError(f"`mask_init` must be a positive number. Received: mask_init={mask_init!r}")
        self.mask_init = float(mask_init)
        if isinstance(mask_threshold, bool) or not isinstance(mask_threshold, (int, float)) or not 0 < mask_threshold < 1:
            raise ValueError(f"`mask_threshold` must be in (0, 1). Received: mask_threshold={mask_threshold!r}")
        self.mask_threshold = float(mask_threshold)
        if not isinstance(dynamic_cropping, bool):
            raise ValueError(f"`dynamic_cropping` must be a bool. Received: dynamic_cropping={dynamic_cropping!r}")
        self.dynamic_cropping = dynamic_cropping
        self.kernel_network_type = check_choice("kernel_network", kernel_network, KERNEL_NETWORKS)
        self.kernel_hidden = check_positive_int("kernel_hidden", kernel_hidden)
        self.kernel_layers = check_positive_int("kernel_layers", kernel_layers)
        if isinstance(omega_0, bool) or not isinstance(omega_0, (int, float)) or omega_0 <= 0:
            raise ValueError(f"`omega_0` must be a positive number. Received: omega_0={omega_0!r}")
        self.omega_0 = float(omega_0)
        if not isinstance(use_bias, bool):
            raise ValueError(f"`use_bias` must be a bool. Received: use_bias={use_bias!r}")
        self.use_bias = use_bias
        self.conv_method = check_choice("conv_method", conv_method, CONV_METHODS)
        self.fft_threshold = None if fft_threshold is None else check_positive_int("fft_threshold", fft_threshold)
        self.resolution = check_choice("resolution", resolution, RESOLUTIONS)
        self.train_size = None if train_size is None else _check_sizes("train_size", train_size, allow_same=False)
        self.pointwise_initializer = keras.initializers.get(pointwise_initializer)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an int or None. Received: seed={seed!r}")
        self.seed = seed
        if not isinstance(deploy, bool):
            raise ValueError(f"`deploy` must be a bool. Received: deploy={deploy!r}")
        self.deploy = deploy
        self.deploy_taps = None if deploy_taps is None else _check_sizes("deploy_taps", deploy_taps, allow_same=False)
        if deploy and self.deploy_taps is None:
            raise ValueError("`deploy=True` needs `deploy_taps`, the taps per dim of the baked kernel.")

    # ----------------------------------------------------------------- build
    def _grid_sizes(self, input_shape):
        dims = len(input_shape) - 2
        spatial = tuple(input_shape[1:-1])
        if self.kernel_size == "same":
            if any(s is None for s in spatial):
                raise ValueError(
                    "`kernel_size='same'` sizes the kernel grid to the input, whose spatial size is unknown "
                    f"(input_shape={tuple(input_shape)}). Pass kernel_size as an int (grid points per dim)."
                )
            return tuple(int(s) for s in spatial)
        sizes = self.kernel_size * dims if len(self.kernel_size) == 1 else self.kernel_size
        if len(sizes) != dims:
            raise ValueError(
                f"`kernel_size` has {len(sizes)} entries for an input with {dims} spatial dims. "
                f"Received: kernel_size={self.kernel_size}"
            )
        return tuple(sizes)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        dims = len(input_shape) - 2
        if dims not in (1, 2, 3) or input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} expects (batch, *spatial, channels) with 1 to 3 spatial dims and known "
                f"channels. Received: input_shape={input_shape}"
            )
        if self.causal and dims != 1:
            raise ValueError(f"`causal=True` is for 1D sequences. Received an input with {dims} spatial dims.")
        self.dims = dims
        self.in_channels = int(input_shape[-1])
        self.grid_sizes = self._grid_sizes(input_shape)
        if not self.causal and any(n % 2 == 0 for n in self.grid_sizes) and not (self.mask and self.dynamic_cropping):
            raise ValueError(
                f"A centred (non-causal) kernel needs an odd grid size. Received grid sizes {self.grid_sizes}"
            )
        if self.resolution == "continuous":
            train = self.train_size or tuple(input_shape[1:-1])
            if len(train) == 1:
                train = train * dims
            if len(train) != dims or any(t is None for t in train):
                raise ValueError(
                    "`resolution='continuous'` needs `train_size` (the input size the kernel grid was set for), "
                    f"or a static input shape. Received: train_size={self.train_size}, input_shape={input_shape}"
                )
            self.reference_size = tuple(int(t) for t in train)
        self.input_spatial = tuple(input_shape[1:-1])
        if self.deploy:
            self._build_deployed()
            return
        if self.mask:
            self.mask_width = self.add_weight(
                name="mask_width", shape=(dims,), initializer=keras.initializers.Constant(self.mask_init)
            )
        taps = int(np.prod(self._initial_taps()))
        kernel_channels = self.in_channels if self.separable else self.in_channels * self.filters
        scale = 1.0 / taps if self.separable else 1.0 / (self.in_channels * taps)
        if self.kernel_network_type == "magnet":
            self.kernel_network = MAGNet(
                kernel_channels,
                hidden=self.kernel_hidden,
                num_layers=self.kernel_layers,
                omega_0=self.omega_0,
                init_spatial_value=self.mask_init * 1.667 if self.mask else 1.0,
                causal=self.causal,
                output_scale=scale,
                seed=self.seed,
                name="kernel_network",
            )
        else:
            self.kernel_network = KernelMLP(
                kernel_channels,
                hidden=self.kernel_hidden,
                num_layers=self.kernel_layers,
                activation="sine" if self.kernel_network_type == "siren" else "gelu",
                omega_0=self.omega_0,
                output_scale=scale,
                seed=self.seed,
                name="kernel_network",
            )
        self.kernel_network.build((None, dims))
        self._build_outputs()
        self.built = True

    def _build_outputs(self):
        if self.use_bias:
            bias_channels = self.in_channels if self.separable else self.filters
            self.bias = self.add_weight(name="bias", shape=(bias_channels,), initializer="zeros")
        if self.separable:
            initializer = self.pointwise_initializer
            config = initializer.get_config()
            if self.seed is not None and "seed" in config and config["seed"] is None:
                initializer = type(initializer).from_config(dict(config, seed=self.seed))
            self.pointwise_kernel = self.add_weight(
                name="pointwise_kernel", shape=(self.in_channels, self.filters), initializer=initializer
            )
            self.pointwise_bias = self.add_weight(name="pointwise_bias", shape=(self.filters,), initializer="zeros")

    def _build_deployed(self):
        """Inference form: the generated kernel baked into a weight; no kernel network."""
        taps = self.deploy_taps * self.dims if len(self.deploy_taps) == 1 else self.deploy_taps
        if len(taps) != self.dims:
            raise ValueError(f"`deploy_taps` has {len(taps)} entries for {self.dims} spatial dims.")
        channels = (self.in_channels,) if self.separable else (self.in_channels, self.filters)
        self.baked_kernel = self.add_weight(name="baked_kernel", shape=tuple(taps) + channels, initializer="zeros")
        self._build_outputs()
        self.built = True

    def merged_weights(self):
        """Weights of the ``deploy=True`` form: the kernel generated now, then bias and pointwise weights.

        With ``resolution="continuous"`` the kernel is generated for the
        layer's static input size (a fused model runs at one resolution).
        """
        if self.deploy:
            return [np.array(w) for w in self.weights]
        if self.resolution == "continuous" and any(s is None for s in self.input_spatial):
            raise ValueError(
                f"{self.name}: resolution='continuous' kernels depend on the input size; build the model with a "
                "static input_shape before fusing it."
            )
        probe = tf.zeros((1,) + tuple(self.input_spatial) + (self.in_channels,)) if self.resolution == "continuous" else None
        weights = [np.array(self.kernel(probe))]
        if self.use_bias:
            weights.append(np.array(self.bias))
        if self.separable:
            weights += [np.array(self.pointwise_kernel), np.array(self.pointwise_bias)]
        return weights

    def deploy_config(self):
        """Config updates that turn this layer into its ``deploy=True`` form (used by ``deploy.fuse``)."""
        taps = self.merged_weights()[0].shape[: self.dims]
        return {"deploy": True, "deploy_taps": tuple(int(t) for t in taps)}

    def _initial_taps(self):
        """Kernel taps per dim at initialisation (after the crop of the initial mask)."""
        if self.mask and self.dynamic_cropping:
            return crop_sizes([self.mask_init] * self.dims, self.grid_sizes, self.causal, self.mask_threshold)
        return list(self.grid_sizes)

    # ------------------------------------------------------------------ call
    def _current_grid(self, inputs):
        """Grid points per dim for this input (tensors) and the continuous-rule kernel scale."""
        if self.resolution == "fixed":
            return list(self.grid_sizes), None
        spatial = tf.shape(inputs)[1:-1]
        sizes, scale = [], 1.0
        for d, (n, ref) in enumerate(zip(self.grid_sizes, self.reference_size)):
            ratio = tf.cast(spatial[d], tf.float32) / float(ref)
            intervals = tf.maximum(tf.cast(tf.round((n - 1) * ratio), tf.int32), 1)
            sizes.append(intervals + 1)
            scale = scale * (float(n - 1) / tf.cast(intervals, tf.float32))
        return sizes, scale

    def _axis_positions(self, d, n):
        if self.resolution == "fixed":
            return tf.constant(linspace(self.grid_sizes[d]))
        return linspace_tf(n)

    def kernel(self, inputs=None):
        """The generated (masked, cropped) kernel for ``inputs``' resolution.

        Returns:
            ``(*taps, in_channels)`` for separable layers, else
            ``(*taps, in_channels, filters)``; float32.
        """
        sizes, scale = self._current_grid(inputs)
        axes = [self._axis_positions(d, n) for d, n in enumerate(sizes)]
        if self.mask and self.dynamic_cropping:
            width = tf.cast(self.mask_width, tf.float32)
            starts, stops = crop_ranges(width, sizes, self.causal, self.mask_threshold)
            axes = [axis[starts[d] : stops[d]] for d, axis in enumerate(axes)]
        grids = tf.meshgrid(*axes, indexing="ij")
        taps = tf.shape(grids[0])
        positions = tf.stack([tf.reshape(g, [-1]) for g in grids], axis=-1)
        values = self.kernel_network(positions)
        if self.mask:
            centre = tf.constant([1.0 if self.causal else 0.0] * self.dims, tf.float32)
            width = tf.cast(self.mask_width, tf.float32)
            exponent = tf.reduce_sum(tf.square(positions - centre) / (tf.square(width) + 1e-8), axis=-1)
            values = values * tf.exp(-0.5 * exponent)[:, None]
        if scale is not None:
            values = values * scale
        if self.separable:
            return tf.reshape(values, tf.concat([taps, [self.in_channels]], 0))
        values = tf.reshape(values, tf.concat([taps, [self.filters, self.in_channels]], 0))
        return tf.transpose(values, list(range(self.dims)) + [self.dims + 1, self.dims])

    def _depthwise(self, x, kernel):
        """The depthwise convolution of the direct path (TFLite export tiles large baked kernels here)."""
        return direct_depthwise_conv(x, kernel, self.causal)

    def _direct(self, x, kernel, training=None):
        if not self.separable:
            y = direct_conv(x, kernel, self.causal)
            return y + tf.cast(self.bias, y.dtype) if self.use_bias else y
        if self.dims == 3 and not training:
            # Inference: the sum over depth taps unrolled to the static bound, which converts to TFLite and
            # ONNX (ops.fft_conv._depthwise_conv3d); training keeps the tf.while_loop.
            y = direct_depthwise_conv(x, kernel, self.causal, max_taps=self.max_kernel_taps(x.shape))
        else:
            y = self._depthwise(x, kernel)
        if self.use_bias:
            y = y + tf.cast(self.bias, y.dtype)
        return tf.tensordot(y, tf.cast(self.pointwise_kernel, y.dtype), axes=1) + tf.cast(self.pointwise_bias, y.dtype)

    def _fft(self, x, kernel):
        if not self.separable:
            y = fft_conv(x, kernel, self.causal)
            return y + tf.cast(self.bias, y.dtype) if self.use_bias else y
        pointwise = tf.cast(self.pointwise_kernel, tf.float32)
        bias = tf.cast(self.pointwise_bias, tf.float32)
        if self.use_bias:  # (conv + b) W + c = conv W + (b W + c)
            bias = bias + tf.linalg.matvec(pointwise, tf.cast(self.bias, tf.float32), transpose_a=True)
        y = fft_depthwise_conv(x, kernel, self.causal, pointwise=pointwise)
        return y + tf.cast(bias, y.dtype)

    def uses_fft(self, taps, max_taps=None):
        """Whether a kernel of ``taps`` per dim is convolved through the FFT.

        Args:
            taps: kernel taps per dim (ints or int tensors).
            max_taps: optional static upper bound of ``taps`` (python ints,
                see ``max_kernel_taps``). When some dim can never exceed the
                threshold the answer is a python ``False``, so the FFT branch
                never enters the traced graph (TFLite and ONNX cannot run it).

        Returns:
            A python bool, or a scalar bool tensor when it depends on the
            run-time kernel size.
        """
        if self.conv_method == "direct" or (self.deploy and self.conv_method == "auto"):
            # The baked kernel of the deploy form is convolved directly: TFLite and ONNX have no
            # inverse real FFT, and a static kernel makes the direct path the exportable one.
            return False
        if self.conv_method == "fft":
            return True
        if self.dims == 3:  # TensorFlow has no gradient for its 3D FFTs
            return False
        threshold = self.effective_fft_threshold
        if max_taps is not None and any(m <= threshold for m in max_taps):
            return False
        return tf.reduce_all(tf.stack(taps) > threshold)

    def max_kernel_taps(self, input_shape):
        """Static upper bound of the kernel's taps per dim for inputs of ``input_shape``, or None.

        The crop of the mask only removes taps, so the kernel grid bounds the
        kernel: ``kernel_size`` per dim (``resolution="fixed"``), the grid
        scaled to the input's static size (``"continuous"``; None when that
        size is not static), ``deploy_taps`` in the deploy form.

        Args:
            input_shape: the input's shape, batch first.

        Returns:
            A list of python ints, one per spatial dim, or None.
        """
        if self.deploy:
            return list(self.deploy_taps * self.dims if len(self.deploy_taps) == 1 else self.deploy_taps)
        if self.resolution == "fixed":
            return list(self.grid_sizes)
        spatial = tuple(input_shape)[1:-1]
        if any(s is None for s in spatial):
            return None
        # _current_grid rounds (n - 1) * size / reference in float32; the ceiling (plus a margin) bounds it.
        return [max(math.ceil((n - 1) * int(s) / ref + 1e-3), 1) + 1
                for n, s, ref in zip(self.grid_sizes, spatial, self.reference_size)]

    @property
    def effective_fft_threshold(self):
        """Taps per dim above which ``conv_method="auto"`` takes the FFT (measured default per dimensionality)."""
        if self.fft_threshold is not None:
            return self.fft_threshold
        return FFT_THRESHOLDS[self.dims]

    def call(self, inputs, training=None):
        kernel = tf.cast(self.baked_kernel if self.deploy else self.kernel(inputs), inputs.dtype)
        use_fft = self.uses_fft([tf.shape(kernel)[d] for d in range(self.dims)], self.max_kernel_taps(inputs.shape))
        if use_fft is True or use_fft is False:
            return self._fft(inputs, kernel) if use_fft else self._direct(inputs, kernel, training)
        return tf.cond(use_fft, lambda: self._fft(inputs, kernel), lambda: self._direct(inputs, kernel, training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "causal": self.causal,
                "kernel_network": self.kernel_network_type,
                "kernel_hidden": self.kernel_hidden,
                "kernel_layers": self.kernel_layers,
                "omega_0": self.omega_0,
                "use_bias": self.use_bias,
                "conv_method": self.conv_method,
                "fft_threshold": self.fft_threshold,
                "resolution": self.resolution,
                "train_size": self.train_size,
                "seed": self.seed,
                "deploy": self.deploy,
                "deploy_taps": self.deploy_taps,
            }
        )
        if self.mask:
            config.update(
                {
                    "mask_init": self.mask_init,
                    "mask_threshold": self.mask_threshold,
                    "dynamic_cropping": self.dynamic_cropping,
                }
            )
        if self.separable:
            config["pointwise_initializer"] = keras.initializers.serialize(self.pointwise_initializer)
        return config


def initial_kernel_taps(layer):
    """Number of kernel taps the layer's output-layer initialisation was scaled for."""
    return int(math.prod(layer._initial_taps()))
