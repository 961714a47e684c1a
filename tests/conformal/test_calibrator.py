"""`tfp_uq.conformal.calibrate` end to end: Keras models, HMC samples, save / load, serving graphs, bad input."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import tfp_uq
from tfp_uq import conformal, layers, metrics, prediction
from tfp_uq.posterior import Posterior

RNG = np.random.default_rng(0)


def _heteroscedastic(n, rng):
    x = rng.uniform(-3, 3, (n, 1)).astype("float32")
    return x, (np.sin(x) + (0.1 + 0.3 * np.abs(x)) * rng.normal(size=(n, 1))).astype("float32")


@pytest.fixture(scope="module")
def mc_dropout_regressor():
    rng = np.random.default_rng(1)
    x, y = _heteroscedastic(400, rng)
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(32, activation="relu"),
            layers.MCDropout(0.1, seed=0),
            keras.layers.Dense(2),
            layers.GaussianHead(),
        ]
    )
    # Not XLA: compiling the training step would cost more than these few steps.
    model.compile(keras.optimizers.Adam(1e-2), tfp_uq.losses.GaussianNLL(), jit_compile=False)
    model.fit(x, y, epochs=15, batch_size=64, verbose=0)
    return model


def test_calibrated_mc_dropout_intervals_cover_new_data(mc_dropout_regressor):
    rng = np.random.default_rng(2)
    (x_cal, y_cal), (x_test, y_test) = _heteroscedastic(300, rng), _heteroscedastic(1000, rng)
    calibrator = conformal.calibrate(
        mc_dropout_regressor, x_cal, y_cal, coverage=0.9, score="normalized", num_samples=20, seed=0
    )
    result = calibrator.predict(x_test, seed=1)
    assert isinstance(result, tfp_uq.PredictionResult) and result.lower.shape == (1000, 1)
    np.testing.assert_allclose(result.upper - result.mean, calibrator.quantiles[0] * result.std, rtol=1e-5)
    np.testing.assert_array_equal(calibrator.predict(x_test, seed=1).upper, result.upper)
    # One calibration draw: the coverage is BetaBinomial(m, k, n + 1 - k) / m around k / (n + 1).
    k = conformal.conformal_rank(300, 0.9)
    spread = stats.betabinom(1000, k, 301 - k).std() / 1000
    coverage = metrics.interval_coverage(y_test, result.lower, result.upper)
    assert abs(coverage - k / 301) < 3.5 * spread


def test_save_and_load_give_the_same_intervals(mc_dropout_regressor, tmp_path):
    x, y = _heteroscedastic(60, np.random.default_rng(3))
    groups = np.arange(60) % 2
    calibrator = conformal.calibrate(
        mc_dropout_regressor, x, y, coverage=0.8, score="absolute", groups=groups, num_samples=10
    )
    calibrator.save(tmp_path / "calibrator.json")
    restored = conformal.load(tmp_path / "calibrator.json", mc_dropout_regressor)
    assert json.loads((tmp_path / "calibrator.json").read_text())["quantiles"] == calibrator.quantiles.tolist()
    assert restored.groups == [0, 1] and restored.num_samples == 10
    first, again = (c.predict(x[:7], groups=groups[:7], seed=4) for c in (calibrator, restored))
    np.testing.assert_array_equal(first.lower, again.lower)
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="not a tfp_uq conformal calibrator"):
        conformal.load(tmp_path / "other.json")


def test_a_calibrator_saves_and_loads_with_its_predictor_as_a_posterior(mc_dropout_regressor, tmp_path):
    x, y = _heteroscedastic(60, np.random.default_rng(5))
    calibrator = conformal.calibrate(mc_dropout_regressor, x, y, coverage=0.8, num_samples=10)
    tfp_uq.posterior.save(calibrator, tmp_path / "calibrated")
    restored = tfp_uq.posterior.load(tmp_path / "calibrated")
    assert isinstance(restored, conformal.ConformalCalibrator) and restored.get_config() == calibrator.get_config()
    np.testing.assert_allclose(restored.predict(x[:5], seed=6).upper, calibrator.predict(x[:5], seed=6).upper)


def test_class_conditional_aps_on_a_keras_classifier_repeats_with_its_seed():
    model = keras.Sequential([keras.Input((4,)), layers.DenseFlipout(3, activation="softmax", seed=0)])
    x = RNG.normal(size=(120, 4)).astype("float32")
    y = RNG.integers(0, 3, 120)
    calibrator = conformal.calibrate(model, x[:90], y[:90], coverage=0.8, score="aps", groups="class", num_samples=8)
    result = calibrator.predict(x[90:], seed=5)
    assert calibrator.quantiles.shape == (3,) and result.prediction_set.dtype == bool
    np.testing.assert_array_equal(result.set_size, result.prediction_set.sum(axis=1))
    np.testing.assert_array_equal(calibrator.predict(x[90:], seed=5).prediction_set, result.prediction_set)


def test_hmc_posterior_samples_calibrate_with_their_noise_in_the_std():
    from tfp_uq.inference.hmc import PosteriorSamples, _Likelihood

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    draws = [w + 0.1 * RNG.normal(size=(10, 2) + w.shape) for w in model.get_weights()]
    posterior = PosteriorSamples(model, draws, _Likelihood("gaussian", 0.3, False), 0.3, {})
    x = RNG.normal(size=(40, 2)).astype("float32")
    y = model.predict(x, verbose=0) + 0.3 * RNG.normal(size=(40, 1))
    calibrator = conformal.calibrate(posterior, x[:30], y[:30], coverage=0.9)
    assert isinstance(calibrator.score, conformal.NormalizedResidual)  # "auto": the std is positive
    result = calibrator.predict(x[30:])
    assert result.num_samples == 20
    np.testing.assert_allclose(result.upper - result.mean, calibrator.quantiles[0] * result.std, rtol=1e-6)
    assert np.all(result.variance > 0.09)  # noise 0.3^2 plus the spread of the draws


def test_extra_fields_trace_under_xla_and_equal_apply():
    probs = RNG.dirichlet(np.ones(5), 64)
    labels = RNG.integers(0, 5, 64)
    result = prediction.PredictionResult(task="classification", mean=probs, probs=probs, num_samples=1)
    calibrator = conformal.ConformalCalibrator.from_predictions(result, labels, 0.7, score="raps", groups="class")

    @tf.function(jit_compile=True)
    def sets(probs, seed):
        return calibrator.extra_fields({"probs": probs}, "classification", seed=seed)

    served = sets(tf.constant(probs, "float32"), tf.constant([3, 0], "int32"))
    expected = calibrator.apply(result, seed=3)
    np.testing.assert_array_equal(served["prediction_set"].numpy(), expected.prediction_set)
    np.testing.assert_array_equal(served["set_size"].numpy(), expected.set_size)

    calibrator = conformal.ConformalCalibrator(None, "absolute", 0.9, [[1.0], [2.0]], groups=["a", "b"])
    bounds = tf.function(
        lambda mean, groups: calibrator.extra_fields({"mean": mean}, "regression", groups=groups), jit_compile=True
    )
    served = bounds(tf.zeros((3, 1)), tf.constant(calibrator.group_index(["b", "a", "b"])))
    np.testing.assert_allclose(served["upper"].numpy(), [[2.0], [1.0], [2.0]])


def test_tfp_uq_predict_of_a_calibrator_gives_its_intervals():
    x = RNG.normal(size=(50, 3)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), layers.DenseFlipout(2, seed=1), layers.GaussianHead()])
    calibrator = conformal.calibrate(model, x[:40], RNG.normal(size=(40, 1)), coverage=0.8, num_samples=16)
    direct = tfp_uq.predict(calibrator, x[40:], num_samples=16, seed=2)
    np.testing.assert_allclose(direct.upper, calibrator.predict(x[40:], seed=2).upper, rtol=1e-6)
    randomized = conformal.calibrate(
        keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")]),
        x[:40],
        RNG.integers(0, 3, 40),
        score="aps",
    )
    # tfp_uq.predict passes its seed on to the randomized sets: same seed, same sets.
    first, again = (tfp_uq.predict(randomized, x[40:], seed=3) for _ in range(2))
    np.testing.assert_array_equal(first.prediction_set, again.prediction_set)
    np.testing.assert_array_equal(first.set_size, first.prediction_set.sum(-1))


class _StandInPosterior(Posterior):
    """The posterior protocol with recognisable answers, to see the calibrator forward it."""

    deterministic = True
    random_samples = False
    max_samples_per_call = 4

    def sample_outputs(self, inputs, num_samples, seed):
        return ("samples", inputs, num_samples, seed)

    def resolve_num_samples(self, requested):
        return 5

    def output_kinds(self, count):
        return ["kind"] * count

    def resolve_from_logits(self, from_logits):
        return "logits?"

    def exact_fields(self, inputs):
        return [{"mean": inputs}]

    def fresh_seed(self):
        return "fresh"


def test_the_calibrator_forwards_the_posterior_protocol_to_its_predictor():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    calibrator = conformal.ConformalCalibrator(_StandInPosterior(model), "absolute", 0.9, [[0.5]])
    assert calibrator.model is model and calibrator.deterministic and not calibrator.random_samples
    assert calibrator.max_samples_per_call == 4 and calibrator.input_tensors == model.inputs
    assert calibrator.sample_outputs("x", 3, "seed") == ("samples", "x", 3, "seed")
    assert calibrator.resolve_num_samples(100) == 5
    assert calibrator.output_kinds(2) == ["kind", "kind"]
    assert calibrator.resolve_from_logits(None) == "logits?" and calibrator.fresh_seed() == "fresh"
    assert calibrator.has_exact_fields and calibrator.exact_fields("x") == [{"mean": "x"}]
    # A predictor without closed-form fields: the calibrator says it has none.
    assert not conformal.ConformalCalibrator(model, "absolute", 0.9, [[0.5]]).has_exact_fields


@pytest.fixture(scope="module")
def classifier_data():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    return model, RNG.normal(size=(30, 2)).astype("float32"), RNG.integers(0, 3, 30)


@pytest.mark.parametrize("coverage", [0.0, 1.0, 1.5, -0.1])
def test_coverage_outside_the_open_unit_interval_is_refused(classifier_data, coverage):
    model, x, y = classifier_data
    with pytest.raises(ValueError, match="coverage must be in the open interval"):
        conformal.calibrate(model, x, y, coverage=coverage)


def test_too_few_calibration_points_are_refused_naming_the_arguments(classifier_data):
    model, x, y = classifier_data
    with pytest.raises(ValueError, match="x_cal and y_cal hold 8 calibration points; coverage=0.9 needs at least 9"):
        conformal.calibrate(model, x[:8], y[:8], coverage=0.9)
    with pytest.raises(ValueError, match="y_cal: class 2 has 0 calibration points"):
        conformal.calibrate(model, x[y < 2], y[y < 2], coverage=0.5, groups="class")
    with pytest.raises(ValueError, match="groups: group 'b' has 1 calibration points"):
        conformal.calibrate(model, x, y, coverage=0.8, groups=np.array(["a"] * 29 + ["b"]))


def test_labels_outside_the_classes_are_refused(classifier_data):
    model, x, y = classifier_data
    with pytest.raises(ValueError, match=r"y_cal must hold class labels in \[0, 2\].*got values in \[0, 3\]"):
        conformal.calibrate(model, x, np.where(y == 2, 3, y))
    with pytest.raises(ValueError, match="y_cal must hold integer class labels"):
        conformal.calibrate(model, x, y + 0.5)


def test_nan_predictions_and_targets_are_refused():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    x, y = RNG.normal(size=(20, 2)).astype("float32"), RNG.normal(size=(20, 1))
    with pytest.raises(ValueError, match="y_cal must be finite"):
        conformal.calibrate(model, x, np.where(np.arange(20)[:, None] == 3, np.nan, y))
    with pytest.raises(
        ValueError, match=r"predictor: the predictions on x_cal are not finite \(NaN or inf\) in rows 3 "
    ):
        conformal.calibrate(model, np.where(np.arange(20)[:, None] == 3, np.nan, x), y)
    model.layers[0].kernel.assign(np.full((2, 1), np.nan, "float32"))
    with pytest.raises(ValueError, match=r"predictor: the predictions on x_cal are not finite.*\(20 of 20\)"):
        conformal.calibrate(model, x, y)
    nan_result = prediction.PredictionResult(task="regression", mean=np.full((20, 1), np.nan), num_samples=1)
    with pytest.raises(
        ValueError, match=r"result_cal: the predictions on x_cal are not finite \(NaN or inf in 'mean'\)"
    ):
        conformal.ConformalCalibrator.from_predictions(nan_result, y)


def test_scores_that_do_not_fit_the_predictor_are_refused(classifier_data):
    model, x, y = classifier_data
    with pytest.raises(ValueError, match="score: AbsoluteResidual.. is a regression score"):
        conformal.calibrate(model, x, y, score="absolute")
    point = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="score: NormalizedResidual.*at most std_floor"):
        conformal.calibrate(point, x, RNG.normal(size=(30, 1)), score="normalized")
    with pytest.raises(ValueError, match="score: CQR needs a predictor whose output has 2 units"):
        conformal.calibrate(point, x, RNG.normal(size=(30, 1)), score="cqr")
    with pytest.raises(ValueError, match="groups='class'.*needs a classifier"):
        conformal.calibrate(point, x, RNG.normal(size=(30, 1)), groups="class")
    with pytest.raises(TypeError, match="predictor: expected a keras.Model or a tfp_uq.posterior.Posterior"):
        conformal.calibrate("model", x, y)


def test_groups_at_prediction_must_match_the_calibration(classifier_data):
    model, x, y = classifier_data
    grouped = conformal.calibrate(model, x, y, coverage=0.5, groups=np.arange(30) % 2)
    with pytest.raises(ValueError, match="groups: this calibrator is group-conditional"):
        grouped.predict(x)
    with pytest.raises(ValueError, match=r"groups: labels \[7\] were not among the calibration groups \[0, 1\]"):
        grouped.predict(x[:2], groups=[0, 7])
    with pytest.raises(ValueError, match="groups: this calibrator is marginal"):
        conformal.calibrate(model, x, y, coverage=0.5).predict(x, groups=np.zeros(30))
