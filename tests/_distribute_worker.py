"""Subprocess side of tests/test_distribute.py (tf.distribute needs a fresh TensorFlow).

Modes:
  mirrored MODELS OUT      Splits the CPU into 2 logical devices (before TensorFlow
                           initialises them), trains each model's tiny twin for
                           STEPS steps single-device and under MirroredStrategy over
                           the 2 devices (same initial weights, data and global
                           batch) and writes the losses and weights to OUT (.npz).
  multiworker INDEX PORTS OUT
                           One worker of a MultiWorkerMirroredStrategy cluster on
                           127.0.0.1 (PORTS: comma-separated, one per worker);
                           trains a tiny model and writes its losses and weights.

Not a test module (pytest collects test_*.py only).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

STEPS = 3
GLOBAL_BATCH = 8
SIZE = 32
CLASSES = 4
LEARNING_RATE = 0.01
MULTIWORKER_MODEL = "seresnet18"


def _split_cpu(tf):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _data(channels, count):
    import numpy as np

    rng = np.random.default_rng(1234)
    x = rng.uniform(-1, 1, size=(count, SIZE, SIZE, channels)).astype("float32")
    y = rng.integers(0, CLASSES, size=(count,)).astype("int32")
    return x, y


def _build(name, sync_bn):
    import keras_convzoo as kcz
    from keras_convzoo.backend import keras

    spec = kcz.get_spec(name)
    keras.utils.set_random_seed(0)
    model = kcz.create_model(
        name,
        classes=CLASSES,
        classifier_activation=None,
        input_shape=(SIZE, SIZE, spec.input_channels),
        **spec.test_overrides,
    )
    if sync_bn:
        # Replicas normalise with the statistics of the global batch (all-reduced),
        # as the single device does; unsynchronised BN would use each replica's half.
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
    return model


def _fit(model, x, y, dataset_options=None):
    """Trains STEPS steps of GLOBAL_BATCH; returns the loss of every step."""
    import tensorflow as tf

    from keras_convzoo.backend import keras

    running = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            running.append(float(logs["loss"]))

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH, drop_remainder=True)
    if dataset_options is not None:
        dataset = dataset.with_options(dataset_options)
    model.fit(dataset, epochs=1, steps_per_epoch=STEPS, verbose=0, shuffle=False, callbacks=[Record()])
    # Keras logs the running mean of the epoch; recover each step's loss.
    return [(i + 1) * m - i * (running[i - 1] if i else 0.0) for i, m in enumerate(running)]


def _trainable(model, values):
    """The entries of ``values`` (as from ``model.get_weights()``) that are trainable weights."""
    ids = {id(w) for w in model.trainable_weights}
    return [v for w, v in zip(model.weights, values) if id(w) in ids]


def _compile(model, run_eagerly):
    from keras_convzoo.backend import keras

    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
        run_eagerly=run_eagerly,
    )


def mirrored(models, out):
    import tensorflow as tf

    devices = _split_cpu(tf)
    import numpy as np

    import keras_convzoo as kcz

    results = {"devices": np.array(devices)}
    for name in models:
        spec = kcz.get_spec(name)
        x, y = _data(spec.input_channels, STEPS * GLOBAL_BATCH)
        single = _build(name, sync_bn=True)  # same BN formula (E[x^2] - E[x]^2) as the replicas
        initial = single.get_weights()
        _compile(single, run_eagerly=True)
        single_losses = _fit(single, x, y)
        strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
        with strategy.scope():
            mirrored_model = _build(name, sync_bn=True)
            mirrored_model.set_weights(initial)
            _compile(mirrored_model, run_eagerly=True)
        mirrored_losses = _fit(mirrored_model, x, y)
        results[f"{name}/replicas"] = np.array(strategy.num_replicas_in_sync)
        results[f"{name}/single_losses"] = np.array(single_losses)
        results[f"{name}/mirrored_losses"] = np.array(mirrored_losses)
        start = _trainable(single, initial)
        trained = [w.numpy() for w in single.trainable_weights]
        results[f"{name}/weight_change"] = np.array(max(float(np.max(np.abs(a - b))) for a, b in zip(trained, start)))
        results[f"{name}/weight_diff"] = np.array(
            max(float(np.max(np.abs(a - b.numpy()))) for a, b in zip(trained, mirrored_model.trainable_weights))
        )
        print(name, single_losses, mirrored_losses, flush=True)
    np.savez(out, **results)


def _custom_loop_step(model, optimizer, loss_fn, strategy):
    """TensorFlow's custom training step: per-replica GradientTape, loss averaged over the global batch."""
    import tensorflow as tf

    @tf.function
    def train_step(images, labels):
        def replica_step(images, labels):
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                loss = tf.nn.compute_average_loss(loss_fn(labels, logits), global_batch_size=GLOBAL_BATCH)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))  # all-reduced across workers
            return loss

        per_replica = strategy.run(replica_step, args=(images, labels))
        return strategy.reduce("SUM", per_replica, axis=None)

    return train_step


