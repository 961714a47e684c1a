"""IVON: the update rule, the posterior it converges to, and training that goes through plain `fit`."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import tfp_uq
from tfp_uq.optimizers import IVON, IVONPosterior

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_scripts")
X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
LABELS = (X[:, 0] - X[:, 1] > 0).astype("int64")


def price_estimate(noise, gradient, hessian, ess, delta):
    """The reference's Hessian estimate from one sample: noise * g * ess * (h + delta)."""
    return noise * gradient * ess * (hessian + delta)


def reference_update(mean, hessian, momentum, gradient, estimate, step, ess, hess_init, beta1, beta2, delta, lr, clip):
    """One update of team-approx-bayes/ivon `_ivon.py` (rescale_lr, debias) in NumPy float64: m, h, momentum."""
    momentum = beta1 * momentum + (1 - beta1) * gradient
    new_hessian = (
        beta2 * hessian
        + (1 - beta2) * estimate
        + 0.5 * (1 - beta2) ** 2 * (hessian - estimate) ** 2 / (hessian + delta)
    )
    direction = (momentum / (1 - beta1**step) + delta * mean) / (new_hessian + delta)
    mean = mean - lr * (hess_init + delta) * np.clip(direction, -clip, clip)
    return mean, new_hessian, momentum


def _set_state(optimizer, variable, mean, noise, hessian, momentum):
    slots = optimizer.slots(variable)
    slots["noise"].assign(noise)
    slots["hessian"].assign(hessian)
    slots["momentum"].assign(momentum)
    variable.assign(np.asarray(mean) + np.asarray(noise))


def _read_state(optimizer, variable):
    slots = optimizer.slots(variable)
    return (
        optimizer.posterior_mean(variable).numpy().astype("float64"),
        slots["noise"].numpy().astype("float64"),
        slots["hessian"].numpy().astype("float64"),
        slots["momentum"].numpy().astype("float64"),
    )


# The worked example's settings, as the reference names them (beta2 far from 1 to show the positivity term).
WORKED = {"ess": 10.0, "hess_init": 0.5, "beta1": 0.9, "beta2": 0.8, "delta": 0.1, "lr": 0.2, "clip": 1.0}


def _worked_optimizer(hess_approx="price", mc_samples=1, **overrides):
    options = {**WORKED, **overrides}
    return IVON(
        learning_rate=options["lr"],
        ess=options["ess"],
        hess_init=options["hess_init"],
        beta1=options["beta1"],
        beta2=options["beta2"],
        weight_decay=options["delta"],
        clip_radius=options["clip"],
        hess_approx=hess_approx,
        mc_samples=mc_samples,
        seed=5,
    )


def test_one_step_is_the_reference_rule_worked_by_hand():
    # m = [1, -0.5, 2], noise = [0.1, -0.2, 0.05] (theta = m + noise), h = [0.5, 2, 0.05],
    # momentum = [0.2, -0.1, 0], gradient at theta g = [0.4, 0.3, -2], step 1:
    #   h_hat = noise g ess (h + delta)                      = [0.24, -1.26, -0.15]
    #   h'    = 0.8 h + 0.2 h_hat + 0.02 (h - h_hat)^2 / (h + 0.1)
    #         = [0.448 + 0.0022533, 1.348 + 0.1012152, 0.01 + 0.0053333]   (the last term keeps h' > 0)
    #   momentum' = 0.9 momentum + 0.1 g                    = [0.22, -0.06, -0.2]
    #   direction = (momentum' / (1 - 0.9) + 0.1 m) / (h' + 0.1) = [4.18, -0.4196, -15.61] -> clipped to [1, ., -1]
    #   m'    = m - 0.2 (0.5 + 0.1) direction               = [0.88, -0.44965193, 2.12]
    variable = keras.Variable(np.zeros(3, "float32"))
    optimizer = _worked_optimizer()
    optimizer.build([variable])
    _set_state(optimizer, variable, [1.0, -0.5, 2.0], [0.1, -0.2, 0.05], [0.5, 2.0, 0.05], [0.2, -0.1, 0.0])
    optimizer.apply([tf.constant([0.4, 0.3, -2.0])], [variable])
    mean, noise, hessian, momentum = _read_state(optimizer, variable)
    np.testing.assert_allclose(hessian, [0.45025333, 1.44921524, 0.01533333], rtol=1e-6)
    np.testing.assert_allclose(momentum, [0.22, -0.06, -0.2], rtol=1e-6)
    np.testing.assert_allclose(mean, [0.88, -0.44965193, 2.12], rtol=1e-6)
    # The next sample: noise ~ N(0, 1 / (ess (h' + delta))), written into the variable.
    np.testing.assert_allclose(variable.numpy(), mean + noise, rtol=1e-6)
    assert np.all(noise != 0)


