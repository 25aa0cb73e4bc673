"""What the keras-cv and keras-hub adapter tests share."""

import numpy as np
import pytest


@pytest.fixture
def fit_trains_backbone():
    """``check(classifier, backbone, layer_name)``: one epoch of ``fit`` on random data changes that backbone layer."""

    def check(classifier, backbone, layer_name):
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(8, 64, 64, 3)).astype("float32")
        y = rng.integers(0, 4, size=(8,))
        kernel = backbone.get_layer(layer_name).kernel
        before = kernel.numpy().copy()
        history = classifier.fit(x, y, batch_size=4, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        assert not np.allclose(before, kernel.numpy()), "fit did not train the zoo backbone"
        return x

    return check