def multiworker(index, ports, out):
    """One worker of a MultiWorkerMirroredStrategy cluster on 127.0.0.1.

    Keras 3.15's ``fit`` / ``train_on_batch`` fail under MultiWorkerMirroredStrategy with
    more than one worker (keras-team/keras#20585: the trainer all-reduces the data batch
    and the logs as if they were one tensor), so this is TensorFlow's custom training
    loop (``_custom_loop_step``). Each worker feeds its share of every global batch; BN
    is synchronised. Worker 0 then trains the same initial weights single-device on the
    whole global batches, the reference the test compares the cluster's losses with.
    """
    addresses = [f"127.0.0.1:{port}" for port in ports]
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
    import numpy as np
    import tensorflow as tf

    from keras_convzoo.backend import keras

    def loss_fn():
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    x, y = _data(3, STEPS * GLOBAL_BATCH)
    with strategy.scope():
        model = _build(MULTIWORKER_MODEL, sync_bn=True)
        optimizer = keras.optimizers.SGD(LEARNING_RATE)
        train_step = _custom_loop_step(model, optimizer, loss_fn(), strategy)
    initial = model.get_weights()
    per_worker = GLOBAL_BATCH // len(ports)
    losses = []
    for step in range(STEPS):
        shard = slice(step * GLOBAL_BATCH + index * per_worker, step * GLOBAL_BATCH + (index + 1) * per_worker)
        losses.append(float(train_step(tf.constant(x[shard]), tf.constant(y[shard]))))
    final = [w.numpy() for w in model.trainable_weights]
    initial_trainable = _trainable(model, initial)
    results = dict(
        replicas=np.array(strategy.num_replicas_in_sync),
        losses=np.array(losses),
        weight_change=np.array(max(float(np.max(np.abs(a - b))) for a, b in zip(final, initial_trainable))),
        **{f"w{i}": w for i, w in enumerate(final)},
    )
    if index == 0:
        reference = _build(MULTIWORKER_MODEL, sync_bn=True)  # same BN formula, one replica
        reference.set_weights(initial)
        optimizer = keras.optimizers.SGD(LEARNING_RATE)
        step_fn = _custom_loop_step(reference, optimizer, loss_fn(), tf.distribute.get_strategy())
        batches = [slice(s, s + GLOBAL_BATCH) for s in range(0, STEPS * GLOBAL_BATCH, GLOBAL_BATCH)]
        results["reference_losses"] = np.array([float(step_fn(tf.constant(x[b]), tf.constant(y[b]))) for b in batches])
    np.savez(out, **results)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "mirrored":
        mirrored(sys.argv[2].split(","), sys.argv[3])
    elif mode == "multiworker":
        multiworker(int(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")], sys.argv[4])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
