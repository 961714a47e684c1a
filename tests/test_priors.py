import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_uq import priors

tfd = tfp.distributions

LOC = np.array([[0.3, -1.2], [0.0, 2.0], [0.5, 0.1]], dtype="float32")
SCALE = np.array([[0.2, 0.5], [1.3, 0.05], [0.7, 1.0]], dtype="float32")


def _no_sample():
    raise AssertionError("an analytic KL must not draw a sample")


def test_normal_kl_equals_tfp_closed_form():
    prior = priors.Normal(0.4, 1.7)
    expected = tf.reduce_sum(tfd.kl_divergence(tfd.Normal(LOC, SCALE), tfd.Normal(0.4, 1.7)))
    actual = prior.kl_divergence(LOC, SCALE, _no_sample)
    np.testing.assert_allclose(actual, expected, rtol=1e-5)


def test_normal_log_prob_equals_tfp():
    np.testing.assert_allclose(
        priors.Normal(0.4, 1.7).log_prob(LOC),
        tf.reduce_sum(tfd.Normal(0.4, 1.7).log_prob(LOC)),
        rtol=1e-5,
    )


def test_monte_carlo_kl_converges_to_closed_form():
    target = tfd.Normal(0.3, 0.7)
    prior = priors.DistributionPrior(target)
    loc, scale = tf.constant(LOC), tf.constant(SCALE)
    num_draws = 20000
    draws = loc + scale * tf.random.stateless_normal((num_draws,) + LOC.shape, seed=[1, 2])
    estimates = np.array([prior.kl_divergence(loc, scale, lambda d=d: d) for d in tf.unstack(draws[:2000])])
    exact = float(tf.reduce_sum(tfd.kl_divergence(tfd.Normal(loc, scale), target)))
    standard_error = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean() - exact) < 4 * standard_error
    assert standard_error < 0.1 * abs(exact)


def test_scale_mixture_log_prob_equals_tfp_mixture():
    prior = priors.ScaleMixtureNormal(pi=0.3, scale1=1.5, scale2=0.01)
    mixture = tfd.MixtureSameFamily(tfd.Categorical(probs=[0.3, 0.7]), tfd.Normal(0.0, [1.5, 0.01]))
    np.testing.assert_allclose(prior.log_prob(LOC), tf.reduce_sum(mixture.log_prob(LOC)), rtol=1e-5)


def test_scale_mixture_log_prob_is_finite_far_in_the_tails():
    prior = priors.ScaleMixtureNormal(pi=0.5, scale1=1.0, scale2=1e-3)
    assert np.isfinite(prior.log_prob(np.array([30.0], dtype="float32")))


def test_hierarchical_kl_is_normal_kl_minus_half_cauchy_log_density():
    prior = priors.HierarchicalNormal(initial_scale=0.8, hyperprior_scale=2.0)
    layer = keras.layers.Layer()
    variables = prior.build(layer, "kernel", LOC.shape)
    s = float(prior.scale(variables))
    assert s == pytest.approx(0.8, rel=1e-5)
    expected = tf.reduce_sum(tfd.kl_divergence(tfd.Normal(LOC, SCALE), tfd.Normal(0.0, s))) - tfd.HalfCauchy(
        0.0, 2.0
    ).log_prob(s)
    np.testing.assert_allclose(prior.kl_divergence(LOC, SCALE, _no_sample, variables), expected, rtol=1e-5)


def test_hierarchical_input_granularity_learns_one_scale_per_input():
    prior = priors.HierarchicalNormal(granularity="input")
    layer = keras.layers.Layer()
    assert tuple(prior.build(layer, "kernel", (3, 2))["scale"].shape) == (3, 1)
    assert tuple(prior.build(layer, "conv", (3, 3, 4, 8))["scale"].shape) == (1, 1, 4, 1)
    assert tuple(prior.build(layer, "bias", (2,))["scale"].shape) == ()


@pytest.mark.parametrize(
    "prior",
    [
        priors.Normal(0.1, 2.0),
        priors.ScaleMixtureNormal(0.25, 2.0, 0.1),
        priors.HierarchicalNormal(0.5, 3.0, "input"),
        priors.DistributionPrior(tfd.Laplace(0.0, 0.5)),
    ],
    ids=lambda p: type(p).__name__,
)
def test_prior_survives_serialization(prior):
    restored = priors.get(priors.serialize(prior))
    assert type(restored) is type(prior)
    assert restored.get_config() == prior.get_config()


def test_get_wraps_a_tfp_distribution():
    assert isinstance(priors.get(tfd.Laplace(0.0, 1.0)), priors.DistributionPrior)
    assert isinstance(priors.get(None), priors.Normal)


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: priors.Normal(scale=0.0), "scale"),
        (lambda: priors.Normal(scale=-1.0), "scale"),
        (lambda: priors.ScaleMixtureNormal(pi=1.0), "pi"),
        (lambda: priors.ScaleMixtureNormal(pi=0.0), "pi"),
        (lambda: priors.ScaleMixtureNormal(scale2=0.0), "scale2"),
        (lambda: priors.HierarchicalNormal(initial_scale=-0.1), "initial_scale"),
        (lambda: priors.HierarchicalNormal(granularity="unit"), "granularity"),
    ],
)
def test_bad_prior_arguments_raise_value_error_naming_them(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


def test_non_numeric_scale_raises_type_error():
    with pytest.raises(TypeError, match="scale"):
        priors.Normal(scale="wide")


def test_something_that_is_not_a_prior_raises_type_error():
    with pytest.raises(TypeError, match="prior must be"):
        priors.get("normal")
    with pytest.raises(TypeError, match="distribution"):
        priors.DistributionPrior(3.0)
