import keras
import numpy as np
import pytest

import tfp_uq
from tfp_uq import layers

X = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")


@pytest.fixture(scope="module")
def linear_model():
    layer = layers.DenseFlipout(3, posterior_scale_init=0.4, kl_weight=0.0, seed=5)
    model = keras.Sequential([keras.Input((4,)), layer])
    rng = np.random.default_rng(1)
    for variable in layer.trainable_weights:
        variable.assign(variable + rng.normal(0, 0.3, variable.shape).astype("float32"))
    return model


def test_predictive_variance_of_linear_layer_matches_closed_form(linear_model):
    layer = linear_model.layers[0]
    result = tfp_uq.predict(linear_model, X, num_samples=4000, seed=0, task="regression")
    loc, scale = layer.kernel.numpy(), layer.posterior_scale("kernel").numpy()
    exact_mean = X @ loc + layer.bias.numpy()
    exact_var = (X**2) @ scale**2 + layer.posterior_scale("bias").numpy() ** 2
    np.testing.assert_allclose(result.mean, exact_mean, atol=4 * np.sqrt(exact_var.max() / 4000))
    # Independent samples: the sample variance is within ~4 standard errors
    # (relative s.e. of a variance from 4000 draws is sqrt(2/4000) = 2.2%).
    np.testing.assert_allclose(result.epistemic_variance, exact_var, rtol=0.1)
    np.testing.assert_array_equal(result.aleatoric_variance, 0.0)


def test_same_seed_gives_same_prediction_and_restores_layer_state(linear_model):
    state = linear_model.layers[0].seed_generator.state.numpy()
    first = tfp_uq.predict(linear_model, X, num_samples=20, seed=3, return_samples=True)
    second = tfp_uq.predict(linear_model, X, num_samples=20, seed=3, return_samples=True)
    np.testing.assert_array_equal(first.samples, second.samples)
    np.testing.assert_array_equal(state, linear_model.layers[0].seed_generator.state.numpy())
    other = tfp_uq.predict(linear_model, X, num_samples=20, seed=4, return_samples=True)
    assert not np.allclose(first.samples, other.samples)


def test_chunked_prediction_equals_samples_shape(linear_model):
    result = tfp_uq.predict(linear_model, X, num_samples=7, batch_size=16, return_samples=True, task="regression")
    assert result.samples.shape == (7, 40, 3)
    assert result.mean.shape == (40, 3)


def test_deterministic_classifier_has_zero_mutual_information():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="softmax")])
    result = tfp_uq.predict(model, X, num_samples=10)
    assert result.task == "classification"
    np.testing.assert_allclose(result.mutual_information, 0.0, atol=1e-9)
    np.testing.assert_allclose(result.total_entropy, result.expected_entropy, atol=1e-9)
    np.testing.assert_array_equal(result.variation_ratio, 0.0)


