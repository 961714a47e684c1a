"""Statistical checks of the seeded draws in `tfp_uq._random`."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from tfp_uq import _random

SEED = tf.constant([3, 4])


def test_normal_draw_is_standard_normal():
    draw = _random.normal((400, 250), SEED).numpy().ravel()
    assert stats.kstest(draw, "norm").pvalue > 1e-3
    assert abs(draw.mean()) < 4 / np.sqrt(draw.size)
    assert abs(draw.var() - 1.0) < 4 * np.sqrt(2 / draw.size)


def test_rademacher_signs_are_fair_and_independent():
    # 77 columns: rows do not start at word boundaries (32 signs per word).
    signs = _random.rademacher((2000, 77), SEED).numpy()
    assert set(np.unique(signs)) == {-1.0, 1.0}
    flat = signs.ravel()
    bound = 4 / np.sqrt(flat.size)
    assert abs(flat.mean()) < bound
    # Neighbouring bits of one word, the same bit of neighbouring words, and
    # neighbouring examples are uncorrelated.
    for lag in (1, 31, 32, 33, 77):
        assert abs(np.mean(flat[:-lag] * flat[lag:])) < bound, lag


def test_rademacher_substreams_differ():
    first = _random.rademacher((64, 64), _random.substream(SEED, 10)).numpy()
    second = _random.rademacher((64, 64), _random.substream(SEED, 11)).numpy()
    assert abs(np.mean(first * second)) < 4 / 64


def test_rademacher_is_the_same_eager_in_a_graph_with_unknown_batch_and_under_xla():
    expected = _random.rademacher((100, 7), SEED).numpy()

    def draw(x):
        return _random.rademacher((tf.shape(x)[0], 7), SEED)

    graph = tf.function(draw, input_signature=[tf.TensorSpec((None, 3))])
    xla = tf.function(draw, jit_compile=True)
    np.testing.assert_array_equal(graph(tf.zeros((100, 3))).numpy(), expected)
    np.testing.assert_array_equal(xla(tf.zeros((100, 3))).numpy(), expected)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_rademacher_dtype(dtype):
    signs = _random.rademacher((5, 3), SEED, dtype)
    assert signs.dtype == dtype
    assert set(np.unique(signs.numpy().astype("float32"))) <= {-1.0, 1.0}
