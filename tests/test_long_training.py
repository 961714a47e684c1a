"""Issue 27: longer training must not end at a worse ELBO (a near-deterministic target, a constant feature)."""

import keras
import numpy as np
import pytest

import tfp_uq
from tfp_uq import _recipes

BATCH_SIZE = 32


def naval_like(num_rows, seed=0):
    """Features and target shaped like a propulsion-plant simulator's table.

    Every row is a deterministic function of three levels (a speed from 9 values,
    two decay coefficients from grids of 51 and 26 values): 15 smooth, strongly
    correlated functions of the speed, each perturbed by a few percent by the
    decays, plus one constant column. The target is the first decay coefficient
    itself (spread 0.015, no noise).
    """
    rng = np.random.default_rng(seed)
    speed = rng.choice(np.arange(3, 28, 3), size=num_rows) / 27.0
    decay = rng.choice(np.linspace(0.95, 1.0, 51), size=num_rows)
    other = rng.choice(np.linspace(0.975, 1.0, 26), size=num_rows)
    u = speed
    bases = [u, u**2, np.exp(2 * u), np.sqrt(u), 1 / (1 + u), u**3, np.log1p(5 * u), u * np.exp(-u), u**1.5]
    bases += [np.tanh(3 * u), u**2 + u, np.exp(u) - u, 2 + u, 1 + u**2, u**0.3]
    sensitivity = np.linspace(-2.0, 2.0, 15)[rng.permutation(15)]
    other_sensitivity = np.linspace(1.5, -1.5, 15)[rng.permutation(15)]
    columns = [b * (1 + a * (1 - decay) + c * (1 - other)) for b, a, c in zip(bases, sensitivity, other_sensitivity)]
    x = np.stack(columns[:7] + [np.full(num_rows, 288.0)] + columns[7:], axis=1)
    return x, decay[:, None]


def _standardised(num_train, num_test, seed=0):
    x, y = naval_like(num_train + num_test, seed)
    x_mean, x_std = x[:num_train].mean(0), x[:num_train].std(0)
    x_std[x_std == 0] = 1.0  # as benchmarks/uci.py does
    y_mean, y_std = y[:num_train].mean(0), y[:num_train].std(0)
    x = ((x - x_mean) / x_std).astype("float32")
    return (
        x[:num_train],
        ((y[:num_train] - y_mean) / y_std).astype("float32"),
        x[num_train:],
        y[num_train:],
        (y_mean, y_std),
    )


def _fit(method, epochs, data, seed=0):
    x_train, y_train, x_test, y_test, (y_mean, y_std) = data
    keras.utils.set_random_seed(seed)
    steps = _recipes.decay_steps(len(x_train), epochs, BATCH_SIZE)
    model = _recipes.build(method, x_train.shape[1], "regression", 1, len(x_train), seed=seed, decay_steps=steps)
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=BATCH_SIZE, verbose=0)
    num_samples = _recipes.num_predict_samples(method, 50)
    result = tfp_uq.predict(model, x_test, num_samples=num_samples, seed=0, return_samples=True)
    rmse = tfp_uq.metrics.rmse(y_test, result.samples[..., :1].mean(0) * y_std + y_mean)
    return history.history["loss"][-1], rmse


@pytest.mark.slow
def test_flipout_trained_ten_times_longer_ends_no_worse_and_near_mc_dropout():
    data = _standardised(2000, 500)
    short_loss, _ = _fit("flipout", 15, data)
    long_loss, long_rmse = _fit("flipout", 150, data)
    _, dropout_rmse = _fit("mc_dropout", 150, data)
    assert long_loss <= short_loss
    assert long_rmse <= 2.0 * dropout_rmse