def test_bayesian_classifier_entropy_decomposes():
    model = keras.Sequential(
        [keras.Input((4,)), layers.DenseFlipout(5, activation="softmax", posterior_scale_init=1.0, seed=2)]
    )
    result = tfp_uq.predict(model, X, num_samples=50, seed=0)
    np.testing.assert_allclose(result.probs.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(result.total_entropy, result.expected_entropy + result.mutual_information, atol=1e-9)
    assert np.all(result.mutual_information > 0)
    assert np.all((result.variation_ratio >= 0) & (result.variation_ratio < 1))


def _binary_entropy(p):
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_classifier_with_one_unit_gets_two_class_probabilities(from_logits):
    body = [keras.Input((4,)), layers.DenseFlipout(6, activation="tanh", posterior_scale_init=0.5, seed=1)]
    model = keras.Sequential(body + [layers.DenseFlipout(1, activation=None if from_logits else "sigmoid", seed=2)])
    result = tfp_uq.predict(model, X, num_samples=30, seed=0, from_logits=from_logits, return_samples=True)
    assert result.task == "classification"
    positive = 1 / (1 + np.exp(-result.samples[..., 0])) if from_logits else result.samples[..., 0]
    mean = positive.mean(0)
    np.testing.assert_allclose(result.probs, np.stack([1 - mean, mean], axis=1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.total_entropy, _binary_entropy(mean), rtol=1e-5)
    np.testing.assert_allclose(result.expected_entropy, _binary_entropy(positive).mean(0), rtol=1e-5)
    np.testing.assert_array_equal(result.predicted_class, (mean > 0.5).astype(int))
    votes = (positive > 0.5).mean(0)
    np.testing.assert_allclose(result.variation_ratio, 1 - np.maximum(votes, 1 - votes), atol=1e-12)


def test_output_task_looks_inside_wrappers_nested_models_and_keras_ops():
    wrapped = keras.Sequential(
        [keras.Input((4,)), layers.MCDropoutWrapper(keras.layers.Dense(1, activation="sigmoid"), rate=0.3, seed=1)]
    )
    nested = keras.Sequential([keras.Input((4,)), keras.Sequential([keras.layers.Dense(3), keras.layers.Softmax()])])
    inputs = keras.Input((4,))
    op_made = keras.Model(inputs, keras.ops.sigmoid(layers.DenseFlipout(1, seed=1)(inputs)))
    for model in (wrapped, nested, op_made):
        assert tfp_uq.task.output_task(model) == "classification"
        assert tfp_uq.predict(model, X, num_samples=4).task == "classification"


def test_a_subclassed_binary_classifier_is_known_by_its_cross_entropy_loss():
    class Binary(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden, self.out = layers.DenseFlipout(4, seed=1), keras.layers.Dense(1, activation="sigmoid")

        def call(self, x, training=None):
            return self.out(self.hidden(x))

    model = Binary()
    model(X[:2])
    assert tfp_uq.predict(model, X, num_samples=4).task == "regression"  # nothing to read
    for loss in ("binary_crossentropy", keras.losses.BinaryCrossentropy(), keras.losses.binary_crossentropy):
        model.compile("adam", loss)
        result = tfp_uq.predict(model, X, num_samples=4)
        assert result.task == "classification" and result.probs.shape == (40, 2)


def test_one_linear_unit_is_regression_and_a_sigmoid_unit_can_be_too():
    model = keras.Sequential([keras.Input((4,)), layers.DenseFlipout(1, seed=2)])
    assert tfp_uq.predict(model, X, num_samples=5).task == "regression"
    sigmoid = keras.Sequential([keras.Input((4,)), layers.DenseFlipout(1, activation="sigmoid", seed=2)])
    result = tfp_uq.predict(sigmoid, X, num_samples=5, task="regression")
    assert result.task == "regression" and result.mean.shape == (40, 1)


def test_from_logits_defaults_to_what_the_compiled_loss_says():
    model = keras.Sequential([keras.Input((4,)), layers.DenseFlipout(3, posterior_scale_init=0.5, seed=2)])
    assert tfp_uq.predict(model, X, num_samples=5).task == "regression"  # logits, nothing says so
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    result = tfp_uq.predict(model, X, num_samples=20, seed=0, return_samples=True)
    assert result.task == "classification"
    softmax = np.exp(result.samples) / np.exp(result.samples).sum(-1, keepdims=True)
    np.testing.assert_allclose(result.probs, softmax.mean(0), rtol=1e-5)
    assert tfp_uq.predict(model, X, num_samples=5, from_logits=False).task == "regression"
    model.compile("adam", "sparse_categorical_crossentropy")  # by name: probabilities
    assert tfp_uq.predict(model, X, num_samples=5).task == "regression"


def test_gaussian_head_splits_variance_into_aleatoric_and_epistemic():
    model = keras.Sequential(
        [keras.Input((4,)), layers.DenseFlipout(2, posterior_scale_init=0.3, seed=1), layers.GaussianHead()]
    )
    result = tfp_uq.predict(model, X, num_samples=200, seed=0, return_samples=True)
    assert result.task == "regression"
    loc, scale = result.samples[..., :1], result.samples[..., 1:]
    np.testing.assert_allclose(result.aleatoric_variance, np.mean(scale**2, 0))
    np.testing.assert_allclose(result.epistemic_variance, loc.var(0))
    np.testing.assert_allclose(result.variance, result.aleatoric_variance + result.epistemic_variance)
    assert np.all(result.epistemic_variance > 0)


def test_mixed_layers_and_local_reparameterization_predict():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            layers.DenseLocalReparameterization(8, activation="relu"),
            keras.layers.Dense(8, activation="relu"),
            layers.DenseReparameterization(2, activation="softmax"),
        ]
    )
    result = tfp_uq.predict(model, X, num_samples=16, seed=0)
    assert result.probs.shape == (40, 2)
    assert np.all(result.mutual_information >= 0)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"num_samples": 0}, ValueError, "num_samples"),
        ({"num_samples": 2.5}, TypeError, "num_samples"),
        ({"task": "ranking"}, ValueError, "task"),
        ({"batch_size": -1}, ValueError, "batch_size"),
    ],
)
def test_bad_arguments_raise(linear_model, kwargs, error, message):
    with pytest.raises(error, match=message):
        tfp_uq.predict(linear_model, X, **kwargs)


def test_inputs_of_the_wrong_shape_raise_before_running(linear_model):
    with pytest.raises(ValueError, match=r"x has per-example shape \(5,\), but the model expects \(4,\)"):
        tfp_uq.predict(linear_model, np.zeros((3, 5), "float32"))


