import numpy as np
import pytest

from tfp_uq import _recipes, losses


@pytest.mark.parametrize(
    "method, beta", [("mc_dropout", 0.5), ("plain", 0.5), ("flipout", 0.0), ("local_reparameterization", 0.0)]
)
def test_regression_loss_keeps_the_exact_nll_in_the_elbo(method, beta):
    loss = _recipes.loss("regression", method)
    assert isinstance(loss, losses.GaussianNLL) and loss.beta == beta


def test_optimizer_decays_the_learning_rate_to_zero_over_training():
    steps = _recipes.decay_steps(num_train=100, epochs=3, batch_size=32)
    assert steps == 12  # 4 batches per epoch, the last one partial
    optimizer = _recipes.optimizer("regression", decay_steps=steps)
    for step, rate in ((0, 1e-2), (steps // 2, 0.5e-2), (steps, 0.0)):
        optimizer.iterations.assign(step)
        assert float(optimizer.learning_rate) == pytest.approx(rate, abs=1e-9)
    assert float(np.asarray(_recipes.optimizer("classification").learning_rate)) == pytest.approx(1e-3)
