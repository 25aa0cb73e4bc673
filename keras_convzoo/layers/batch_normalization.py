"""Keras' BatchNormalization whose training step runs TensorFlow's fused kernel."""

from keras_convzoo.backend import LEGACY_KERAS, keras, register_serializable, tf

if LEGACY_KERAS:
    #: tf_keras' layer already takes the fused kernel (``fused=None``); tfmot recognises it by its class.
    BatchNormalization = keras.layers.BatchNormalization
else:

    @register_serializable
    class BatchNormalization(keras.layers.BatchNormalization):
        """``keras.layers.BatchNormalization`` with TensorFlow's fused kernel in training steps.

        Same arguments, weights, initialisers, outputs and moving-statistics
        updates as ``keras.layers.BatchNormalization`` (Keras 3): only the
        computation of a training step with batch statistics changes. Keras
        3 computes it from ``ops.moments`` and ``ops.batch_normalization``,
        about ten element-wise passes over the activations forward and as
        many backward; this layer calls TensorFlow's ``FusedBatchNormV3``
        (one kernel each way, oneDNN's on x86 CPUs), as tf_keras did, for
        channels-last inputs of any rank (the spatial axes are flattened
        into one). The moving variance is updated with the biased batch
        variance, as Keras 3 does (the fused kernel returns the unbiased
        one, which is rescaled). Inference (``training=False``), a frozen
        layer (``trainable=False``), masks, ``renorm``, ``synchronized``
        and a normalised axis other than the last take Keras' own path.
        Measured in the documentation's benchmarks page.

        It takes the arguments of ``keras.layers.BatchNormalization`` and
        defines no ``__init__`` of its own.

        Input shape:
            Any, channels on ``axis`` (the last for the fused path).

        Output shape:
            Same as the input.

        Example:
        >>> layer = BatchNormalization(epsilon=1e-5, momentum=0.9)
        >>> y = layer(tf.random.normal((8, 16, 16, 32)), training=True)
        >>> y.shape
        TensorShape([8, 16, 16, 32])

        Reference:
            Ioffe and Szegedy, "Batch Normalization: Accelerating Deep
            Network Training by Reducing Internal Covariate Shift", ICML 2015.
        """

        def _fused_applies(self, inputs, training, mask):
            rank = len(inputs.shape)
            return (
                bool(training)
                and self.trainable
                and mask is None
                and not self.renorm
                and not self.synchronized
                and rank >= 2
                and self.axis in (-1, rank - 1)
                and inputs.shape[-1] is not None
            )

        def call(self, inputs, training=None, mask=None):
            if not self._fused_applies(inputs, training, mask):
                return super().call(inputs, training=training, mask=mask)
            # bfloat16 goes in as it is: the kernel keeps its statistics in float32 and gives the same values as
            # a float32 cast (1.5-2x faster: no cast passes each way); other dtypes are computed in float32.
            x = inputs if inputs.dtype in (tf.float32, tf.bfloat16) else tf.cast(inputs, "float32")
            channels = int(x.shape[-1])
            shape = tf.shape(x)
            gamma = tf.cast(self.gamma, "float32") if self.scale else tf.ones((channels,), "float32")
            beta = tf.cast(self.beta, "float32") if self.center else tf.zeros((channels,), "float32")
            empty = tf.constant([], "float32")
            y, mean, unbiased_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=tf.reshape(x, (shape[0], -1, 1, channels)),
                scale=gamma,
                offset=beta,
                mean=empty,
                variance=empty,
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=True,
            )
            count = tf.cast(tf.size(x) // channels, "float32")
            variance = unbiased_variance * tf.maximum(count - 1.0, 0.0) / count  # Keras 3's biased variance
            momentum = self.momentum
            stats = self.moving_mean.dtype  # float32, or bfloat16 under a plain "bfloat16" policy (keras-hub's dtype=)
            mean, variance = tf.cast(tf.stop_gradient(mean), stats), tf.cast(tf.stop_gradient(variance), stats)
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
            return tf.cast(tf.reshape(y, shape), self.compute_dtype)
