"""KernelMLP: an MLP or SIREN kernel network, the alternative to MAGNet."""

import math

from keras_convzoo.backend import keras, register_serializable, tf
from keras_convzoo.layers._validation import check_choice, check_positive_int
from keras_convzoo.layers.gelu import gelu_exact

ACTIVATIONS = ("sine", "gelu", "relu")


@register_serializable
class KernelMLP(keras.layers.Layer):
    """Kernel network mapping tap positions to kernel values with an MLP or a SIREN.

    ``activation="sine"`` is a SIREN: every hidden layer computes
    ``sin(omega_0 * (W h + b))`` with Sitzmann et al.'s initialisation (first
    layer ``W ~ U(-1/dims, 1/dims)``, others ``U(-sqrt(6/hidden)/omega_0,
    sqrt(6/hidden)/omega_0)``), the kernel network of CKConv. ``"gelu"`` and
    ``"relu"`` give a plain MLP (He-uniform init). The output layer is
    linear, uniform with variance ``output_scale / hidden`` and zero bias, as
    MAGNet's (so the continuous convolutions' sqrt(1/K) initialisation
    applies unchanged). Always computes in float32.

    Args:
        out_channels: values per position.
        hidden: hidden units.
        num_layers: hidden layers.
        activation: ``"sine"`` (SIREN), ``"gelu"`` or ``"relu"``.
        omega_0: SIREN frequency (ignored by the MLPs).
        output_scale: variance multiplier of the output layer's initial weights.
        seed: int seed of the initialisation.
        **kwargs: base Layer arguments (``dtype`` is fixed to float32).

    Input shape:
        ``(positions, dims)``.

    Output shape:
        ``(positions, out_channels)``.

    Example:
    >>> net = KernelMLP(out_channels=8, activation="sine", omega_0=30.0)
    >>> net(tf.zeros((9, 1))).shape
    TensorShape([9, 8])

    Reference:
        Sitzmann et al., "Implicit Neural Representations with Periodic
        Activation Functions" (SIREN), NeurIPS 2020; Romero et al., "CKConv:
        Continuous Kernel Convolution For Sequential Data", ICLR 2022.
    """

    def __init__(self, out_channels, hidden=32, num_layers=3, activation="sine", omega_0=30.0, output_scale=1.0,
                 seed=None, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.hidden = check_positive_int("hidden", hidden)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        if isinstance(omega_0, bool) or not isinstance(omega_0, (int, float)) or omega_0 <= 0:
            raise ValueError(f"`omega_0` must be a positive number. Received: omega_0={omega_0!r}")
        self.omega_0 = float(omega_0)
        if isinstance(output_scale, bool) or not isinstance(output_scale, (int, float)) or output_scale <= 0:
            raise ValueError(f"`output_scale` must be a positive number. Received: output_scale={output_scale!r}")
        self.output_scale = float(output_scale)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an int or None. Received: seed={seed!r}")
        self.seed = seed

    def _uniform(self, bound, offset):
        seed = None if self.seed is None else self.seed * 1000 + offset
        return keras.initializers.RandomUniform(-bound, bound, seed=seed)

    def build(self, input_shape):
        dims = input_shape[-1]
        if len(input_shape) != 2 or dims is None:
            raise ValueError(f"KernelMLP expects positions of shape (positions, dims). Received: {tuple(input_shape)}")
        fan_in = int(dims)
        self.kernels, self.biases = [], []
        for i in range(self.num_layers):
            if self.activation == "sine":
                bound = 1.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in) / self.omega_0
            else:
                bound = math.sqrt(6.0 / fan_in)
            self.kernels.append(
                self.add_weight(name=f"linear{i}_kernel", shape=(fan_in, self.hidden), initializer=self._uniform(bound, i))
            )
            self.biases.append(self.add_weight(name=f"linear{i}_bias", shape=(self.hidden,), initializer="zeros"))
            fan_in = self.hidden
        out_bound = math.sqrt(3.0 * self.output_scale / self.hidden)
        self.output_kernel = self.add_weight(
            name="output_kernel", shape=(self.hidden, self.out_channels), initializer=self._uniform(out_bound, 99)
        )
        self.output_bias = self.add_weight(name="output_bias", shape=(self.out_channels,), initializer="zeros")
        self.built = True

    def call(self, positions):
        h = tf.cast(positions, tf.float32)
        for kernel, bias in zip(self.kernels, self.biases):
            h = tf.matmul(h, kernel) + bias
            if self.activation == "sine":
                h = tf.sin(self.omega_0 * h)
            elif self.activation == "gelu":
                h = gelu_exact(h)
            else:
                h = tf.nn.relu(h)
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
                "activation": self.activation,
                "omega_0": self.omega_0,
                "output_scale": self.output_scale,
                "seed": self.seed,
            }
        )
        return config