@pytest.mark.parametrize("hess_approx", ["price", "gradsq"])
def test_three_steps_follow_the_reference_rule_with_the_drawn_samples(hess_approx):
    curvature = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 4.0]])
    target = np.array([1.0, -1.0, 0.5])
    settings = {**WORKED, "ess": 50.0, "clip": 0.3}
    variable = keras.Variable(np.zeros(3, "float32"))
    optimizer = _worked_optimizer(hess_approx, ess=50.0, clip=0.3)
    optimizer.build([variable])
    state = (np.array([0.3, 0.1, -0.2]), np.array([0.05, -0.02, 0.01]), np.array([0.6, 0.9, 3.0]), np.zeros(3))
    _set_state(optimizer, variable, *state)
    for step in (1, 2, 3):
        mean, noise, hessian, momentum = state
        gradient = curvature @ (mean + noise) - target  # the gradient at the sample the variable holds
        if hess_approx == "price":
            estimate = price_estimate(noise, gradient, hessian, 50.0, WORKED["delta"])
        else:
            estimate = 50.0 * gradient**2
        optimizer.apply([tf.constant(gradient, "float32")], [variable])
        expected = reference_update(mean, hessian, momentum, gradient, estimate, step, **settings)
        state = _read_state(optimizer, variable)
        np.testing.assert_allclose(state[0], expected[0], rtol=1e-5, atol=1e-6, err_msg=f"mean, step {step}")
        np.testing.assert_allclose(state[2], expected[1], rtol=1e-5, atol=1e-6, err_msg=f"hessian, step {step}")
        np.testing.assert_allclose(state[3], expected[2], rtol=1e-5, atol=1e-7, err_msg=f"momentum, step {step}")
        assert not np.allclose(state[1], noise)  # each step draws a new sample


def test_mc_samples_average_the_draws_of_consecutive_calls():
    variable = keras.Variable(np.zeros(3, "float32"))
    optimizer = _worked_optimizer(mc_samples=2)
    optimizer.build([variable])
    mean, noise, hessian, momentum = (
        np.array([0.3, 0.1, -0.2]),
        np.array([0.05, -0.02, 0.01]),
        np.array([0.6, 0.9, 3.0]),
        np.zeros(3),
    )
    _set_state(optimizer, variable, mean, noise, hessian, momentum)
    gradients = [np.array([0.5, -1.0, 0.2]), np.array([0.1, 0.4, -0.6])]
    optimizer.apply([tf.constant(gradients[0], "float32")], [variable])
    after_first = _read_state(optimizer, variable)
    # The first call only draws the second sample; mean, h and momentum wait for the second call.
    np.testing.assert_allclose(after_first[0], mean, rtol=1e-6)
    np.testing.assert_allclose(after_first[2], hessian, rtol=1e-6)
    np.testing.assert_array_equal(after_first[3], momentum)
    assert not np.allclose(after_first[1], noise)
    optimizer.apply([tf.constant(gradients[1], "float32")], [variable])
    estimates = [
        price_estimate(n, g, hessian, WORKED["ess"], WORKED["delta"])
        for n, g in zip([noise, after_first[1]], gradients)
    ]
    expected = reference_update(
        mean, hessian, momentum, np.mean(gradients, axis=0), np.mean(estimates, axis=0), 1, **WORKED
    )
    state = _read_state(optimizer, variable)
    np.testing.assert_allclose(state[0], expected[0], rtol=1e-5)
    np.testing.assert_allclose(state[2], expected[1], rtol=1e-5)
    np.testing.assert_allclose(state[3], expected[2], rtol=1e-5)


def test_the_noise_has_the_posterior_scale():
    variable = keras.Variable(np.zeros(20_000, "float32"))
    optimizer = IVON(learning_rate=0.1, ess=100.0, hess_init=3.0, weight_decay=1.0, beta2=0.9, seed=1)
    optimizer.build([variable])
    optimizer.apply([tf.zeros(20_000)], [variable])
    noise = optimizer.slots(variable)["noise"].numpy()
    hessian = optimizer.slots(variable)["hessian"].numpy()
    standardized = noise * np.sqrt(100.0 * (hessian + 1.0))
    assert abs(standardized.mean()) < 4 / np.sqrt(20_000)
    assert abs(standardized.std() - 1.0) < 4 / np.sqrt(2 * 20_000)


