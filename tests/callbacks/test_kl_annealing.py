import math

import keras
import numpy as np
import pytest

import tfp_uq
from tfp_uq.callbacks import KLAnnealing

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 3)).astype("float32")
Y = (X[:, :1] * 2.0).astype("float32")


def _model():
    model = keras.Sequential(
        [keras.Input((3,)), tfp_uq.DenseFlipout(4, activation="tanh", seed=1), tfp_uq.DenseFlipout(1, seed=2)]
    )
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


@pytest.mark.parametrize(
    "kwargs, t, expected",
    [
        ({"schedule": "linear", "warmup": 100}, 25, 0.25),
        ({"schedule": "linear", "warmup": 100, "max_weight": 2.0}, 500, 2.0),
        ({"schedule": "constant", "max_weight": 0.5}, 7, 0.5),
        ({"schedule": "sigmoid", "warmup": 100}, 50, 0.5),
        ({"schedule": "sigmoid", "warmup": 100}, 80, 1 / (1 + math.exp(-3.0))),
        ({"schedule": "cyclical", "cycle_length": 100, "cycle_ratio": 0.5}, 125, 0.5),
        ({"schedule": "cyclical", "cycle_length": 100, "cycle_ratio": 0.5}, 180, 1.0),
        ({"schedule": lambda t: 0.1 * t}, 3, 0.3),
    ],
)
def test_schedule_values_equal_formulas(kwargs, t, expected):
    assert KLAnnealing(**kwargs).value(t) == pytest.approx(expected)


def test_layers_get_base_weight_times_schedule_and_history_logs_it():
    model = _model()
    annealing = KLAnnealing("linear", warmup=8, update_per="step", num_examples=64)
    history = model.fit(X, Y, batch_size=16, epochs=3, callbacks=[annealing], verbose=0).history
    # 4 steps per epoch; beta is set before each step from the optimizer counter.
    np.testing.assert_allclose(history["kl_weight"], [3 / 8, 7 / 8, 1.0])
    for layer in tfp_uq.bayesian_layers(model):
        assert float(layer.kl_weight_variable.numpy()) == pytest.approx(1.0 / 64)
    np.testing.assert_allclose(np.array(history["data_loss"]) + history["kl_loss"], history["loss"], rtol=1e-5)


def test_epoch_schedule_and_per_layer_selection():
    model = _model()
    first = tfp_uq.bayesian_layers(model)[0]
    tfp_uq.set_kl_weight(model, num_examples=64)
    annealing = KLAnnealing("linear", warmup=4, update_per="epoch", layers=[first.name])
    history = model.fit(X, Y, batch_size=32, epochs=2, callbacks=[annealing], verbose=0).history
    np.testing.assert_allclose(history["kl_weight"], [0.0, 0.25])
    assert float(first.kl_weight_variable.numpy()) == pytest.approx(0.25 / 64)
    assert float(tfp_uq.bayesian_layers(model)[1].kl_weight_variable.numpy()) == pytest.approx(1 / 64)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")


def test_resumed_run_continues_the_schedule(tmp_path):
    backup = str(tmp_path / "backup")
    model = _model()
    schedule = dict(schedule="linear", warmup=40, update_per="step", num_examples=64)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(
            X,
            Y,
            batch_size=16,
            epochs=5,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(backup), KLAnnealing(**schedule), _Interrupt()],
        )
    # A fresh process would rebuild the model and callbacks from scratch.
    resumed = _model()
    history = resumed.fit(
        X,
        Y,
        batch_size=16,
        epochs=5,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup), KLAnnealing(**schedule)],
    ).history
    # Two of five epochs (8 steps) were done: the last three end at steps 11, 15, 19.
    np.testing.assert_allclose(history["kl_weight"], [11 / 40, 15 / 40, 19 / 40])


@pytest.mark.parametrize(
    "kwargs, error, argument",
    [
        ({"schedule": "exponential"}, ValueError, "schedule"),
        ({"warmup": -1}, ValueError, "warmup"),
        ({"max_weight": -0.5}, ValueError, "max_weight"),
        ({"update_per": "batch"}, ValueError, "update_per"),
        ({"schedule": "cyclical"}, TypeError, "cycle_length"),
        ({"schedule": "cyclical", "cycle_length": 10, "cycle_ratio": 0.0}, ValueError, "cycle_ratio"),
        ({"num_examples": 0}, ValueError, "num_examples"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        KLAnnealing(**kwargs)


def test_missing_kl_weight_raises_at_train_begin():
    model = _model()
    with pytest.raises(ValueError, match="num_examples"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[KLAnnealing()])
