import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from tfp_uq import losses

LOC = np.array([[0.5, -1.0], [2.0, 0.0]], "float32")
SCALE = np.array([[0.3, 2.0], [1.5, 0.7]], "float32")
Y = np.array([[1.0, 0.5], [1.0, -0.4]], "float32")


def _outputs(loc, scale):
    return np.concatenate([loc, scale], axis=-1)


def test_gaussian_nll_is_the_normal_log_density():
    loss = losses.GaussianNLL(reduction=None)
    expected = -stats.norm.logpdf(Y, LOC, SCALE).mean(-1)
    np.testing.assert_allclose(loss(Y, _outputs(LOC, SCALE)), expected, rtol=1e-6)


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_beta_nll_scales_the_loc_gradient_by_variance_to_the_beta(beta):
    loc = tf.Variable(LOC)
    with tf.GradientTape() as tape:
        value = losses.GaussianNLL(beta=beta, reduction="sum")(Y, tf.concat([loc, SCALE], -1))
    gradient = tape.gradient(value, loc).numpy()
    # d/d loc of mean over targets of 0.5 ((y - loc) / s)^2 * s^(2 beta).
    expected = (LOC - Y) / SCALE**2 * SCALE ** (2 * beta) / LOC.shape[-1]
    np.testing.assert_allclose(gradient, expected, rtol=1e-5)
    nll = -stats.norm.logpdf(Y, LOC, SCALE)
    np.testing.assert_allclose(value, (nll * SCALE ** (2 * beta)).mean(-1).sum(), rtol=1e-5)


def test_beta_one_gives_the_loc_the_squared_error_gradient():
    loc = tf.Variable(LOC)
    with tf.GradientTape() as tape:
        value = losses.GaussianNLL(beta=1.0, reduction="sum")(Y, tf.concat([loc, SCALE], -1))
    with tf.GradientTape() as tape_mse:
        mse = tf.reduce_sum(tf.reduce_mean(0.5 * (Y - loc) ** 2, -1))
    np.testing.assert_allclose(tape.gradient(value, loc), tape_mse.gradient(mse, loc), rtol=1e-5)


def test_config_round_trip():
    loss = losses.GaussianNLL(beta=0.5)
    assert losses.GaussianNLL.from_config(loss.get_config()).beta == 0.5


@pytest.mark.parametrize("beta, error", [(-0.1, ValueError), (1.5, ValueError), ("half", TypeError)])
def test_bad_beta(beta, error):
    with pytest.raises(error, match="beta"):
        losses.GaussianNLL(beta=beta)
