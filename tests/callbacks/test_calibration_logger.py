import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_uq
from tfp_uq import metrics
from tfp_uq.callbacks import CalibrationLogger

RNG = np.random.default_rng(0)
X = RNG.normal(size=(120, 4)).astype("float32")
LABELS = (X[:, 0] + X[:, 1] > 0).astype("int64")


def _classifier():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            tfp_uq.DenseFlipout(8, activation="relu", seed=1),
            tfp_uq.DenseFlipout(2, activation="softmax", seed=2),
        ]
    )
    tfp_uq.set_kl_weight(model, num_examples=len(X))
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    return model


def test_history_holds_calibration_metrics_and_elbo_parts():
    model = _classifier()
    logger = CalibrationLogger((X[:40], LABELS[:40]), num_samples=8, every=2)
    history = model.fit(X, LABELS, epochs=4, verbose=0, callbacks=[logger]).history
    assert len(history["val_ece"]) == 2  # every=2 over 4 epochs: History keeps logged epochs
    assert {"val_accuracy", "val_nll", "val_brier", "kl_loss", "data_loss"} <= set(history)
    values, result = logger.compute()
    assert values["ece"] == pytest.approx(metrics.expected_calibration_error(result.probs, LABELS[:40]))
    assert values["ece"] == pytest.approx(history["val_ece"][-1])


def test_binary_sigmoid_classifier_logs_classification_metrics_and_warns_on_replacing_keras_values():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            tfp_uq.DenseFlipout(8, activation="relu", seed=1),
            tfp_uq.DenseFlipout(1, activation="sigmoid", seed=2),
        ]
    )
    tfp_uq.set_kl_weight(model, num_examples=len(X))
    model.compile(keras.optimizers.Adam(0.02), "binary_crossentropy", metrics=["accuracy"])
    logger = CalibrationLogger((X[:40], LABELS[:40]), num_samples=8)
    with pytest.warns(UserWarning, match="replaces \\['val_accuracy'\\]"):
        history = model.fit(
            X, LABELS, epochs=2, verbose=0, validation_data=(X[40:], LABELS[40:]), callbacks=[logger]
        ).history
    assert {"val_ece", "val_nll", "val_brier"} <= set(history) and "val_rmse" not in history
    values, result = logger.compute()
    assert result.probs.shape == (40, 2)
    assert values["accuracy"] == pytest.approx(history["val_accuracy"][-1])
    assert values["nll"] == pytest.approx(metrics.negative_log_likelihood(result.probs[:, 1], LABELS[:40]))


