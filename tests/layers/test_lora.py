import keras
import numpy as np
import pytest

import tfp_uq
from tfp_uq.layers import BayesianLoRA

X = np.random.default_rng(0).normal(size=(20, 8)).astype("float32")


def _pretrained():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu", name="d1"),
            keras.layers.EinsumDense("ab,bc->ac", output_shape=16, bias_axes="c", activation="relu", name="e1"),
            keras.layers.Dense(2, name="out"),
        ]
    )


def test_lora_reproduces_pretrained_outputs_at_initialisation():
    model = _pretrained()
    converted = tfp_uq.bayesianize(model, method="lora", lora_rank=2, seed=0)
    assert [type(l).__name__ for l in converted.layers] == ["BayesianLoRA"] * 3
    np.testing.assert_allclose(converted.predict(X, verbose=0), model.predict(X, verbose=0), atol=2e-2)
    tfp_uq.set_deterministic(converted)
    np.testing.assert_allclose(converted.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-5, atol=1e-6)


def test_bayesianize_gives_a_small_layer_the_largest_rank_it_has():
    converted = tfp_uq.bayesianize(_pretrained(), method="lora", lora_rank=4, seed=0)
    assert [layer.rank for layer in converted.layers] == [4, 4, 2]  # "out" has 2 units
    with pytest.raises(ValueError, match="rank must be <= min"):
        BayesianLoRA(keras.layers.Dense(2), rank=4).build((None, 8))


def test_lora_trains_only_the_adapters():
    model = _pretrained()
    converted = tfp_uq.bayesianize(model, method="lora", lora_rank=2, num_examples=len(X), seed=0)
    frozen = [layer.layer.kernel.numpy().copy() for layer in converted.layers]
    names = sorted({v.path.split("/")[-1] for v in converted.trainable_weights})
    assert names == ["lora_a", "lora_a_rho", "lora_b", "lora_b_rho"]
    converted.compile(keras.optimizers.Adam(0.01), "mse")
    converted.fit(X, X[:, :2], epochs=5, verbose=0)
    for layer, before in zip(converted.layers, frozen):
        np.testing.assert_array_equal(layer.layer.kernel.numpy(), before)
    assert np.abs(converted.layers[0].lora_b.numpy()).max() > 0


def test_lora_parameter_count_is_small_next_to_full_conversion():
    big = keras.Sequential([keras.Input((256,)), keras.layers.Dense(256), keras.layers.Dense(10)])
    lora = tfp_uq.bayesianize(big, method="lora", lora_rank=4)
    full = tfp_uq.bayesianize(big, method="flipout")
    lora_count = sum(layer.num_adapter_parameters for layer in lora.layers)
    full_count = sum(int(np.prod(v.shape)) for v in full.trainable_weights)
    assert lora_count == 2 * 4 * ((256 + 256) + (256 + 10))
    assert lora_count < 0.1 * full_count


def test_lora_predict_has_epistemic_uncertainty_and_round_trips(tmp_path):
    converted = tfp_uq.bayesianize(_pretrained(), method="lora", lora_rank=2, posterior_scale_init=0.05, seed=0)
    result = tfp_uq.predict(converted, X, num_samples=20, seed=0, task="regression")
    assert np.all(result.epistemic_variance > 0)
    converted.save(tmp_path / "lora.keras")
    restored = keras.models.load_model(tmp_path / "lora.keras")
    np.testing.assert_array_equal(restored(X, training=False), converted(X, training=False))


def test_bad_rank_raises():
    layer = keras.layers.Dense(3)
    layer.build((None, 5))
    with pytest.raises(ValueError, match="rank"):
        BayesianLoRA(layer, rank=0)
    with pytest.raises(ValueError, match="rank must be <="):
        BayesianLoRA(layer, rank=4).build((None, 5))
    with pytest.raises(TypeError, match="Dense or EinsumDense"):
        BayesianLoRA(keras.layers.Conv2D(2, 3))
