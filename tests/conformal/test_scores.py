"""Conformal quantile and scores against hand-computed numbers."""

import keras
import numpy as np
import pytest
from keras import ops
from scipy import integrate, optimize, stats

from tfp_uq import conformal, metrics
from tfp_uq.conformal import scores
from tfp_uq.prediction import PredictionResult

# Three inputs over four classes; input 1 ties classes 0 and 1 (class 0 ranks first).
PROBS = np.array([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.4, 0.1], [0.9, 0.05, 0.03, 0.02]])


def _classification(probs):
    return PredictionResult(task="classification", mean=probs, probs=probs, num_samples=1)


def _regression(mean, variance=None, epistemic_variance=None):
    return PredictionResult(
        task="regression",
        mean=np.asarray(mean, dtype="float64"),
        num_samples=1,
        variance=variance,
        epistemic_variance=epistemic_variance,
    )


def _fixed(score, quantile, groups=None):
    return conformal.ConformalCalibrator(None, score, 0.9, np.atleast_1d(quantile), groups)


def test_quantile_is_the_ceil_n_plus_1_coverage_th_smallest_score():
    scores_ = [0.5, 2.0, 1.0, 3.0, 4.0, 0.1, 2.5, 3.5, 1.5]  # sorted: 0.1 0.5 1.0 1.5 2.0 2.5 3.0 3.5 4.0
    assert conformal.conformal_quantile(scores_, 0.8) == 3.5  # k = ceil(10 * 0.8) = 8
    assert conformal.conformal_quantile(scores_, 0.6) == 2.5  # k = 6
    assert conformal.conformal_quantile(scores_, 0.9) == 4.0  # k = 9 = n: the largest
    with pytest.raises(ValueError, match="at least 9"):
        conformal.conformal_quantile(scores_[:8], 0.9)  # k = 9 > n = 8: infinite


def test_rank_is_exact_where_the_float_product_lands_above_an_integer():
    # (99 + 1) * (1 - 0.45) is 55.00000000000001 in floating point; the rule's k is 55.
    assert conformal.conformal_rank(99, 1 - 0.45) == 55
    assert conformal.conformal_rank(20, 0.9) == 19  # ceil(18.9)
    assert [conformal.minimum_calibration_size(c) for c in (0.5, 0.8, 0.9, 0.95, 0.99)] == [1, 4, 9, 19, 99]


def test_absolute_intervals_are_the_mean_plus_minus_the_hand_computed_quantile():
    mean = np.zeros((9, 1))
    y = np.array([0.5, -2.0, 1.0, 3.0, -4.0, 0.1, 2.5, -3.5, 1.5])[:, None]  # |residuals| as above
    calibrator = conformal.ConformalCalibrator.from_predictions(_regression(mean), y, 0.8, score="absolute")
    np.testing.assert_array_equal(calibrator.quantiles, [[3.5]])
    result = calibrator.apply(_regression([[1.0], [-2.0]]))
    np.testing.assert_allclose(result.lower, [[-2.5], [-5.5]])
    np.testing.assert_allclose(result.upper, [[4.5], [1.5]])


def test_normalized_residual_divides_by_the_chosen_std_and_floors_it():
    score = conformal.NormalizedResidual("epistemic", std_floor=0.1)
    fields = {
        "mean": np.array([0.0, 0.0]),
        "variance": np.array([4.0, 4.0]),
        "epistemic_variance": np.array([1.0, 0.0]),
    }
    np.testing.assert_allclose(ops.convert_to_numpy(score.scores(fields, np.array([2.0, 0.5]))), [2.0, 5.0])
    _, upper = score.bounds(fields, 3.0)
    np.testing.assert_allclose(ops.convert_to_numpy(upper), [3.0, 0.3])
    total = conformal.NormalizedResidual("total")
    np.testing.assert_allclose(ops.convert_to_numpy(total.scores(fields, np.array([2.0, 0.5]))), [1.0, 0.25])