def _linear_regression_problem(num_examples=200, sigma=0.5):
    rng = np.random.default_rng(0)
    correlation = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 1.0]])
    x = (rng.normal(size=(num_examples, 3)) @ np.linalg.cholesky(correlation).T).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3 + sigma * rng.normal(size=num_examples)).astype("float32")
    return x, y[:, None]


def test_linear_regression_converges_to_the_exact_mean_field_posterior():
    # Per-example loss L(w) = mean_n (y_n - x_n w - b)^2 / (2 sigma^2), ess = N, weight decay delta: q targets
    # exp(-N (L + delta/2 |w|^2)), a Gaussian with precision P = X1'X1 / sigma^2 + N delta I (X1: x and a ones
    # column). Its mean-field optimum has the exact posterior mean and variances 1 / P_ii = 1 / (N (H_ii + delta)),
    # H = X1'X1 / (N sigma^2) the per-example Hessian, which IVON's 1 / (ess (h + delta)) must reach (h -> H_ii).
    num_examples, sigma, delta = 200, 0.5, 0.05
    x, y = _linear_regression_problem(num_examples, sigma)
    design = np.concatenate([x, np.ones((num_examples, 1))], axis=1).astype("float64")
    precision = design.T @ design / sigma**2 + num_examples * delta * np.eye(4)
    exact_mean = np.linalg.solve(precision, design.T @ y[:, 0] / sigma**2)
    mean_field_variance = 1.0 / np.diag(precision)
    marginal_variance = np.diag(np.linalg.inv(precision))
    assert np.all(marginal_variance[:2] > 1.5 * mean_field_variance[:2])  # the two targets differ here

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    optimizer = IVON(learning_rate=0.05, ess=num_examples, hess_init=1.0, beta2=0.999, weight_decay=delta, seed=1)
    model.compile(
        optimizer,
        lambda t, p: 0.5 * ops.mean(ops.square(t - p), axis=-1) / sigma**2,
        jit_compile=True,
        steps_per_execution=100,
    )
    means, hessians = [], []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch >= 30:  # after 3000 full-batch steps, beta2's 1000-step memory has forgotten hess_init
                means.append(np.concatenate([optimizer.posterior_mean(v).numpy().ravel() for v in model.weights]))
                hessians.append(np.concatenate([optimizer.slots(v)["hessian"].numpy().ravel() for v in model.weights]))

    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, steps_per_epoch=100, epochs=130, shuffle=False, verbose=0, callbacks=[Record()])
    mean, hessian = np.mean(means, axis=0), np.mean(hessians, axis=0)
    variance = 1.0 / (num_examples * (hessian + delta))
    posterior_std = np.sqrt(mean_field_variance)
    # MC error: the Price estimate's relative sd is ~1.4 per step, so 10000 steps average h to ~1.4%;
    # the mean's readings scatter by ~0.15 posterior sd, averaged over 100.
    np.testing.assert_allclose(variance, mean_field_variance, rtol=0.06)
    assert np.all(np.abs(mean - exact_mean) < 0.1 * posterior_std), (mean - exact_mean) / posterior_std
    # After fit the model holds the mean, with the posterior's scale from the optimizer.
    final = np.concatenate([v.numpy().ravel() for v in model.weights])
    np.testing.assert_allclose(
        final, np.concatenate([optimizer.posterior_mean(v).numpy().ravel() for v in model.weights])
    )
    assert all(np.all(optimizer.slots(v)["noise"].numpy() == 0) for v in model.weights)


def _classifier(kind="sequential", seed=0):
    keras.utils.set_random_seed(seed)
    if kind == "sequential":
        return keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(8, activation="relu", name="hidden"),
                keras.layers.Dense(2, activation="softmax", name="out"),
            ]
        )
    if kind == "functional":
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
        return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(hidden))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation="relu", name="hidden")
            self.out = keras.layers.Dense(2, activation="softmax", name="out")

        def call(self, inputs):
            return self.out(self.hidden(inputs))

    model = Subclassed()
    model(X[:1])
    return model


