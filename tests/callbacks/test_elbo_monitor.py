import warnings

import keras
import pytest
from sklearn.datasets import load_diabetes

from tfp_uq import _recipes
from tfp_uq.callbacks import ELBOMonitor, KLAnnealing


def _diabetes():
    # 416 of the 442 rows: 13 full batches of 32, so an XLA-compiled step compiles once (a partial
    # last batch would compile a second step for its shape).
    x, y = load_diabetes(return_X_y=True)
    x, y = x[:416], y[:416]
    x = ((x - x.mean(0)) / x.std(0)).astype("float32")
    return x, ((y - y.mean()) / y.std())[:, None].astype("float32")


def _fit(model, x, y, epochs, monitor, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[monitor], **kwargs)
    return [w for w in caught if "ELBOMonitor" in str(w.message)]


def test_warns_once_with_epoch_and_numbers_when_training_diverges():
    x, y = _diabetes()
    # XLA off: the callback reads the logged loss, which the compiled step does not change (~3x shorter compile).
    model = _recipes.build("flipout", x.shape[1], "regression", 1, len(x), learning_rate=1.0, jit_compile=False)
    monitor = ELBOMonitor()
    caught = _fit(model, x, y, 15, monitor)
    assert len(caught) == 1 and monitor.warned
    message = str(caught[0].message)
    assert "epoch" in message and "above its best" in message


@pytest.mark.slow  # a 40-epoch regression recipe run (~35 s); make test-all runs it
def test_silent_on_the_regression_recipe():
    x, y = _diabetes()
    epochs = 40
    steps = _recipes.decay_steps(len(x), epochs, 32)
    model = _recipes.build("flipout", x.shape[1], "regression", 1, len(x), decay_steps=steps)
    monitor = ELBOMonitor()
    assert _fit(model, x, y, epochs, monitor) == [] and not monitor.warned


def test_changing_kl_weight_restarts_the_best_loss():
    x, y = _diabetes()
    model = _recipes.build("flipout", x.shape[1], "regression", 1, len(x), jit_compile=False)
    # The loss rises as the KL weight ramps from 0: a changed objective, not a divergence.
    annealing = KLAnnealing("linear", warmup=5, update_per="epoch", max_weight=50.0)
    monitor = ELBOMonitor(margin=0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=5, batch_size=32, verbose=0, callbacks=[annealing, monitor])
    assert history.history["loss"][-1] > min(history.history["loss"]) + 0.05
    assert not [w for w in caught if "ELBOMonitor" in str(w.message)]


def test_does_nothing_for_a_model_without_bayesian_layers():
    x, y = _diabetes()
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(10.0), "mse")
    monitor = ELBOMonitor()
    assert _fit(model, x, y, 3, monitor) == []


@pytest.mark.parametrize("margin", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_margin_raises_an_error_naming_it(margin):
    with pytest.raises(ValueError, match="margin"):
        ELBOMonitor(margin=margin)


def test_monitor_must_name_a_log_entry():
    with pytest.raises(TypeError, match="monitor"):
        ELBOMonitor(monitor=3)