def test_normalized_intervals_are_narrower_than_absolute_on_heteroscedastic_data():
    rng = np.random.default_rng(0)
    n = 20_000
    std = np.exp(rng.uniform(-2.0, 1.0, n))  # log-uniform noise std, 0.14 to 2.7
    y = std * rng.normal(size=n)
    result = _regression(np.zeros((n, 1)), variance=(std**2)[:, None])
    calibration, test = np.arange(n) < n // 2, np.arange(n) >= n // 2
    widths, coverages = {}, {}
    for name in ("absolute", "normalized"):
        calibrator = conformal.ConformalCalibrator.from_predictions(
            _take(result, calibration), y[calibration, None], 0.9, score=name
        )
        out = calibrator.apply(_take(result, test))
        widths[name] = metrics.mean_width(out.lower, out.upper)
        coverages[name] = metrics.interval_coverage(y[test, None], out.lower, out.upper)
    # With the true std the normalized score is |N(0, 1)|: q = z_0.95 and the mean width 2 z_0.95 E[std].
    mean_std = (np.exp(1.0) - np.exp(-2.0)) / 3.0
    assert widths["normalized"] == pytest.approx(2 * stats.norm.ppf(0.95) * mean_std, rel=0.03)

    # The absolute score's q solves E_std[P(|std eps| <= q)] = 0.9 over the log-uniform std.
    def covered(q):
        return integrate.quad(lambda t: 2 * stats.norm.cdf(q / np.exp(t)) - 1, -2.0, 1.0)[0] / 3.0 - 0.9

    assert widths["absolute"] == pytest.approx(2 * optimize.brentq(covered, 0.1, 10.0), rel=0.03)
    assert widths["normalized"] < 0.85 * widths["absolute"]  # closed forms: 2.83 against 3.55
    for coverage in coverages.values():
        assert coverage == pytest.approx(0.9, abs=3 * np.sqrt(0.09 / (n // 2)) + 1 / (n // 2))


def _take(result, index):
    return PredictionResult(task=result.task, num_samples=1, mean=result.mean[index], variance=result.variance[index])


def test_cqr_widens_the_quantile_band_by_the_hand_computed_quantile():
    band = np.array([[0.0, 1.0]] * 5)
    y = np.array([0.5, 1.5, -0.25, 2.0, 0.9])  # scores max(lo - y, y - hi): -0.5, 0.5, 0.25, 1.0, -0.1
    calibrator = conformal.ConformalCalibrator.from_predictions(_regression(band), y, 0.6, score="cqr")
    assert calibrator.quantiles.tolist() == [0.5]  # k = ceil(6 * 0.6) = 4: sorted -0.5 -0.1 0.25 0.5 1.0
    result = calibrator.apply(_regression([[2.0, 3.0]]))
    np.testing.assert_allclose([result.lower[0], result.upper[0]], [1.5, 3.5])


def test_lac_sets_are_the_classes_with_probability_at_least_one_minus_q():
    result = _fixed(conformal.LAC(), 0.7).apply(_classification(PROBS))
    np.testing.assert_array_equal(result.prediction_set, [[1, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(result.set_size, [2, 1, 1])


def test_deterministic_aps_sets_equal_the_worked_out_sets():
    # Cumulative mass by rank: [0.5, 0.8, 0.95, 1.0]; [0.4 (c2), 0.65 (c0), 0.9 (c1), 1.0]; [0.9, ...].
    scores_ = ops.convert_to_numpy(conformal.APS(randomized=False).class_scores(ops.convert_to_tensor(PROBS)))
    np.testing.assert_allclose(scores_, [[0.5, 0.8, 0.95, 1.0], [0.65, 0.9, 0.4, 1.0], [0.9, 0.95, 0.98, 1.0]])
    result = _fixed(conformal.APS(randomized=False), 0.85).apply(_classification(PROBS))
    # The third input's top class alone scores 0.9 > 0.85: its set is empty.
    np.testing.assert_array_equal(result.prediction_set, [[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(result.set_size, [2, 2, 0])


def test_deterministic_raps_sets_equal_the_worked_out_sets():
    # Penalty 0.1 (rank - 1)^+: [0.5, 0.9, 1.15, 1.3]; [0.75 (c0), 1.1 (c1), 0.4 (c2), 1.3]; [0.9, ...].
    score = conformal.RAPS(k_reg=1, lambda_=0.1, randomized=False)
    scores_ = ops.convert_to_numpy(score.class_scores(ops.convert_to_tensor(PROBS)))
    np.testing.assert_allclose(scores_, [[0.5, 0.9, 1.15, 1.3], [0.75, 1.1, 0.4, 1.3], [0.9, 1.05, 1.18, 1.3]])
    result = _fixed(score, 0.85).apply(_classification(PROBS))
    np.testing.assert_array_equal(result.prediction_set, [[1, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])


def test_randomized_aps_scores_add_u_times_the_class_probability():
    noise = ops.convert_to_tensor([0.5, 0.2, 0.1])
    scores_ = ops.convert_to_numpy(conformal.APS().class_scores(ops.convert_to_tensor(PROBS), noise))
    expected = [[0.25, 0.65, 0.875, 0.975], [0.45, 0.70, 0.08, 0.92], [0.09, 0.905, 0.953, 0.982]]
    np.testing.assert_allclose(scores_, expected, atol=1e-12)
    # At q = 0.85 the third input keeps its top class (0.09), which u = 1 dropped.
    np.testing.assert_array_equal(scores_ <= 0.85, [[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]])


def test_randomized_sets_use_the_documented_noise_stream_and_repeat_with_the_seed():
    from tfp_uq import _random
    from tfp_uq.conformal import calibrator as calibrator_module

    calibrator = _fixed(conformal.APS(), 0.85)
    first, again = (calibrator.apply(_classification(PROBS), seed=7) for _ in range(2))
    np.testing.assert_array_equal(first.prediction_set, again.prediction_set)
    seed = _random.substream(ops.convert_to_tensor([7, 0], "int32"), calibrator_module._PREDICTION_NOISE_STREAM)
    noise = _random.uniform((3,), seed, dtype="float64")
    expected = ops.convert_to_numpy(conformal.APS().class_scores(ops.convert_to_tensor(PROBS), noise)) <= 0.85 + 1e-6
    np.testing.assert_array_equal(first.prediction_set, expected)


def test_class_conditional_thresholds_apply_per_column():
    calibrator = _fixed(conformal.LAC(), [0.4, 0.8, 0.7, 0.99], groups="class")
    result = calibrator.apply(_classification(PROBS))
    # Class k is in when 1 - p_k <= q_k.
    np.testing.assert_array_equal(result.prediction_set, [[0, 1, 0, 1], [0, 1, 1, 1], [1, 0, 0, 1]])


def test_group_thresholds_are_picked_per_input_and_unknown_indices_give_everything():
    calibrator = conformal.ConformalCalibrator(None, "absolute", 0.9, [[1.0], [3.0]], groups=["a", "b"])
    result = calibrator.apply(_regression([[0.0], [0.0], [10.0]]), groups=["b", "a", "a"])
    np.testing.assert_allclose(result.upper, [[3.0], [1.0], [11.0]])
    fields = {"mean": ops.convert_to_tensor([[0.0], [0.0]])}
    out = calibrator.extra_fields(fields, "regression", groups=ops.convert_to_tensor([1, 5]))
    np.testing.assert_allclose(ops.convert_to_numpy(out["upper"]), [[3.0], [np.inf]])


def test_group_quantiles_are_calibrated_within_each_group():
    y = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])[:, None]
    groups = np.array(["small"] * 3 + ["large"] * 3)
    calibrator = conformal.ConformalCalibrator.from_predictions(
        _regression(np.zeros((6, 1))), y, 0.5, score="absolute", groups=groups
    )
    assert calibrator.groups == ["large", "small"]
    np.testing.assert_array_equal(calibrator.quantiles, [[20.0], [2.0]])  # k = ceil(4 * 0.5) = 2 of 3
    assert calibrator.num_calibration == [3, 3]


@pytest.mark.parametrize(
    "score",
    [
        conformal.AbsoluteResidual(),
        conformal.NormalizedResidual("epistemic", 0.01),
        conformal.CQR(),
        conformal.LAC(),
        conformal.APS(False),
        conformal.RAPS(k_reg=3, lambda_=0.2, randomized=False),
    ],
    ids=repr,
)
def test_scores_survive_keras_serialization(score):
    restored = scores.get(keras.saving.serialize_keras_object(score))
    assert type(restored) is type(score) and restored.get_config() == score.get_config()


def test_scores_by_name_and_bad_arguments():
    assert isinstance(scores.get("raps"), conformal.RAPS)
    with pytest.raises(ValueError, match="score must be"):
        scores.get("hinge")
    with pytest.raises(ValueError, match="std must be one of"):
        conformal.NormalizedResidual(std="aleatoric")
    with pytest.raises(ValueError, match="k_reg"):
        conformal.RAPS(k_reg=-1)
    with pytest.raises(ValueError, match="lambda_"):
        conformal.RAPS(lambda_=-0.1)
    with pytest.raises(ValueError, match="noise"):
        conformal.APS().class_scores(ops.convert_to_tensor(PROBS))


def test_string_groups_from_an_object_array_and_constants_that_do_not_fit_their_groups():
    y = np.arange(6, dtype="float64")[:, None]
    groups = np.array(["x", "y"] * 3, dtype=object)  # as a pandas column of strings gives them
    calibrator = conformal.ConformalCalibrator.from_predictions(
        _regression(np.zeros((6, 1))), y, 0.5, score="absolute", groups=groups
    )
    assert calibrator.groups == ["x", "y"]
    with pytest.raises(ValueError, match="quantiles must have one row per group"):
        conformal.ConformalCalibrator(None, "absolute", 0.9, [[1.0]], groups=["a", "b"])


def test_a_calibrator_made_from_predictions_only_applies():
    import tfp_uq

    calibrator = _fixed(conformal.LAC(), 0.5)
    for call in (lambda: calibrator.predict(PROBS), lambda: tfp_uq.predict(calibrator, PROBS)):
        with pytest.raises(ValueError, match="made from predictions and has no predictor: use apply"):
            call()