def _fit(model, epochs=3, jit_compile=False, seed=3, **options):
    optimizer = IVON(learning_rate=0.05, ess=len(X), beta2=0.99, seed=seed, **options)
    model.compile(optimizer, "sparse_categorical_crossentropy", jit_compile=jit_compile)
    history = model.fit(X, LABELS, batch_size=16, epochs=epochs, shuffle=False, verbose=0)
    return optimizer, history.history["loss"]


def _values(model):
    return [v.numpy() for v in model.weights + model.optimizer.variables]


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
def test_plain_fit_trains_every_kind_of_model_at_samples(kind):
    model = _classifier(kind)
    start = [v.numpy() for v in model.trainable_variables]
    seen = []

    class Sample(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append([v.numpy() - model.optimizer.posterior_mean(v).numpy() for v in model.trainable_variables])

    optimizer = IVON(learning_rate=0.05, ess=len(X), beta2=0.99, seed=3)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    losses = model.fit(X, LABELS, batch_size=16, epochs=4, verbose=0, callbacks=[Sample()]).history["loss"]
    assert losses[-1] < losses[0]
    # During fit the variables hold mean + noise, with noise of the posterior's scale ...
    noise = seen[-1][0]
    std = optimizer.posterior_std(model.trainable_variables[0]).numpy()
    assert 0.7 < np.std(noise / std) < 1.3
    # ... and afterwards the mean.
    assert all(not np.allclose(a, v.numpy()) for a, v in zip(start, model.trainable_variables))
    for variable in model.trainable_variables:
        np.testing.assert_array_equal(variable.numpy(), optimizer.posterior_mean(variable).numpy())


def test_the_same_seed_trains_the_same_model_and_another_seed_does_not():
    first, second, other = _classifier(), _classifier(), _classifier()
    _fit(first, epochs=2, seed=3), _fit(second, epochs=2, seed=3), _fit(other, epochs=2, seed=4)
    for a, b in zip(_values(first), _values(second)):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first.weights[0].numpy(), other.weights[0].numpy())


