"""Every variant's tiny twin builds and runs forward (run in both Keras modes)."""

import numpy as np
import pytest

import keras_convzoo as kcz
from keras_convzoo.backend import KERAS_NAME, keras


@pytest.mark.parametrize("name", kcz.list_models())
def test_forward_and_train_step(name):
    spec = kcz.get_spec(name)
    model = kcz.create_model(name, input_shape=(None, None, 3), classes=5, **spec.test_overrides)
    x = np.random.default_rng(0).standard_normal((4, 64, 64, 3)).astype("float32")
    y = model(x, training=False).numpy()
    assert y.shape == (4, 5) and np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-4)
    # one training step moves the weights and keeps the loss finite
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(x, np.arange(4) % 5, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(b, np.array(w)) for b, w in zip(before, model.trainable_weights))


def test_backend_name():
    assert KERAS_NAME in ("keras", "tf_keras")
