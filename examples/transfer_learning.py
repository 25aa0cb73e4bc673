"""Transfer learning with any keras_convzoo model: the keras.applications recipe.

1. Build the backbone as in keras.applications: ``include_top=False,
   pooling="avg", weights=<--weights or None>``, and freeze it.
2. Put augmentation (Keras preprocessing layers), the model's input scaling
   and a new classifier around it; train the classifier.
3. Unfreeze the backbone's top stage(s) (BatchNormalization layers stay
   frozen and in inference mode) and fine-tune with a lower learning rate.

Data: ``--data DIR`` (one sub-folder of images per class, read with
``keras.utils.image_dataset_from_directory``, 20% held out) or, by default,
scikit-learn's digits resized to RGB images (they ship with scikit-learn).
The backbone starts from its ImageNet weights (``--weights imagenet``, the
default: downloaded once and cached; any upstream tag or a weights file
works too). ``--weights none`` starts from random weights (offline
machines; then the frozen phase only trains a classifier on random
features); ``--smoke`` uses the tiny twin, which has no pretrained weights.

Writes ``<out>/<model>_transfer.keras`` (the whole model, reloadable with
``keras.models.load_model`` after ``import keras_convzoo``) and
``<out>/<model>_transfer_curves.png`` (accuracy and loss per epoch).

Usage:
    python examples/transfer_learning.py                       # mobilenetv2_035 (ImageNet) on digits, 64x64
    python examples/transfer_learning.py --weights none        # random init: no download (offline)
    python examples/transfer_learning.py --model convnext_tiny --weights imagenet \\
        --data ./flowers --image-size 224 --epochs 5 --fine-tune-epochs 5
    python examples/transfer_learning.py --strategy mirrored   # every visible GPU
    python examples/transfer_learning.py --smoke               # tiny twin, 32x32, a few steps
"""

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
import numpy as np  # noqa: E402

import keras_convzoo as kcz  # noqa: E402
from keras_convzoo.backend import keras, tf  # noqa: E402

_STAGE = re.compile(r"^(stage|block)(\d+)_")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("Usage:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="mobilenetv2_035", help="registry name (see `convzoo list`)")
    parser.add_argument("--weights", default="imagenet",
                        help="backbone weights: 'imagenet' (default), an upstream tag (see `convzoo info NAME`), a "
                             ".weights.h5 / state dict file, or 'none' for random init (offline machines)")
    parser.add_argument("--data", default=None, help="folder with one sub-folder of images per class (default: digits)")
    parser.add_argument("--image-size", type=int, default=None, help="input side (default 64; 32 with --smoke)")
    parser.add_argument("--batch-size", type=int, default=32, help="per replica")
    parser.add_argument("--epochs", type=int, default=None, help="epochs with the frozen backbone (default 6)")
    parser.add_argument("--fine-tune-epochs", type=int, default=None, help="epochs after unfreezing (default 6)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the frozen phase")
    parser.add_argument("--fine-tune-lr", type=float, default=1e-4, help="learning rate of the fine-tuning phase")
    parser.add_argument("--unfreeze-stages", type=int, default=1, help="top backbone stages to fine-tune")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout before the new classifier")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="random horizontal flips (default: on for --data, off for digits)")
    parser.add_argument("--randaugment", action="store_true",
                        help="add keras_cv's RandAugment when keras_cv is importable")
    parser.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default="default",
                        help="tf.distribute strategy (multiworker reads TF_CONFIG)")
    parser.add_argument("--tiny", action="store_true", help="the model's tiny test twin (fewer, narrower blocks)")
    parser.add_argument("--steps", type=int, default=None, help="limit the steps per epoch")
    parser.add_argument("--out", default="examples_out", help="output folder")
    _common.add_reproducibility_args(parser)
    parser.add_argument("--smoke", action="store_true",
                        help="quick check: tiny twin, 32x32, 1+1 epochs of 8 steps on 256 images")
    args = parser.parse_args(argv)
    if args.weights in ("none", "None", ""):
        args.weights = None
    if args.smoke:
        args.tiny = True
        args.weights = None  # the tiny twin has no pretrained weights
        args.image_size = args.image_size or 32
        args.epochs = 1 if args.epochs is None else args.epochs
        args.fine_tune_epochs = 1 if args.fine_tune_epochs is None else args.fine_tune_epochs
        args.steps = args.steps or 8
    args.image_size = args.image_size or 64
    args.epochs = 6 if args.epochs is None else args.epochs
    args.fine_tune_epochs = 6 if args.fine_tune_epochs is None else args.fine_tune_epochs
    if args.flip is None:
        args.flip = args.data is not None
    return args