def test_model_must_be_a_keras_model():
    with pytest.raises(TypeError, match="model"):
        tfp_uq.predict(lambda x: x, X)


def test_multi_input_model_takes_a_list_or_a_dict(linear_model):
    # Two named inputs whose concatenation feeds the fixture's layer: the
    # predictive mean and variance are the closed form of X.
    first, second = keras.Input((1,), name="first"), keras.Input((3,), name="second")
    layer = linear_model.layers[0]
    model = keras.Model([first, second], layer(keras.layers.Concatenate()([first, second])))
    as_list = tfp_uq.predict(model, [X[:, :1], X[:, 1:]], num_samples=4000, seed=0, task="regression")
    as_dict = tfp_uq.predict(
        model, {"second": X[:, 1:], "first": X[:, :1]}, num_samples=4000, seed=0, task="regression"
    )
    np.testing.assert_array_equal(as_list.mean, as_dict.mean)
    loc, scale = layer.kernel.numpy(), layer.posterior_scale("kernel").numpy()
    exact_var = (X**2) @ scale**2 + layer.posterior_scale("bias").numpy() ** 2
    np.testing.assert_allclose(as_dict.mean, X @ loc + layer.bias.numpy(), atol=4 * np.sqrt(exact_var.max() / 4000))
    np.testing.assert_allclose(as_dict.epistemic_variance, exact_var, rtol=0.1)
    with pytest.raises(ValueError, match="x must not be an empty dict"):
        tfp_uq.predict(model, {})


def test_dataset_input_gives_the_same_prediction_as_arrays(linear_model):
    import tensorflow as tf

    arrays = tfp_uq.predict(linear_model, X, num_samples=16, seed=3, task="regression")
    targets = np.zeros((len(X), 3), "float32")
    for dataset in (
        tf.data.Dataset.from_tensor_slices(X).batch(7),
        tf.data.Dataset.from_tensor_slices((X, targets)).batch(16),
    ):
        result = tfp_uq.predict(linear_model, dataset, num_samples=16, seed=3, task="regression")
        np.testing.assert_array_equal(result.mean, arrays.mean)
        np.testing.assert_array_equal(result.epistemic_variance, arrays.epistemic_variance)
    with pytest.raises(ValueError, match="unbatched"):
        tfp_uq.predict(linear_model, tf.data.Dataset.from_tensor_slices(X[:, 0]))
    with pytest.raises(ValueError, match="empty"):
        tfp_uq.predict(linear_model, tf.data.Dataset.from_tensor_slices(X[:0]).batch(4))


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, y=None, batch_size=5, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[part] if self.y is None else (self.x[part], self.y[part])


def test_keras_py_dataset_gives_the_same_prediction_as_arrays_and_generators_are_refused(linear_model):
    arrays = tfp_uq.predict(linear_model, X, num_samples=16, seed=3, task="regression")
    for source in (_Batches(X), _Batches(X, np.zeros((len(X), 3), "float32"), batch_size=8)):
        result = tfp_uq.predict(linear_model, source, num_samples=16, seed=3, task="regression")
        np.testing.assert_array_equal(result.mean, arrays.mean)
        np.testing.assert_array_equal(result.epistemic_variance, arrays.epistemic_variance)
    with pytest.raises(TypeError, match="x is a generator.*PyDataset"):
        tfp_uq.predict(linear_model, (X[i : i + 4] for i in range(0, len(X), 4)))


def test_model_with_several_outputs_gets_one_result_per_output_from_shared_samples(tmp_path):
    # Two heads on one Bayesian layer: each output's result equals that of a
    # single-output model made of the same layers (same seed, same draws).
    inputs = keras.Input((4,))
    hidden = layers.DenseFlipout(6, posterior_scale_init=0.3, kl_weight=0.0, seed=1)(inputs)
    head = keras.layers.Dense(3, activation="softmax")
    probabilities, value = head(hidden), keras.layers.Dense(1)(hidden)
    model = keras.Model(inputs, {"class": probabilities, "value": value})
    results = tfp_uq.predict(model, X, num_samples=32, seed=2)
    assert set(results) == {"class", "value"}
    assert results["class"].task == "classification" and results["value"].task == "regression"
    alone = tfp_uq.predict(keras.Model(inputs, probabilities), X, num_samples=32, seed=2)
    np.testing.assert_allclose(results["class"].probs, alone.probs, rtol=1e-6)
    np.testing.assert_allclose(results["class"].mutual_information, alone.mutual_information, rtol=1e-5, atol=1e-7)
    assert results["value"].epistemic_variance.shape == (len(X), 1)
    assert np.all(results["value"].epistemic_variance > 0)
    as_list = tfp_uq.predict(keras.Model(inputs, [probabilities, value]), X, num_samples=32, seed=2)
    np.testing.assert_allclose(as_list[1].mean, results["value"].mean, rtol=1e-6)
    with pytest.raises(ValueError, match="one output"):
        tfp_uq.export(model, tmp_path / "export")


