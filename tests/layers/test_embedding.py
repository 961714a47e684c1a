import keras
import numpy as np
import pytest
from _moments import assert_moments, randomise

import tfp_uq
from tfp_uq import _random, layers

IDS = np.array([[3, 0, 3, 7, 1]])


def _layer(**kwargs):
    layer = layers.EmbeddingReparameterization(9, 4, posterior_scale_init=0.3, kl_weight=0.0, seed=5, **kwargs)
    layer.build()
    randomise(layer, np.random.default_rng(0))
    return layer


def test_looked_up_rows_have_the_posterior_moments_of_their_rows():
    layer = _layer()
    loc, scale = layer.embeddings.numpy(), layer.posterior_scale("embeddings").numpy()
    assert_moments(layer, IDS, loc[IDS], scale[IDS] ** 2, calls=600, copies=4)


def test_a_row_looked_up_twice_in_a_call_gets_one_draw():
    layer = _layer()
    outputs = layer(np.array([[3, 0, 3], [0, 3, 5]])).numpy()
    np.testing.assert_array_equal(outputs[0, 0], outputs[0, 2])
    np.testing.assert_array_equal(outputs[0, 0], outputs[1, 1])
    np.testing.assert_array_equal(outputs[0, 1], outputs[1, 0])
    assert not np.allclose(outputs[0, 0], layer.embeddings.numpy()[3])  # a draw, not the mean
    assert not np.allclose(layer(np.array([[3]])).numpy()[0, 0], outputs[0, 0])  # a new draw per call


def test_rows_are_those_of_a_whole_table_draw_that_is_never_made():
    layer = _layer()
    state = layer.seed_generator.state.numpy()
    seed = layer.seed_generator.next()
    layer.seed_generator.state.assign(state)
    noise = _random.normal((9, 4), seed).numpy()
    table = layer.embeddings.numpy() + layer.posterior_scale("embeddings").numpy() * noise
    np.testing.assert_allclose(layer(IDS).numpy(), table[IDS], rtol=1e-6)


def test_kl_covers_the_whole_table_in_closed_form():
    layer = _layer()
    layer.kl_weight = 1.0
    layer(IDS)
    loc, scale = layer.embeddings.numpy(), layer.posterior_scale("embeddings").numpy()
    np.testing.assert_allclose(layer.losses[0], np.sum(0.5 * (scale**2 + loc**2) - np.log(scale) - 0.5), rtol=1e-5)


def test_vectorised_predict_draws_each_sample_once_per_row():
    layer = _layer()
    model = keras.Sequential([keras.Input((5,), dtype="int32"), layer])
    result = tfp_uq.predict(model, IDS, num_samples=1500, seed=0, task="regression")
    scale = layer.posterior_scale("embeddings").numpy()
    np.testing.assert_allclose(result.epistemic_variance, scale[IDS] ** 2, rtol=0.15)
    np.testing.assert_allclose(result.mean, layer.embeddings.numpy()[IDS], atol=5 * 0.3 * 1.5 / np.sqrt(1500))


def test_mask_zero_masks_padding_for_the_next_layer():
    layer = _layer(mask_zero=True)
    np.testing.assert_array_equal(layer.compute_mask(IDS), IDS != 0)
    assert layer.compute_output_shape((None, 5)) == (None, 5, 4)
    config = layer.get_config()
    assert config["mask_zero"] and layers.EmbeddingReparameterization.from_config(config).input_dim == 9


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"input_dim": 0, "output_dim": 4}, "input_dim"),
        ({"input_dim": 4, "output_dim": 0}, "output_dim"),
        ({"input_dim": 2**20, "output_dim": 2**13}, "input_dim \\* output_dim"),
        ({"input_dim": 4, "output_dim": 2, "embeddings_regularizer": "l2"}, "embeddings_regularizer"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        layers.EmbeddingReparameterization(**kwargs)
