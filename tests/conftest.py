import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gc  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow  # noqa: E402, F401

import tfp_uq  # noqa: E402, F401

# TensorFlow, Keras and TFP leave ~400k long-lived objects that every full garbage collection walks
# (~0.3 s each, several a minute while functions trace). Frozen, collections skip them: the suite runs
# ~7% faster, and nothing of the code under test changes.
gc.freeze()


@pytest.fixture(autouse=True)
def _fixed_seed():
    keras.utils.set_random_seed(1234)
    yield