def make_strategy(name):
    """The ``tf.distribute`` strategy named on the command line."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        # One worker unless TF_CONFIG describes a cluster.
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def load_data(args, global_batch):
    """``(train_ds, val_ds, class_names)``: batched datasets of 0-255 RGB images and int labels."""
    size = args.image_size
    if args.data:
        train_ds, val_ds = keras.utils.image_dataset_from_directory(
            args.data, validation_split=0.2, subset="both", seed=args.seed, image_size=(size, size),
            batch_size=global_batch, label_mode="int", color_mode="rgb",
        )
        class_names = list(train_ds.class_names)
    else:
        limit = 256 if args.smoke else None
        x_train, y_train, x_test, y_test = _common.load_digits_images(size, 3, seed=args.seed, limit=limit)
        train_ds = tf.data.Dataset.from_tensor_slices((x_train, y_train))
        train_ds = train_ds.shuffle(len(x_train), seed=args.seed).batch(global_batch)
        val_ds = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(global_batch)
        class_names = [str(i) for i in range(10)]
    if args.steps:
        train_ds = train_ds.repeat()  # --steps: every epoch draws its steps from an endless stream
    return train_ds.prefetch(tf.data.AUTOTUNE), val_ds.prefetch(tf.data.AUTOTUNE), class_names


def augmentation(args):
    """Random flips (optional), rotations, zooms and shifts; identity at inference.

    Each layer gets its own seed (``--seed`` + 1, + 2...): layers given the
    same seed draw the same random numbers, so the rotation, zoom and shift
    of an image would move together.
    """
    layers = []
    if args.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=args.seed + 1))
    layers += [
        keras.layers.RandomRotation(0.05, fill_mode="constant", seed=args.seed + 2),
        keras.layers.RandomZoom(0.1, fill_mode="constant", seed=args.seed + 3),
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=args.seed + 4),
    ]
    if args.randaugment:
        try:
            import keras_cv
        except ImportError:
            print("keras_cv is not installed: --randaugment ignored")
        else:
            layers.append(keras_cv.layers.RandAugment(value_range=(0, 255), seed=args.seed + 5))
    return keras.Sequential(layers, name="augmentation")


def build_model(args, num_classes):
    """``(model, backbone)``: augmentation -> scaling -> frozen backbone -> dropout -> classifier."""
    spec = kcz.get_spec(args.model)
    overrides = dict(spec.test_overrides) if args.tiny else {}
    shape = (args.image_size, args.image_size, 3)
    backbone = kcz.create_model(
        args.model, include_top=False, pooling="avg", weights=args.weights, input_shape=shape, **overrides
    )
    backbone.trainable = False
    inputs = keras.Input(shape, name="image")
    x = augmentation(args)(inputs)
    x = _common.apply_layers(_common.input_scaling(backbone), x)  # the scaling of the loaded weights
    # training=False is keras.applications' recipe, but Keras 3.15's functional models pass fit()'s
    # training=True down to a nested model over it: what keeps the backbone's BatchNormalization
    # statistics frozen is their trainable=False in unfreeze_top() below.
    x = backbone(x, training=False)
    x = keras.layers.Dropout(args.dropout, seed=args.seed + 6)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"{args.model}_transfer"), backbone


def stage_names(backbone):
    """Backbone stage prefixes in graph order (``stage1``, ``stage2``... or ``block1``... for CCNN)."""
    names = []
    for layer in backbone.layers:
        match = _STAGE.match(layer.name)
        if match and match.group(0)[:-1] not in names:
            names.append(match.group(0)[:-1])
    return names


def unfreeze_top(backbone, num_stages):
    """Makes the last ``num_stages`` stages and every layer after them trainable, BN excepted.

    Returns the unfrozen stage names.
    """
    stages = stage_names(backbone)
    top = stages[-num_stages:] if num_stages > 0 else []
    backbone.trainable = True
    in_top = False
    for layer in backbone.layers:
        match = _STAGE.match(layer.name)
        if match:
            in_top = match.group(0)[:-1] in top
        # Layers after the last stage (head conv, final norm) follow the last stage.
        trainable = in_top and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
    return top


def compile_model(model, lr):
    model.compile(
        optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )


def count_trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def plot_curves(history, switch_epoch, path, title):
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, key in zip(axes, ("accuracy", "loss")):
        ax.plot(epochs, history[key], "o-", label="train")
        ax.plot(epochs, history["val_" + key], "s-", label="validation")
        ax.axvline(switch_epoch + 0.5, color="gray", linestyle="--", label="unfreeze")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _common.save_figure(fig, path)


def main(argv=None):
    args = parse_args(argv)
    print(_common.make_reproducible(args.seed, args.tf_threads))
    out = _common.make_out_dir(args.out)
    strategy = make_strategy(args.strategy)
    replicas = strategy.num_replicas_in_sync
    global_batch = args.batch_size * replicas
    train_ds, val_ds, class_names = load_data(args, global_batch)
    print(f"model: {args.model}{' (tiny twin)' if args.tiny else ''}, weights: {args.weights or 'random'}, "
          f"input {args.image_size}x{args.image_size}, {len(class_names)} classes, "
          f"strategy: {args.strategy} ({replicas} replica(s)), global batch {global_batch}")
    if not args.weights:
        print("note: --weights none, the backbone starts from random weights: the frozen phase trains a "
              "classifier on random features (drop --weights none for ImageNet weights and real transfer)")

    with strategy.scope():
        model, backbone = build_model(args, len(class_names))
        compile_model(model, args.lr)
    if backbone.pretrained_cfg is not None:
        entry = backbone.pretrained_cfg
        print(f"pretrained weights: {entry.key} ({entry.source}, license {entry.license}), "
              f"input scaling '{entry.preprocessing}'")
    sample = next(iter(val_ds))[0][:4]

    history = {}

    def fit(epochs, phase):
        if epochs <= 0:
            return
        start = time.perf_counter()
        h = model.fit(train_ds, validation_data=val_ds, epochs=epochs, steps_per_epoch=args.steps,
                      shuffle=False, verbose=2)  # train_ds is shuffled already
        for key, values in h.history.items():
            history.setdefault(key, []).extend(values)
        print(f"{phase}: {epochs} epoch(s) in {time.perf_counter() - start:.1f} s")

    print(f"\n[1/2] frozen backbone: {count_trainable(model):,} trainable parameters (the new head)")
    fit(args.epochs, "frozen")
    frozen_loss, frozen_acc = model.evaluate(val_ds, verbose=0)
    print(f"accuracy after the frozen phase: {frozen_acc:.4f}")

    with strategy.scope():
        top = unfreeze_top(backbone, args.unfreeze_stages)
        compile_model(model, args.fine_tune_lr)  # recompile so the new trainable flags take effect
    print(f"\n[2/2] fine-tuning {', '.join(top) or 'nothing'} (+ layers after it) at lr {args.fine_tune_lr}: "
          f"{count_trainable(model):,} trainable parameters")
    fit(args.fine_tune_epochs, "fine-tune")
    final_loss, final_acc = model.evaluate(val_ds, verbose=0)
    print(f"accuracy after fine-tuning: {final_acc:.4f}")

    model_path = os.path.join(out, f"{args.model}_transfer.keras")
    model.save(model_path)
    reloaded = keras.models.load_model(model_path)
    diff = float(np.max(np.abs(reloaded.predict(sample, verbose=0) - model.predict(sample, verbose=0))))
    print(f"saved model: {model_path} (reloaded, max abs diff {diff:.2e})")
    if history:
        curves = plot_curves(history, max(args.epochs, 0), os.path.join(out, f"{args.model}_transfer_curves.png"),
                             f"{args.model}: frozen backbone, then top {args.unfreeze_stages} stage(s) fine-tuned")
        print(f"saved curves: {curves}")
    # The losses (validation cross-entropy) are a fine fingerprint of the weights: identical lines, identical models.
    val_images = sum(int(y.shape[0]) for _, y in val_ds)
    print(f"\nRESULT frozen_accuracy={frozen_acc:.4f} final_accuracy={final_acc:.4f} frozen_loss={frozen_loss:.6f} "
          f"final_loss={final_loss:.6f} val_images={val_images} unfrozen={','.join(top) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
