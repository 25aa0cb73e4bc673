"""profile.benchmark_training: one real training step per optimizer, precision and batch."""

import numpy as np
import pytest

from keras_convzoo.applications import create_model, get_spec
from keras_convzoo.backend import keras
from keras_convzoo.profile import benchmark_training, training_step_call
from keras_convzoo.profile import training as training_module

TINY = dict(get_spec("mobilenetv2_035").test_overrides)


def test_the_timed_call_is_a_real_training_step():
    # Repeated steps on one batch lower its loss and change the weights: forward, backward and update all run.
    model = create_model("mobilenetv2_035", input_shape=(32, 32, 3), classes=4, classifier_activation=None, **TINY)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 4, 8)
    before = [w.copy() for w in model.get_weights()]
    step = training_step_call(model, x, y, "adamw")
    losses = [float(np.asarray(step())) for _ in range(12)]
    assert losses[-1] < 0.5 * losses[0], losses
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert model.optimizer.__class__.__name__ == "AdamW" and model.loss.from_logits


@pytest.mark.slow  # four compiled training functions: about a minute on 2 cores
def test_rows_per_optimizer_and_batch(monkeypatch):
    built = []
    real = training_module.training_step_call

    def recording(model, x, y, optimizer="sgd"):
        built.append((model.dtype_policy.name, model.layers[-1].activation.__name__, x.shape, optimizer))
        return real(model, x, y, optimizer)

    monkeypatch.setattr(training_module, "training_step_call", recording)
    rows = benchmark_training("mobilenetv2_035", batch_sizes=(2, 1), input_size=32, optimizers=("sgd", "adamw"),
                              warmup=1, repeats=2, model_kwargs=TINY)
    assert [(r.mode, r.batch_size) for r in rows] == [("train_sgd", 2), ("train_sgd", 1), ("train_adamw", 2),
                                                      ("train_adamw", 1)]
    assert all(r.ok and r.repeats == 2 and r.input_shape == (32, 32, 3) for r in rows), [r.error for r in rows]
    assert [b[2] for b in built] == [(2, 32, 32, 3), (1, 32, 32, 3)] * 2 and [b[3] for b in built] == [
        "sgd", "sgd", "adamw", "adamw"]
    assert {b[0] for b in built} == {"float32"} and {b[1] for b in built} == {"linear"}  # logits


def test_precision_builds_the_model_under_the_policy_and_restores_it(monkeypatch):
    seen = []
    real = training_module.training_step_call
    monkeypatch.setattr(training_module, "training_step_call",
                        lambda model, *a: (seen.append(model.dtype_policy.name), real(model, *a))[1])
    rows = benchmark_training("mobilenetv2_035", batch_sizes=(2,), input_size=32, precision="mixed_bfloat16",
                              warmup=1, repeats=1, model_kwargs=TINY)
    assert [r.mode for r in rows] == ["train_sgd_mixed_bfloat16"] and rows[0].ok, rows[0].error
    assert seen == ["mixed_bfloat16"] and keras.config.dtype_policy().name == "float32"


@pytest.mark.parametrize("kwargs, text", [
    ({"optimizers": ("sgd", "lion")}, r"`optimizers` must be distinct names from \['sgd', 'adamw'\]"),
    ({"optimizers": ()}, r"`optimizers` must be distinct names"),
    ({"precision": "float8"}, r"`precision` must be one of \['float32', 'mixed_bfloat16', 'mixed_float16'\]. "
                              r"Received: precision='float8'"),
    ({"repeats": 0}, r"`repeats` must be a positive int. Received: repeats=0"),
    ({"batch_sizes": (0,)}, r"`batch_sizes`"),
])
def test_bad_arguments_name_the_argument(kwargs, text):
    with pytest.raises(ValueError, match=text):
        benchmark_training("mobilenetv2_035", input_size=32, model_kwargs=TINY, **kwargs)


def test_a_model_keeps_its_own_policy():
    model = create_model("mobilenetv2_035", input_shape=(32, 32, 3), **TINY)
    with pytest.raises(ValueError, match=r"`precision` applies to a registry name"):
        benchmark_training(model, precision="mixed_bfloat16")
    rows = benchmark_training(model, batch_sizes=(2,), input_size=None, warmup=0, repeats=1)
    assert rows[0].ok and rows[0].model == model.name and rows[0].input_shape == (32, 32, 3)
