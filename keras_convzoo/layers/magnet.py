"""MAGNet: the multiplicative anisotropic Gabor network that generates CCNN kernels."""

import math

import numpy as np

from keras_convzoo.backend import keras, register_serializable, tf
from keras_convzoo.layers._validation import check_positive_int


def _check_float(name, value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (minimum is not None and value <= minimum):
        bound = "" if minimum is None else f" > {minimum}"
        raise ValueError(f"`{name}` must be a number{bound}. Received: {name}={value!r}")
    return float(value)


def _uniform(bound, seed):
    return keras.initializers.RandomUniform(-bound, bound, seed=seed)


@register_serializable
class MAGNet(keras.layers.Layer):
    """Multiplicative anisotropic Gabor network: tap positions -> kernel values.

    Maps positions ``x`` in ``[-1, 1]^dims`` to ``out_channels`` values with
    ``num_layers + 1`` Gabor filters combined multiplicatively::

        h_0 = g_0(x);  h_i = g_i(x) * (W_i h_{i-1} + b_i);  out = W_out h_L + b_out
        g_i(x) = exp(-1/2 sum_d (gamma_id (x_d - mu_id))^2) * sin(A_i x + a_i)

    Initialisation of the official CCNN code: ``gamma_i ~ Gamma(alpha / (i+1),
    beta)``; ``A_i ~ U(-1/sqrt(dims), 1/sqrt(dims)) * 2 pi omega_0 gamma_i``
    (so ``omega_0`` only matters at initialisation), ``a_i = 0``;
    ``mu ~ init_spatial_value * U(-1, 1)`` (causal: ``1 - init_spatial_value *
    U(0, 1)``); hidden ``W_i`` uniform with variance ``1/hidden``, ``b_i = 1``;
    ``W_out`` uniform with variance ``output_scale / hidden``, ``b_out = 0``.
    ``output_scale`` is the CCNN initialisation fix (``1/K`` for K kernel taps,
    set by the continuous convolutions when they are built).

    The layer always computes in float32 (its first layer multiplies positions
    by frequencies around 1e4-1e5), also under a ``mixed_float16`` policy.

    Args:
        out_channels: values per position (kernel channels).
        hidden: hidden units.
        num_layers: hidden (multiplicative) layers; ``num_layers + 1`` filters.
        omega_0: frequency scale of the filters' initialisation.
        init_spatial_value: spread of the filter centres ``mu`` at init.
        causal: initialise the centres for a causal 1D kernel (near +1).
        alpha: shape of the Gamma distribution of the first filter's ``gamma``.
        beta: rate of the Gamma distribution of the first filter's ``gamma``.
        output_scale: variance multiplier of the output layer's initial weights.
        seed: int seed of the initialisation (None: random).
        **kwargs: base Layer arguments (``dtype`` is fixed to float32).

    Input shape:
        ``(positions, dims)``.

    Output shape:
        ``(positions, out_channels)``.

    Example:
    >>> net = MAGNet(out_channels=8, hidden=16, omega_0=100.0)
    >>> net(tf.zeros((33 * 33, 2))).shape
    TensorShape([1089, 8])

    Reference:
        Romero et al., "FlexConv: Continuous Kernel Convolutions with
        Differentiable Kernel Sizes", ICLR 2022; Knigge, Romero et al.,
        "Modelling Long Range Dependencies in ND", ICLR 2023.
    """

    def __init__(
        self,
        out_channels,
        hidden=32,
        num_layers=3,
        omega_0=2976.49,
        init_spatial_value=1.0,
        causal=False,
        alpha=6.0,
        beta=1.0,
        output_scale=1.0,
        seed=None,
        **kwargs,
    ):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.hidden = check_positive_int("hidden", hidden)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.omega_0 = _check_float("omega_0", omega_0, minimum=0)
        self.init_spatial_value = _check_float("init_spatial_value", init_spatial_value, minimum=0)
        if not isinstance(causal, bool):
            raise ValueError(f"`causal` must be a bool. Received: causal={causal!r}")
        self.causal = causal
        self.alpha = _check_float("alpha", alpha, minimum=0)
        self.beta = _check_float("beta", beta, minimum=0)
        self.output_scale = _check_float("output_scale", output_scale, minimum=0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an int or None. Received: seed={seed!r}")
        self.seed = seed

    def _seed(self, offset):
        return None if self.seed is None else self.seed * 1000 + offset

    def build(self, input_shape):
        dims = input_shape[-1]
        if len(input_shape) != 2 or dims is None or not 1 <= int(dims) <= 3:
            raise ValueError(
                f"MAGNet expects positions of shape (positions, dims) with dims in 1..3. Received: {tuple(input_shape)}"
            )
        dims = int(dims)
        self.dims = dims
        rng = np.random.default_rng(self.seed)
        h = self.hidden
        self.filter_kernels, self.filter_biases, self.gammas, self.mus = [], [], [], []
        for i in range(self.num_layers + 1):
            gamma = rng.gamma(self.alpha / (i + 1), 1.0 / self.beta, size=(h, dims)).astype("float32")
            if self.causal and self.init_spatial_value != 1.0:
                mu = 1.0 - self.init_spatial_value * rng.uniform(0, 1, (h, dims))
            else:
                mu = self.init_spatial_value * rng.uniform(-1, 1, (h, dims))
            bound = 1.0 / math.sqrt(dims)
            frequencies = rng.uniform(-bound, bound, (dims, h)) * 2 * np.pi * self.omega_0 * gamma.T
            self.gammas.append(self._constant_weight(f"filter{i}_gamma", gamma))
            self.mus.append(self._constant_weight(f"filter{i}_mu", mu))
            self.filter_kernels.append(self._constant_weight(f"filter{i}_kernel", frequencies))
            self.filter_biases.append(self.add_weight(name=f"filter{i}_bias", shape=(h,), initializer="zeros"))
        hidden_bound = math.sqrt(3.0 / h)
        self.hidden_kernels, self.hidden_biases = [], []
        for i in range(self.num_layers):
            self.hidden_kernels.append(
                self.add_weight(name=f"linear{i}_kernel", shape=(h, h), initializer=_uniform(hidden_bound, self._seed(i)))
            )
            self.hidden_biases.append(self.add_weight(name=f"linear{i}_bias", shape=(h,), initializer="ones"))
        out_bound = math.sqrt(3.0 * self.output_scale / h)
        self.output_kernel = self.add_weight(
            name="output_kernel", shape=(h, self.out_channels), initializer=_uniform(out_bound, self._seed(99))
        )
        self.output_bias = self.add_weight(name="output_bias", shape=(self.out_channels,), initializer="zeros")
        self.built = True

    def _constant_weight(self, name, value):
        value = np.asarray(value, "float32")
        return self.add_weight(
            name=name, shape=value.shape, initializer=lambda shape, dtype=None: tf.constant(value, dtype or "float32")
        )

    def _filter(self, x, i):
        """Gabor filter ``i`` at positions ``x`` (N, dims): products summed per dim in order, as the reference."""
        envelope = 0.0
        phase = 0.0
        for d in range(self.dims):
            envelope += tf.square(self.gammas[i][:, d] * (x[:, d : d + 1] - self.mus[i][:, d]))
            phase += x[:, d : d + 1] * self.filter_kernels[i][d]
        return tf.exp(-0.5 * envelope) * tf.sin(phase + self.filter_biases[i])

    def call(self, positions):
        x = tf.cast(positions, tf.float32)
        h = self._filter(x, 0)
        for i in range(1, self.num_layers + 1):
            h = self._filter(x, i) * (tf.matmul(h, self.hidden_kernels[i - 1]) + self.hidden_biases[i - 1])
        return tf.matmul(h, self.output_kernel) + self.output_bias

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update(
            {
                "out_channels": self.out_channels,
                "hidden": self.hidden,
                "num_layers": self.num_layers,
                "omega_0": self.omega_0,
                "init_spatial_value": self.init_spatial_value,
                "causal": self.causal,
                "alpha": self.alpha,
                "beta": self.beta,
                "output_scale": self.output_scale,
                "seed": self.seed,
            }
        )
        return config