def test_xla_trains_as_without_xla():
    plain, compiled = _classifier(), _classifier()
    _fit(plain, jit_compile=False), _fit(compiled, jit_compile=True)
    for a, b in zip(_values(plain), _values(compiled)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_keras_file_round_trip_continues_training_identically(tmp_path):
    model = _classifier()
    optimizer, _ = _fit(model, epochs=2)
    model.save(tmp_path / "ivon.keras")
    loaded = keras.models.load_model(tmp_path / "ivon.keras")
    assert isinstance(loaded.optimizer, IVON) and loaded.optimizer.get_config() == optimizer.get_config()
    for a, b in zip(_values(model), _values(loaded)):
        np.testing.assert_array_equal(a, b)
    for each in (model, loaded):
        each.fit(X, LABELS, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(_values(model), _values(loaded)):
        np.testing.assert_array_equal(a, b)


def test_backup_and_restore_resumes_an_interrupted_fit_exactly(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    def run(callbacks):
        model = _classifier()
        model.compile(IVON(learning_rate=0.05, ess=len(X), beta2=0.99, seed=3), "sparse_categorical_crossentropy")
        model.fit(X, LABELS, batch_size=16, epochs=4, shuffle=False, verbose=0, callbacks=callbacks)
        return model

    uninterrupted = run([])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="interrupted"):
        run([backup, Interrupt()])
    resumed = run([keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    for a, b in zip(_values(uninterrupted), _values(resumed)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_two_mirrored_replicas_train_as_one_device():
    def run(num_replicas):
        completed = subprocess.run(
            [sys.executable, os.path.join(SCRIPTS, "ivon_mirrored.py"), str(num_replicas)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        return json.loads(completed.stdout.strip().splitlines()[-1])

    one, two = run(1), run(2)
    assert two["replicas_agree"]
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=1e-5, err_msg=key)
    for key in ("kernel", "hessian", "std"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.slow
def test_jax_backend_trains_and_samples_the_posterior():
    completed = subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, "ivon_jax.py")], capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["losses"][-1] < 0.5 * summary["losses"][0]
    assert summary["mean_is_model"] and summary["again_equal"]
    assert summary["samples_shape"] == [16, 10, 2] and summary["samples_spread"] > 0


def test_mixed_precision_trains_float32_state():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _classifier()
        optimizer, losses = _fit(model, epochs=4)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert type(model.optimizer).__name__ == "LossScaleOptimizer" and model.optimizer.inner_optimizer is optimizer
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    slots = [slot for v in model.trainable_variables for slot in optimizer.slots(v).values()]
    assert all(v.dtype == "float32" for v in model.trainable_variables + slots)
    for variable in model.trainable_variables:
        np.testing.assert_array_equal(variable.numpy(), optimizer.posterior_mean(variable).numpy())


def test_variables_outside_var_names_take_the_plain_momentum_step():
    model = _classifier()
    optimizer = IVON(learning_rate=0.05, ess=len(X), hess_init=2.0, weight_decay=0.01, var_names=["out/"], seed=3)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    hidden_kernel, hidden_bias, out_kernel, out_bias = model.trainable_variables
    optimizer.build(model.trainable_variables)
    assert set(optimizer.slots(hidden_kernel)) == {"momentum"}
    assert set(optimizer.slots(out_kernel)) == {"momentum", "noise", "hessian"}
    start = hidden_kernel.numpy().astype("float64")
    gradient = np.random.default_rng(1).normal(size=start.shape)
    optimizer.apply([tf.constant(gradient, "float32")] + [tf.zeros(v.shape) for v in model.trainable_variables[1:]])
    # h stays hess_init and there is no noise: m -= lr (h0 + delta) ((0.1 g / 0.1) + delta m) / (h0 + delta).
    np.testing.assert_allclose(hidden_kernel.numpy(), start - 0.05 * (gradient + 0.01 * start), rtol=1e-5)
    assert optimizer.posterior_std(hidden_kernel) is None
    assert not np.allclose(out_kernel.numpy(), optimizer.posterior_mean(out_kernel).numpy())


def test_variational_lora_samples_only_the_adapters():
    base = _classifier()
    adapted = tfp_uq.bayesianize(base, method="lora", lora_rank=2, seed=1)
    tfp_uq.set_deterministic(adapted, True)
    tfp_uq.set_kl_weight(adapted, kl_weight=0.0)
    optimizer = IVON(learning_rate=0.05, ess=len(X), beta2=0.99, var_names=["lora_a$", "lora_b$"], seed=3)
    adapted.compile(optimizer, "sparse_categorical_crossentropy")
    frozen = [v.numpy() for v in adapted.non_trainable_variables if "kernel" in v.path]
    losses = adapted.fit(X, LABELS, batch_size=16, epochs=2, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    variational = [v.path for v in adapted.trainable_variables if optimizer.posterior_std(v) is not None]
    assert variational and all(path.endswith(("lora_a", "lora_b")) for path in variational)
    for before, variable in zip(frozen, [v for v in adapted.non_trainable_variables if "kernel" in v.path]):
        np.testing.assert_array_equal(before, variable.numpy())
    samples = optimizer.posterior(adapted).sample_outputs(X[:5], 6, tf.constant([0, 1]))
    assert samples.shape == (6, 5, 2) and np.std(samples.numpy(), axis=0).max() > 0


def _linear_model_with_hand_set_posterior():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(IVON(learning_rate=0.1, ess=20.0, weight_decay=0.5, seed=3), "mse")
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    kernel, bias = model.trainable_variables
    kernel.assign([[0.5], [-1.0], [2.0]])
    bias.assign([0.25])
    optimizer.slots(kernel)["hessian"].assign([[0.3], [1.5], [9.5]])
    optimizer.slots(bias)["hessian"].assign([4.5])
    return model, optimizer


def test_posterior_samples_have_the_closed_form_predictive_of_a_linear_model():
    model, optimizer = _linear_model_with_hand_set_posterior()
    posterior = optimizer.posterior(model)
    x = np.array([[1.0, 0.0, 0.0], [1.0, -2.0, 0.5], [0.0, 0.0, 0.0]], "float32")
    sample = tf.function(lambda inputs, seed: posterior.sample_outputs(inputs, 4000, seed), jit_compile=True)
    outputs = sample(tf.constant(x), tf.constant([3, 4], "int64")).numpy()[..., 0]
    assert outputs.shape == (4000, 3)
    # w_i ~ N(m_i, 1 / (20 (h_i + 0.5))): mean x.m + b, variance sum_i x_i^2 s_i^2 + s_b^2.
    variances = 1.0 / (20.0 * (np.array([0.3, 1.5, 9.5]) + 0.5))
    expected_mean = x @ np.array([0.5, -1.0, 2.0]) + 0.25
    expected_variance = x**2 @ variances + 1.0 / (20.0 * 5.0)
    assert np.all(np.abs(outputs.mean(0) - expected_mean) < 4 * np.sqrt(expected_variance / 4000))
    np.testing.assert_allclose(outputs.var(0), expected_variance, rtol=4 * np.sqrt(2 / 4000))
    again = sample(tf.constant(x), tf.constant([3, 4], "int64")).numpy()[..., 0]
    np.testing.assert_array_equal(outputs, again)
    other = sample(tf.constant(x), tf.constant([3, 5], "int64")).numpy()[..., 0]
    assert not np.allclose(outputs, other)


def test_posterior_saves_and_loads_as_a_keras_file(tmp_path):
    model, optimizer = _linear_model_with_hand_set_posterior()
    posterior = optimizer.posterior(model)
    posterior.save(tmp_path / "posterior.keras")
    loaded = IVONPosterior.load(tmp_path / "posterior.keras")
    seed = tf.constant([1, 2], "int64")
    np.testing.assert_array_equal(
        posterior.sample_outputs(X[:5, :3], 7, seed).numpy(), loaded.sample_outputs(X[:5, :3], 7, seed).numpy()
    )


def test_a_model_trained_with_ivon_predicts_exports_and_saves_as_its_posterior(tmp_path):
    model, optimizer = _linear_model_with_hand_set_posterior()
    posterior = tfp_uq.posterior.as_posterior(model)  # its optimizer learned a posterior: that one
    assert isinstance(posterior, IVONPosterior) and posterior.optimizer is optimizer
    x = np.array([[1.0, 0.0, 0.0], [1.0, -2.0, 0.5], [0.0, 0.0, 0.0]], "float32")
    result = tfp_uq.predict(model, x, num_samples=4000, seed=0, task="regression")
    variances = 1.0 / (20.0 * (np.array([0.3, 1.5, 9.5]) + 0.5))
    np.testing.assert_allclose(result.epistemic_variance[:, 0], x**2 @ variances + 0.01, rtol=0.1)
    # Served in process here; tests/test_export.py serves an IVON export in a process without tfp_uq.
    path = tfp_uq.export(model, tmp_path / "served", num_samples=4000, seed=0, task="regression")
    served = tf.saved_model.load(path).signatures["serving_default"](tf.constant(x))
    np.testing.assert_allclose(
        np.square(served["epistemic_std"].numpy())[:, 0], result.epistemic_variance[:, 0], rtol=1e-3
    )
    tfp_uq.posterior.save(model, tmp_path / "saved")
    loaded = tfp_uq.posterior.load(tmp_path / "saved")
    assert isinstance(loaded, IVONPosterior)
    np.testing.assert_array_equal(
        tfp_uq.predict(loaded, x, num_samples=16, seed=1).mean, tfp_uq.predict(model, x, num_samples=16, seed=1).mean
    )


def test_posterior_needs_the_optimizer_of_the_model():
    model = _classifier()
    with pytest.raises(ValueError, match="does not update the model's variables"):
        IVON(learning_rate=0.1, ess=10.0).posterior(model)


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("ess", 0.0, "ess must be > 0"),
        ("ess", -5.0, "ess must be > 0"),
        ("learning_rate", 0.0, "learning_rate must be > 0"),
        ("learning_rate", -0.1, "learning_rate must be > 0"),
        ("hess_init", 0.0, "hess_init must be > 0"),
        ("beta1", 1.0, r"beta1 must be in \[0, 1\)"),
        ("beta1", -0.1, r"beta1 must be in \[0, 1\)"),
        ("beta2", 1.0, r"beta2 must be in \[0, 1\)"),
        ("weight_decay", -1e-4, "weight_decay must be >= 0"),
        ("mc_samples", 0, "mc_samples must be a positive integer"),
        ("hess_approx", "fisher", "hess_approx must be one of 'price', 'gradsq'"),
        ("clip_radius", 0.0, "clip_radius must be > 0"),
        ("use_ema", True, "use_ema=True is not supported by IVON"),
        ("gradient_accumulation_steps", 2, "use mc_samples"),
    ],
)
def test_bad_arguments_raise_errors_that_name_them(argument, value, message):
    arguments = {"learning_rate": 0.1, "ess": 100.0, argument: value}
    with pytest.raises(ValueError, match=message):
        IVON(**arguments)


def test_var_names_that_match_nothing_raise_an_error_naming_them():
    model = _classifier()
    model.compile(IVON(learning_rate=0.1, ess=10.0, var_names=["nothing"]), "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"var_names \['nothing'\] match none"):
        model.optimizer.build(model.trainable_variables)
