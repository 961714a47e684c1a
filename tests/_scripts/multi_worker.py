"""One worker of a MultiWorkerMirroredStrategy run on localhost; prints JSON.

Keras 3's `model.fit` does not run under MultiWorkerMirroredStrategy
(keras-team/keras#20585), so this trains with a custom loop, as users do
there: the data term averaged over the global batch, the KL terms (from
`model.losses`) divided by the number of replicas with
`tf.nn.scale_regularization_loss`, so the KL counts once.

Usage: TF_CONFIG=... python multi_worker.py
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402

import tfp_uq  # noqa: E402

GLOBAL_BATCH = 32
rng = np.random.default_rng(0)
x = rng.normal(size=(128, 5)).astype("float32")
y = (x[:, :1] - 0.5 * x[:, 1:2]).astype("float32")
with strategy.scope():
    model = keras.Sequential(
        [
            keras.Input((5,)),
            tfp_uq.DenseFlipout(
                8, activation="tanh", seed=1, kernel_initializer=keras.initializers.GlorotUniform(seed=3)
            ),
            tfp_uq.DenseFlipout(1, seed=2, kernel_initializer=keras.initializers.GlorotUniform(seed=4)),
        ]
    )
    tfp_uq.set_kl_weight(model, num_examples=len(x))
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(model.trainable_variables)

data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(GLOBAL_BATCH))


@tf.function
def train_step(batch):
    def step(inputs, targets):
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True)
            per_example = tf.reduce_mean(tf.square(targets - outputs), axis=-1)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_BATCH)
            loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    losses = strategy.run(step, args=batch)
    return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)


iterator = iter(data)
losses = [float(train_step(next(iterator))) for _ in range(30)]
print(
    json.dumps(
        {
            "task": json.loads(os.environ["TF_CONFIG"])["task"]["index"],
            "losses": losses,
            "kernel": model.layers[0].kernel.numpy().tolist(),
            "scale": np.asarray(model.layers[0].posterior_scale("kernel")).tolist(),
        }
    )
)