def test_logits_model_compiled_with_a_from_logits_loss_logs_classification_metrics():
    model = keras.Sequential(
        [keras.Input((4,)), tfp_uq.DenseFlipout(8, activation="relu", seed=1), tfp_uq.DenseFlipout(2, seed=2)]
    )
    tfp_uq.set_kl_weight(model, num_examples=len(X))
    model.compile(keras.optimizers.Adam(0.02), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logger = CalibrationLogger((X[:40], LABELS[:40]), num_samples=8)
    history = model.fit(X, LABELS, epochs=2, verbose=0, callbacks=[logger]).history
    assert {"val_accuracy", "val_ece", "val_nll", "val_brier"} <= set(history) and "val_rmse" not in history
    values, result = logger.compute()
    assert values["nll"] == pytest.approx(metrics.negative_log_likelihood(result.probs, LABELS[:40]))


def test_dataset_and_dict_validation_data_log_the_same_metrics_as_arrays():
    model = _classifier()
    first, second = keras.Input((2,), name="first"), keras.Input((2,), name="second")
    two_inputs = keras.Model([first, second], model(keras.layers.Concatenate()([first, second])))
    as_arrays = CalibrationLogger(([X[:40, :2], X[:40, 2:]], LABELS[:40]), num_samples=8, seed=4)
    as_dict = CalibrationLogger(({"first": X[:40, :2], "second": X[:40, 2:]}, LABELS[:40]), num_samples=8, seed=4)
    dataset = tf.data.Dataset.from_tensor_slices(((X[:40, :2], X[:40, 2:]), LABELS[:40])).batch(16)
    as_dataset = CalibrationLogger(dataset, num_samples=8, seed=4)
    values = []
    for logger in (as_arrays, as_dict, as_dataset):
        logger.set_model(two_inputs)
        values.append(logger.compute()[0])
    assert values[0] == pytest.approx(values[1]) and values[0] == pytest.approx(values[2])
    with pytest.raises(ValueError, match="validation_data"):
        CalibrationLogger(tf.data.Dataset.from_tensor_slices(X).batch(8))


def test_py_dataset_validation_data_logs_the_same_metrics_as_arrays():
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return X[index * 15 : (index + 1) * 15], LABELS[index * 15 : (index + 1) * 15]

    model = _classifier()
    values = []
    for data in ((X[:45], LABELS[:45]), Batches()):
        logger = CalibrationLogger(data, num_samples=8, seed=4)
        logger.set_model(model)
        values.append(logger.compute()[0])
    assert values[0] == pytest.approx(values[1])
    with pytest.raises(TypeError, match="validation_data is a generator"):
        CalibrationLogger((X[:4], LABELS[:4]) for _ in range(2))


def test_one_hot_validation_labels_log_the_same_metrics_as_integer_labels():
    model = _classifier()
    model.compile("adam", "categorical_crossentropy")
    values = []
    for labels in (LABELS[:40], np.eye(2)[LABELS[:40]]):
        logger = CalibrationLogger((X[:40], labels), num_samples=8, seed=4)
        logger.set_model(model)
        values.append(logger.compute()[0])
    assert values[0] == pytest.approx(values[1])


def test_early_stopping_on_val_ece_stops_training():
    model = _classifier()
    logger = CalibrationLogger((X[:40], LABELS[:40]), num_samples=4)
    # min_delta larger than any change: no epoch counts as an improvement.
    stop = keras.callbacks.EarlyStopping(monitor="val_ece", mode="min", patience=1, min_delta=10.0)
    history = model.fit(X, LABELS, epochs=20, verbose=0, callbacks=[logger, stop]).history
    assert len(history["loss"]) == 2


def test_regression_metrics_are_logged():
    model = keras.Sequential([keras.Input((4,)), tfp_uq.DenseFlipout(2, seed=3), tfp_uq.GaussianHead()])
    tfp_uq.set_kl_weight(model, num_examples=len(X))
    model.compile(keras.optimizers.Adam(0.02), tfp_uq.losses.GaussianNLL())
    y = X[:, :1] * 2.0
    history = model.fit(X, y, epochs=2, verbose=0, callbacks=[CalibrationLogger((X, y), num_samples=8)]).history
    assert {"val_rmse", "val_nll", "val_crps", "val_picp"} <= set(history)
    assert 0.0 <= history["val_picp"][-1] <= 1.0


def test_tensorboard_events_hold_scalars_and_image_and_pngs_are_written(tmp_path):
    model = _classifier()
    logger = CalibrationLogger(
        (X[:40], LABELS[:40]), num_samples=4, log_dir=str(tmp_path / "tb"), png_dir=str(tmp_path / "png")
    )
    model.fit(X, LABELS, epochs=2, verbose=0, callbacks=[logger])
    tags = {}
    for path in glob.glob(str(tmp_path / "tb" / "calibration" / "*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert tags["val_ece"] == [0, 1]
    assert tags["calibration"] == [0, 1]
    assert sorted(os.listdir(tmp_path / "png")) == ["calibration_epoch_001.png", "calibration_epoch_002.png"]


@pytest.mark.parametrize(
    "kwargs, error, argument",
    [
        ({"num_samples": 0}, ValueError, "num_samples"),
        ({"every": 0}, ValueError, "every"),
        ({"task": "ranking"}, ValueError, "task"),
        ({"metrics": ["f1"]}, ValueError, "metrics"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        CalibrationLogger((X, LABELS), **kwargs)


def test_a_diverged_model_logs_nan_instead_of_stopping_training():
    model = _classifier()
    logger = CalibrationLogger((X[:40], LABELS[:40]), num_samples=4)
    logger.set_model(model)
    layer = model.layers[0]
    layer.kernel.assign(np.full(layer.kernel.shape, np.nan, "float32"))
    logs = {}
    logger.on_epoch_end(0, logs)
    assert all(np.isnan(logs[f"val_{name}"]) for name in ("accuracy", "nll", "brier", "ece"))


def test_mismatched_validation_data_raises_early():
    with pytest.raises(ValueError, match="same non-zero length"):
        CalibrationLogger((X, LABELS[:10]))
    model = _classifier()
    with pytest.raises(ValueError, match="per-example shape"):
        model.fit(X, LABELS, epochs=1, verbose=0, callbacks=[CalibrationLogger((X[:, :3], LABELS))])


def test_logging_does_not_change_training_random_stream():
    # The logger's predictions draw through stateless seeds: a run with it ends
    # with the weights and layer seed states of a run without it.
    def train(callbacks):
        keras.utils.set_random_seed(7)
        model = _classifier()
        model.fit(X, LABELS, epochs=3, batch_size=40, shuffle=False, verbose=0, callbacks=callbacks)
        return [np.asarray(v) for v in model.variables]

    logged = train([CalibrationLogger((X[:40], LABELS[:40]), num_samples=4, seed=3)])
    plain = train([])
    assert len(logged) == len(plain)
    for a, b in zip(logged, plain):
        np.testing.assert_array_equal(a, b)


def test_nonfinite_validation_inputs_are_refused_naming_the_rows():
    x = X[:40].copy()
    x[5, 0] = np.nan
    with pytest.raises(ValueError, match=r"validation_data: x has NaN or infinite values in row 5 \(1 of 40\)"):
        CalibrationLogger((x, LABELS[:40]))
