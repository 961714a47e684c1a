import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from tfp_uq import metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_and_aupr_equal_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes ties
    assert metrics.auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert metrics.aupr(scores, labels) == pytest.approx(average_precision_score(labels, scores))


def test_auroc_by_hand():
    assert metrics.auroc([0.9, 0.8, 0.1, 0.3], [1, 1, 0, 0]) == 1.0
    assert metrics.auroc([0.5, 0.5], [1, 0]) == 0.5


def test_one_group_only_raises():
    with pytest.raises(ValueError, match="both positives and negatives"):
        metrics.auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="same length"):
        metrics.aupr([0.1, 0.2], [1])
