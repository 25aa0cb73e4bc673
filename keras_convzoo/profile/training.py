"""Time of one training step: forward, backward and the optimizer's update, as users fine-tune.

``benchmark_training`` compiles the model with an optimizer and a sparse
categorical cross-entropy and times ``model.train_on_batch`` on seeded
inputs and labels (``jit_compile=False``: Keras' ``"auto"`` leaves XLA off
on CPU, where it is slower). Rows are ``BenchmarkResult``s whose ``mode`` is
``train_<optimizer>`` (``train_sgd``, ``train_adamw``), with the precision
appended when it is not float32 (``train_sgd_mixed_bfloat16``).

Example:
>>> from keras_convzoo.profile import benchmark_training
>>> rows = benchmark_training("mobilenetv2_100", batch_sizes=(8,), input_size=128, optimizers=("sgd", "adamw"))
>>> [(r.mode, round(r.median_ms)) for r in rows]
"""

import numpy as np

from keras_convzoo.backend import dtype_policy_scope, keras
from keras_convzoo.profile.models import resolve_model
from keras_convzoo.profile.timing import check_batch_sizes, check_positive_int, error_text, result_row, times_ms
from keras_convzoo.progress import check_progress

def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels in this process, or None where it cannot say.

    TensorFlow turns them on by default only on x86 CPUs with AVX-512 VNNI/BF16
    or AMX; elsewhere (AVX2 CPUs) ``TF_ENABLE_ONEDNN_OPTS=1``, set before
    TensorFlow is imported, turns them on. Training steps differ by up to 1.7x
    between the two (the documentation's benchmarks page), so training reports
    name the state.

    Returns:
        True, False, or None (a TensorFlow build without the query).

    Example:
    >>> onednn_enabled() in (True, False, None)
    True
    """
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # pragma: no cover - other TensorFlow versions
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


#: Optimizers of the timed step: SGD with momentum 0.9, AdamW (Keras defaults otherwise).
OPTIMIZERS = ("sgd", "adamw")
#: Precisions: the dtype policy the model is built under.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def make_optimizer(name):
    """The optimizer of ``OPTIMIZERS`` named ``name`` (SGD: learning rate 0.01, momentum 0.9; AdamW: 1e-3).

    Args:
        name: ``"sgd"`` or ``"adamw"``.

    Returns:
        A new ``keras.optimizers.Optimizer``.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"`optimizers` must hold names from {list(OPTIMIZERS)}. Received: {name!r}")
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    return keras.optimizers.AdamW(learning_rate=1e-3)


def training_step_call(model, x, y, optimizer="sgd"):
    """A function of no arguments that runs one training step of ``model`` on ``(x, y)``.

    The model is compiled in place (``jit_compile=False``) with the
    optimizer and a sparse categorical cross-entropy (on logits, unless the
    model ends in a softmax).

    Args:
        model: a built single-input classification ``keras.Model``.
        x: the input batch.
        y: integer labels, one per sample.
        optimizer: a name of ``OPTIMIZERS``.

    Returns:
        The call: ``model.train_on_batch(x, y)``, returning the loss.
    """
    last = model.layers[-1]
    from_logits = getattr(last, "activation", None) is not keras.activations.softmax
    model.compile(optimizer=make_optimizer(optimizer),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), jit_compile=False)
    return lambda: model.train_on_batch(x, y)


def benchmark_training(
    model_or_name,
    batch_sizes=(8,),
    input_size=128,
    optimizers=("sgd",),
    precision="float32",
    warmup=2,
    repeats=5,
    model_kwargs=None,
    progress=None,
):
    """Times one training step per optimizer and batch size.

    Args:
        model_or_name: a registry name (built with random weights, logits,
            ``classes=1000``, at ``input_size``, under ``precision``) or a
            built single-input classification ``keras.Model`` (compiled in
            place; ``precision`` must then be ``"float32"``: the model keeps
            its own policy).
        batch_sizes: positive ints.
        input_size: spatial side (int) or sides (tuple); None: the model's
            static size or the variant's default.
        optimizers: names of ``OPTIMIZERS``.
        precision: one of ``PRECISIONS`` (``"mixed_bfloat16"`` pays off on
            CPUs with AVX-512 BF16 or AMX).
        warmup: untimed steps first (the first traces the step function).
        repeats: timed steps.
        model_kwargs: extra ``create_model`` arguments for a registry name.
        progress: optional ``progress(done, total)`` callback.

    Returns:
        A list of ``BenchmarkResult`` rows, by optimizer then batch size;
        a step that fails gives a row with its ``error``.

    Raises:
        ValueError: for a bad argument value, naming the argument.

    Example:
    >>> rows = benchmark_training("resnext50_32x4d", batch_sizes=(8,), precision="mixed_bfloat16")
    """
    batch_sizes = check_batch_sizes(batch_sizes)
    optimizers = (optimizers,) if isinstance(optimizers, str) else tuple(optimizers or ())
    if not optimizers or any(o not in OPTIMIZERS for o in optimizers) or len(set(optimizers)) != len(optimizers):
        raise ValueError(f"`optimizers` must be distinct names from {list(OPTIMIZERS)}. Received: optimizers="
                         f"{optimizers!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {list(PRECISIONS)}. Received: precision={precision!r}")
    warmup = check_positive_int("warmup", warmup, minimum=0)
    repeats = check_positive_int("repeats", repeats)
    progress = check_progress(progress)
    if isinstance(model_or_name, str):
        kwargs = dict(model_kwargs or {})
        kwargs.setdefault("classifier_activation", None)
        with dtype_policy_scope(precision):
            model, name, shape = resolve_model(model_or_name, input_size, kwargs)
    else:
        if precision != "float32":
            raise ValueError("`precision` applies to a registry name (the model is built under it); a model keeps "
                             f"its own dtype policy. Received: precision={precision!r} with a model")
        model, name, shape = resolve_model(model_or_name, input_size, model_kwargs)
    classes = int(model.outputs[0].shape[-1])
    rng = np.random.default_rng(0)
    suffix = "" if precision == "float32" else f"_{precision}"
    rows, done, total = [], 0, len(optimizers) * len(batch_sizes)
    batches = {b: (rng.uniform(-1.0, 1.0, (b,) + shape).astype("float32"), rng.integers(0, classes, b))
               for b in batch_sizes}
    for optimizer in optimizers:
        for batch in batch_sizes:
            x, y = batches[batch]
            mode = f"train_{optimizer}{suffix}"
            try:
                times = times_ms(training_step_call(model, x, y, optimizer), warmup, repeats)
                rows.append(result_row(name, mode, batch, shape, repeats, None, times))
            except Exception as error:  # a failing step gives a row with its reason
                rows.append(result_row(name, mode, batch, shape, repeats, None, error=error_text(error)))
            done += 1
            if progress is not None:
                progress(done, total)
    return rows