def test_concurrent_seeded_predictions_equal_sequential_ones_and_leave_layer_state_alone(linear_model):
    import threading

    state = linear_model.layers[0].seed_generator.state.numpy()
    seeds = list(range(20))
    expected = {s: tfp_uq.predict(linear_model, X, num_samples=8, seed=s, return_samples=True).samples for s in seeds}
    results, errors = {}, []

    def worker(thread):
        try:
            for s in seeds:
                results[(thread, s)] = tfp_uq.predict(linear_model, X, num_samples=8, seed=s, return_samples=True)
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for (_, s), result in results.items():
        np.testing.assert_array_equal(result.samples, expected[s])
    np.testing.assert_array_equal(linear_model.layers[0].seed_generator.state.numpy(), state)


def test_unseeded_predictions_advance_each_layers_stream_once_per_call(linear_model):
    generator = linear_model.layers[0].seed_generator
    before = generator.state.numpy().copy()
    first = tfp_uq.predict(linear_model, X, num_samples=4, return_samples=True)
    np.testing.assert_array_equal(generator.state.numpy(), before + [0, 1])
    second = tfp_uq.predict(linear_model, X, num_samples=4, return_samples=True)
    assert not np.allclose(first.samples, second.samples)
    generator.state.assign(before)  # the same state gives the same draws
    np.testing.assert_array_equal(
        tfp_uq.predict(linear_model, X, num_samples=4, return_samples=True).samples, first.samples
    )


def test_nonfinite_inputs_raise_naming_the_rows_or_are_referred_with_nan_summaries(linear_model):
    x = X.copy()
    x[3, 1], x[17, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"rows 3, 17 \(2 of 40\).*on_nonfinite"):
        tfp_uq.predict(linear_model, x, num_samples=8, seed=0)
    referred = tfp_uq.predict(linear_model, x, num_samples=8, seed=0, task="regression", on_nonfinite="refer")
    clean = tfp_uq.predict(linear_model, X, num_samples=8, seed=0, task="regression")
    np.testing.assert_array_equal(np.flatnonzero(referred.nonfinite), [3, 17])
    assert np.all(np.isnan(referred.mean[[3, 17]])) and np.all(np.isnan(referred.variance[[3, 17]]))
    others = ~referred.nonfinite
    np.testing.assert_allclose(referred.mean[others], clean.mean[others], rtol=1e-6)
    assert not clean.nonfinite.any()
    every = np.full_like(X, np.nan)
    assert tfp_uq.predict(linear_model, every, num_samples=4, seed=0, on_nonfinite="refer").nonfinite.all()
    ignored = tfp_uq.predict(linear_model, x, num_samples=4, seed=0, task="regression", on_nonfinite="ignore")
    assert ignored.nonfinite[[3, 17]].all() and np.isnan(ignored.mean[3]).any()
    with pytest.raises(ValueError, match="on_nonfinite"):
        tfp_uq.predict(linear_model, X, on_nonfinite="skip")


def test_nonfinite_classifier_rows_refer_with_no_class():
    model = keras.Sequential([keras.Input((4,)), layers.DenseFlipout(3, activation="softmax", seed=1)])
    x = X[:5].copy()
    x[2] = np.nan
    result = tfp_uq.predict(model, x, num_samples=6, seed=0, on_nonfinite="refer")
    assert result.predicted_class[2] == -1 and np.isnan(result.mutual_information[2])
    assert tfp_uq.selective.should_refer(result.mutual_information, 0.5)[2]
    assert (result.predicted_class[[0, 1, 3, 4]] >= 0).all()


def test_nan_in_a_dict_input_of_a_multi_input_model_is_found(linear_model):
    first, second = keras.Input((1,), name="first"), keras.Input((3,), name="second")
    model = keras.Model([first, second], linear_model.layers[0](keras.layers.Concatenate()([first, second])))
    tail = X[:, 1:].copy()
    tail[9, 2] = np.nan
    with pytest.raises(ValueError, match=r"row 9 \(1 of 40\)"):
        tfp_uq.predict(model, {"first": X[:, :1], "second": tail}, num_samples=4, seed=0)


def test_a_model_with_a_nan_weight_is_reported_as_diverged():
    model = keras.Sequential([keras.Input((4,)), layers.DenseReparameterization(2, seed=1)])
    model.layers[0].kernel.assign(np.full((4, 2), np.nan, "float32"))
    with pytest.raises(ValueError, match="outputs are not finite.*diverged"):
        tfp_uq.predict(model, X, num_samples=4, seed=0)
    assert tfp_uq.predict(model, X, num_samples=4, seed=0, on_nonfinite="refer").nonfinite.all()
