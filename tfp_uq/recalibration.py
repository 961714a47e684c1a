"""Post-hoc recalibration fitted on validation data."""

import math

import numpy as np
from scipy import optimize

from tfp_uq.metrics import _checks

__all__ = ["TemperatureScaling", "VarianceRecalibration"]


def _log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class TemperatureScaling:
    """Divides logits by one temperature T fitted to validation NLL (Guo et al. 2017).

    T > 1 softens overconfident predictions; accuracy is unchanged. A binary
    classifier's single logit (or probability of class 1), shaped (n,) or
    (n, 1), is read as two classes; `transform` then returns (n, 2).

    Example:

    >>> scaler = tfp_uq.recalibration.TemperatureScaling().fit(val_logits, val_labels)
    >>> probs = scaler.transform(test_logits)
    """

    def __init__(self):
        self.temperature = None

    @staticmethod
    def _logits(logits=None, probs=None):
        if (logits is None) == (probs is None):
            raise ValueError("give exactly one of logits and probs")
        if logits is not None:
            logits = np.asarray(logits, dtype="float64")
            if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
                # A binary classifier's logit z: softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)].
                logits = np.concatenate([np.zeros((len(logits), 1)), logits.reshape(-1, 1)], axis=1)
            if logits.ndim != 2 or not np.all(np.isfinite(logits)):
                raise ValueError(
                    "logits must be finite with shape (n, num_classes), or (n,) or (n, 1) for a binary "
                    f"classifier's logit, got {logits.shape}"
                )
            return logits
        return np.log(np.maximum(_checks.class_probabilities(probs), 1e-12))

    def fit(self, logits=None, labels=None, probs=None):
        """Fits T on (logits or probabilities, integer labels); returns self."""
        logits = self._logits(logits, probs)
        uniform = np.full(logits.shape, 1.0 / logits.shape[1])
        _, labels = _checks.probabilities_and_labels(uniform, labels)
        rows = np.arange(len(labels))

        def nll(log_temperature):
            return -np.mean(_log_softmax(logits / math.exp(log_temperature))[rows, labels])

        solution = optimize.minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded")
        self.temperature = float(math.exp(solution.x))
        return self

    def transform(self, logits=None, probs=None):
        """Calibrated probabilities for logits (or probabilities)."""
        if self.temperature is None:
            raise ValueError("call fit before transform")
        return np.exp(_log_softmax(self._logits(logits, probs) / self.temperature))


class VarianceRecalibration:
    """Scales predictive standard deviations by one factor fitted on validation data.

    The factor c minimising the Gaussian NLL of y ~ N(mean, (c std)^2) has
    the closed form c^2 = mean(((y - mean) / std)^2) (Levi et al. 2019).

    Example:

    >>> recal = tfp_uq.recalibration.VarianceRecalibration().fit(y_val, mean_val, std_val)
    >>> std_test = recal.transform(std_test)
    """

    def __init__(self):
        self.factor = None

    def fit(self, y, mean, std):
        from tfp_uq.metrics.regression import _arrays

        y, mean, std = _arrays(y, mean, std)
        self.factor = float(np.sqrt(np.mean(((y - mean) / std) ** 2)))
        return self

    def transform(self, std):
        if self.factor is None:
            raise ValueError("call fit before transform")
        return np.asarray(std, dtype="float64") * self.factor
