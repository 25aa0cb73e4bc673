import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_convzoo.backend import keras  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    keras.utils.set_random_seed(0)
    yield
