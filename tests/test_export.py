import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from _serving import serve_many_in_fresh_process as _serve_many_in_fresh_process

import tfp_uq
from tfp_uq import conformal, layers
from tfp_uq.optimizers import IVON

X = np.random.default_rng(0).normal(size=(7, 4)).astype("float32")


def _served_exports(folder):
    """The models whose exports the tests serve: name -> (model or posterior, [(export path, inputs), ...])."""
    from tfp_uq.inference import sample_posterior

    classifier = keras.Sequential(
        [
            keras.Input((4,)),
            layers.DenseFlipout(8, activation="relu", seed=1, posterior_scale_init=0.3),
            layers.DenseFlipout(3, activation="softmax", seed=2, posterior_scale_init=0.3),
        ]
    )
    classifier_path = tfp_uq.export(
        classifier, folder / "classifier", num_samples=40, task="classification", threshold=0.9, seed=5
    )
    regression = keras.Sequential(
        [keras.Input((4,)), layers.DenseReparameterization(2, seed=3, posterior_scale_init=0.2), layers.GaussianHead()]
    )
    regression_path = tfp_uq.export(regression, folder / "regression", num_samples=50, task="regression", seed=1)

    rng = np.random.default_rng(0)
    y = (X @ np.array([[1.0], [0.0], [-1.0], [0.5]]) + 0.3 * rng.normal(size=(7, 1))).astype("float32")
    linear = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    # Any PosteriorSamples serves this export test: short HMC chains without XLA (~2 s, NUTS under XLA ~12 s).
    posterior = sample_posterior(
        linear,
        X,
        y,
        noise_scale=0.3,
        kernel="hmc",
        num_leapfrog_steps=3,
        num_chains=2,
        num_burnin=50,
        num_results=50,
        jit_compile=False,
        progress=False,
    )
    hmc_path = tfp_uq.export(posterior, folder / "hmc", num_samples=100, task="regression")

    guarded = keras.Sequential(
        [keras.Input((4,)), layers.DenseFlipout(3, activation="softmax", seed=2, posterior_scale_init=0.3)]
    )
    guarded_path = tfp_uq.export(guarded, folder / "guarded", num_samples=8, threshold=0.01, seed=1)
    nonfinite = X.copy()
    nonfinite[1, 2], nonfinite[4, 0] = np.nan, -np.inf
    # Then the same model with weights that diverged to NaN.
    guarded.layers[0].kernel.assign(np.full((4, 3), np.nan, "float32"))
    diverged_path = tfp_uq.export(guarded, folder / "diverged", num_samples=4, threshold=0.5, seed=1)

    # A model whose IVON optimizer holds its posterior (at hess_init: tests/optimizers/test_ivon.py checks
    # a learned one against the closed form).
    ivon = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    ivon.compile(IVON(learning_rate=0.1, ess=20.0, weight_decay=0.5, seed=3), "mse")
    ivon.optimizer.build(ivon.trainable_variables)
    ivon_path = tfp_uq.export(ivon, folder / "ivon", num_samples=64, seed=0, task="regression")

    # Conformal calibrators: normalised intervals, and class-conditional RAPS sets. XLA tracing of their
    # fields is tested in tests/conformal/test_calibrator.py; here it would only add compile time.
    x_cal = rng.normal(size=(60, 4)).astype("float32")
    interval_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2), layers.GaussianHead()])
    intervals = conformal.calibrate(interval_model, x_cal, rng.normal(size=(60, 1)), coverage=0.9, score="normalized")
    set_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="softmax")])
    raps = conformal.RAPS(k_reg=1, lambda_=0.05, randomized=False)
    sets = conformal.calibrate(set_model, x_cal, rng.integers(0, 4, 60), coverage=0.8, score=raps, groups="class")
    intervals_path = tfp_uq.export(intervals, folder / "intervals", jit_compile=False)
    sets_path = tfp_uq.export(sets, folder / "sets", jit_compile=False)
    return {
        "classifier": (classifier, [(classifier_path, X)]),
        "regression": (regression, [(regression_path, X)]),
        "hmc": (posterior, [(hmc_path, X)]),
        "guarded": (guarded, [(guarded_path, nonfinite), (diverged_path, X)]),
        "ivon": (ivon, [(ivon_path, X)]),
        "intervals": (intervals, [(intervals_path, X)]),
        "sets": (sets, [(sets_path, X)]),
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Every export of `_served_exports`, served by one fresh process that cannot import tfp_uq.

    name -> (model or posterior, [outputs of each of its requests]), and "tfp_uq_imported" -> bool.
    """
    keras.utils.set_random_seed(1234)
    folder = tmp_path_factory.mktemp("served")
    exports = _served_exports(folder)
    response = _serve_many_in_fresh_process(
        [request for _, requests in exports.values() for request in requests], folder
    )
    outputs = iter(response["outputs"])
    served = {
        name: (model, [{k: np.asarray(v) for k, v in next(outputs).items()} for _ in requests])
        for name, (model, requests) in exports.items()
    }
    served["tfp_uq_imported"] = response["tfp_uq_imported"]
    return served


def test_classifier_export_serves_uncertainty_without_tfp_uq(served):
    assert not served["tfp_uq_imported"]
    model, (outputs,) = served["classifier"]
    assert set(outputs) == {
        "mean",
        "probs",
        "predicted_class",
        "entropy",
        "expected_entropy",
        "mutual_information",
        "variation_ratio",
        "refer",
    }
    assert outputs["probs"].shape == (7, 3) and outputs["refer"].shape == (7,)
    # Same seed, same graph: the first served call equals tfp_uq.predict under XLA.
    expected = tfp_uq.predict(model, X, num_samples=40, seed=5, jit_compile=True)
    np.testing.assert_allclose(outputs["probs"], expected.probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(outputs["mutual_information"], expected.mutual_information, rtol=1e-3, atol=1e-6)
    np.testing.assert_array_equal(outputs["refer"], expected.total_entropy > 0.9)


def test_regression_export_splits_std(served):
    model, (outputs,) = served["regression"]
    expected = tfp_uq.predict(model, X, num_samples=50, seed=1, jit_compile=True)
    np.testing.assert_allclose(outputs["mean"], expected.mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs["aleatoric_std"] ** 2, expected.aleatoric_variance, rtol=1e-3)
    np.testing.assert_allclose(outputs["epistemic_std"] ** 2, expected.epistemic_variance, rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(
        outputs["total_std"] ** 2, outputs["aleatoric_std"] ** 2 + outputs["epistemic_std"] ** 2, rtol=1e-4
    )


def test_task_is_read_from_the_output_layer_by_default(tmp_path):
    import tensorflow as tf

    body = [keras.Input((4,)), layers.DenseFlipout(5, activation="relu", seed=1, posterior_scale_init=0.3)]
    binary = keras.Sequential(body + [layers.DenseFlipout(1, activation="sigmoid", seed=2)])
    loaded = tf.saved_model.load(tfp_uq.export(binary, tmp_path / "binary", num_samples=20, seed=3))
    served = loaded.serve(X)
    expected = tfp_uq.predict(binary, X, num_samples=20, seed=3, jit_compile=True)
    assert expected.task == "classification" and served["probs"].shape == (7, 2)
    np.testing.assert_allclose(served["probs"].numpy(), expected.probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(served["predicted_class"].numpy(), expected.predicted_class)

    linear = keras.Sequential([keras.Input((4,)), layers.DenseFlipout(1, seed=2)])
    loaded = tf.saved_model.load(tfp_uq.export(linear, tmp_path / "linear", num_samples=5))
    served = loaded.serve(X)
    assert set(served) == {"mean", "total_std", "aleatoric_std", "epistemic_std"}

    # One unit whose sigmoid the graph hides, and a cross-entropy loss: a binary classifier.
    hidden = keras.Sequential(
        [keras.Input((4,)), layers.DenseFlipout(1, seed=2), keras.layers.Lambda(keras.ops.sigmoid)]
    )
    hidden.compile("adam", "binary_crossentropy")
    loaded = tf.saved_model.load(tfp_uq.export(hidden, tmp_path / "hidden", num_samples=5))
    assert loaded.serve(X)["probs"].shape == (7, 2)

    # Logits, and a compiled loss that says so: classification.
    logits = keras.Sequential([keras.Input((4,)), layers.DenseFlipout(3, seed=2)])
    logits.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loaded = tf.saved_model.load(tfp_uq.export(logits, tmp_path / "logits", num_samples=5))
    probs = loaded.serve(X)["probs"].numpy()
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_bad_export_arguments_raise(tmp_path):
    model = keras.Sequential([keras.Input((4,)), layers.DenseFlipout(2, activation="softmax")])
    with pytest.raises(ValueError, match="task"):
        tfp_uq.export(model, tmp_path / "a", task="ranking")
    with pytest.raises(ValueError, match="num_samples"):
        tfp_uq.export(model, tmp_path / "b", num_samples=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="overwrite"):
        tfp_uq.export(model, tmp_path / "full")
    with pytest.raises(ValueError, match="refer_on"):
        tfp_uq.export(model, tmp_path / "c", threshold=0.5, refer_on="confidence")
    tfp_uq.export(model, tmp_path / "full", overwrite=True, num_samples=2)
    assert (tmp_path / "full" / "saved_model.pb").exists()


def test_hmc_posterior_exports(served):
    posterior, (outputs,) = served["hmc"]
    expected = posterior.predict(X)
    np.testing.assert_allclose(outputs["mean"], expected.mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs["epistemic_std"] ** 2, expected.epistemic_variance, rtol=1e-3, atol=1e-8)
    np.testing.assert_allclose(outputs["total_std"] ** 2, expected.variance, rtol=1e-3)


def test_ivon_posterior_exports(served):
    model, (outputs,) = served["ivon"]
    # The same draws as tfp_uq.predict (tests/optimizers/test_ivon.py checks them against the closed form).
    expected = tfp_uq.predict(model, X, num_samples=64, seed=0, task="regression")
    np.testing.assert_allclose(outputs["epistemic_std"] ** 2, expected.epistemic_variance, rtol=1e-3)
    np.testing.assert_allclose(outputs["mean"], expected.mean, rtol=1e-4, atol=1e-4)


def test_conformal_exports_serve_the_calibrator_intervals_and_sets(served):
    calibrator, (outputs,) = served["intervals"]
    expected = calibrator.predict(X)
    np.testing.assert_allclose(outputs["lower"], expected.lower, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["upper"], expected.upper, rtol=1e-5, atol=1e-5)
    calibrator, (outputs,) = served["sets"]
    expected = calibrator.predict(X)
    np.testing.assert_array_equal(outputs["prediction_set"], expected.prediction_set)
    np.testing.assert_array_equal(outputs["set_size"], expected.set_size)


def test_exported_decisions_fail_safe_on_nonfinite_rows(served):
    _, (outputs, diverged) = served["guarded"]
    assert list(outputs["predicted_class"][[1, 4]]) == [-1, -1]
    assert outputs["refer"][[1, 4]].all() and np.isnan(outputs["probs"][[1, 4]]).all()
    finite = [0, 2, 3, 5, 6]
    assert (outputs["predicted_class"][finite] >= 0).all() and np.isfinite(outputs["probs"][finite]).all()
    # A model whose weights diverged: every row is referred, none gets a class.
    assert diverged["refer"].all() and (diverged["predicted_class"] == -1).all()


@pytest.mark.slow
def test_a_short_soak_of_concurrent_requests_stays_correct_and_flat_in_memory(tmp_path):
    soak = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "export_soak.py")
    completed = subprocess.run(
        [sys.executable, soak, "--make-example", str(tmp_path / "export"), "--threads", "4", "--requests", "100",
         "--max-batch", "8", "--warmup", "30"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["failures"] == 0 and not report["tfp_uq_imported"]
    assert report["requests"] == 400 and report["p99_ms"] >= report["p50_ms"] > 0
    assert report["rss_growth"] < 0.05, report


def _issue_25_models():
    """Models made of every family of issue 25's layers, with inputs: a masked token sequence and a signal."""
    ids = np.random.default_rng(1).integers(0, 9, size=(5, 6)).astype("int32")
    ids[0, 4:] = 0  # padding, masked
    tokens = keras.Sequential(
        [
            keras.Input((6,), dtype="int32"),
            layers.EmbeddingReparameterization(9, 4, mask_zero=True, seed=1, posterior_scale_init=0.2),
            layers.LSTMFlipout(5, seed=2, posterior_scale_init=0.2),
            layers.EinsumDenseFlipout("ab,bc->ac", 2, bias_axes="c", seed=3, posterior_scale_init=0.2),
        ]
    )
    signal = np.random.default_rng(2).normal(size=(5, 6, 2)).astype("float32")
    scale = dict(posterior_scale_init=0.2)
    convolutions = keras.Sequential(
        [
            keras.Input((6, 2)),
            layers.Conv1DTransposeFlipout(3, 3, strides=2, seed=1, **scale),
            layers.DepthwiseConv1DReparameterization(3, depth_multiplier=2, seed=2, **scale),
            layers.SeparableConv1DFlipout(3, 3, seed=3, **scale),
            layers.GRUReparameterization(2, seed=4, **scale),
        ]
    )
    return [(tokens, ids), (convolutions, signal)]


@pytest.mark.slow
def test_models_of_issue_25_layers_export_their_uncertainty(tmp_path):
    # 16 samples: predict's one call for layers that unroll samples, so served and predicted draws coincide.
    models = _issue_25_models()
    requests = [
        (tfp_uq.export(model, tmp_path / f"export{index}", num_samples=16, task="regression", seed=5), x)
        for index, (model, x) in enumerate(models)
    ]
    served = _serve_many_in_fresh_process(requests, tmp_path)
    assert not served["tfp_uq_imported"]
    for (model, x), outputs in zip(models, served["outputs"]):
        expected = tfp_uq.predict(model, x, num_samples=16, seed=5, jit_compile=True, task="regression")
        outputs = {k: np.asarray(v) for k, v in outputs.items()}
        np.testing.assert_allclose(outputs["mean"], expected.mean, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(outputs["epistemic_std"] ** 2, expected.epistemic_variance, rtol=1e-3, atol=1e-8)
        assert np.all(outputs["epistemic_std"] > 0)
