"""The generalised Gauss-Newton matrix of a trained network over its training data, in one pass.

GGN = sum_n J_n^T Lambda_n J_n, with J_n the Jacobian of the network
function f(x_n) in the weights and Lambda_n the likelihood's Hessian in f
(see `_likelihoods`). Per batch, with `M_n M_n^T = Lambda_n`, the rows of
`M_n^T J_n` are vector-Jacobian products, all computed at once (vectorised
with pfor, XLA-compiled), and the structures need only sums of them:

- "diag": sum_n sum_c (M_n^T J_n)_c^2, elementwise;
- "kron" per block (Martens & Grosse 2015; Grosse & Martens 2016 for
  convolutions): `A = sum_{n,t} a_nt a_nt^T / (N T)` of the block's (patch)
  inputs with a 1 appended and `G = sum_{n,c,t} g_nct g_nct^T` of the
  gradients at its pre-activation, so that `A (x) G` is exact for a single
  Dense layer with one output;
- "full": sum_n (M_n^T J_n)^T (M_n^T J_n).

Sums run in float64. Regression with an unknown noise computes the GGN at
unit noise; the noise precision scales it afterwards.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfp_uq.laplace import _data, _function

__all__ = ["HESSIANS", "accumulate"]

HESSIANS = ("kron", "diag", "full")


def _float64(value):
    return tf.cast(value, tf.float64)


def _kron_terms(index, jacobian, f, likelihood, weights):
    patches = _float64(jacobian.patches)
    locations = _float64(tf.shape(patches)[1])
    weighted = tf.reshape(patches * tf.sqrt(weights)[:, None, None], (-1, patches.shape[-1]))
    terms = {f"rows_{index}": tf.matmul(weighted, weighted, transpose_a=True) / locations}
    if isinstance(jacobian, _function.Identity):
        terms[f"columns_{index}"] = likelihood.hessian_sum(f, weights)
    else:
        grads = _float64(jacobian.grads)
        terms[f"columns_{index}"] = tf.einsum("nctj,nctk->jk", grads, grads)
    return terms


def _diag_terms(index, jacobian, f, likelihood, weights):
    if isinstance(jacobian, _function.Identity):
        patches = _float64(jacobian.patches[:, 0])
        diagonal = tf.einsum("ni,nj->ij", weights[:, None] * tf.square(patches), likelihood.hessian_diag(f))
    elif isinstance(jacobian, _function.Factored) and jacobian.patches.shape[1] == 1:
        diagonal = tf.einsum(
            "ni,ncj->ij", tf.square(_float64(jacobian.patches[:, 0])), tf.square(_float64(jacobian.grads[:, :, 0]))
        )
    else:
        diagonal = tf.reduce_sum(tf.square(_float64(jacobian.dense())), axis=(0, 1))
    return {f"diagonal_{index}": diagonal}


def _dense(jacobian, cotangents):
    dense = jacobian.dense(cotangents) if isinstance(jacobian, _function.Identity) else jacobian.dense()
    shape = tf.shape(dense)
    return tf.reshape(_float64(dense), tf.concat([shape[:2], [-1]], axis=0))


def batch_statistics(hessian, function, likelihood, inputs, targets, weights):
    """Float64 sums over one batch: the structure's statistics, the likelihood's `statistic` and the `count`.

    Args:
        hessian: "kron", "diag" or "full".
        function: a `_function.GraphFunction` or `StatelessFunction`.
        likelihood: a `_likelihoods.Likelihood`.
        inputs, targets: the batch.
        weights: `(batch,)` 1 for examples, 0 for padding.
    """
    root = ops.sqrt(weights)

    def cotangents(f):
        return likelihood.hessian_sqrt(f) * root[:, None, None]

    f, jacobians = function.jacobians(inputs, cotangents)
    if hessian == "full":
        columns = cotangents(f)
    f, weights = _float64(f), _float64(weights)
    statistics = {"statistic": likelihood.statistic(f, targets, weights), "count": tf.reduce_sum(weights)}
    if hessian == "full":
        flat = tf.concat([_dense(jacobian, columns) for jacobian in jacobians], axis=-1)
        statistics["ggn"] = tf.einsum("ncp,ncq->pq", flat, flat)
        return statistics
    terms = _kron_terms if hessian == "kron" else _diag_terms
    for index, jacobian in enumerate(jacobians):
        statistics.update(terms(index, jacobian, f, likelihood, weights))
    return statistics


def accumulate(hessian, function, likelihood, batches, verbose=1, jit_compile=True):
    """Sums of `batch_statistics` over `batches` (a `_data.Batches`), with a progress bar.

    Each batch runs one compiled function (`jit_compile`: with XLA). Eagerly,
    8 batches of a last-layer pass on digits cost as much as tracing (about
    140 ms each way on the busy 2-core host), so the pass is always traced.

    Returns:
        A dict of float64 NumPy arrays; "rows_i" are already divided by the count.
    """

    @tf.function(jit_compile=jit_compile, reduce_retracing=True, autograph=False)
    def step(inputs, targets, weights):
        return batch_statistics(hessian, function, likelihood, inputs, targets, weights)

    progress = keras.utils.Progbar(batches.num_batches, verbose=verbose, unit_name="batch")
    totals = {}
    for index, batch in _data.fixed_size(batches):
        for key, value in _function.run_compiled(step, *batch).items():
            totals[key] = totals.get(key, 0.0) + np.asarray(value, dtype="float64")
        progress.update(index + 1)
    return {key: value / totals["count"] if key.startswith("rows_") else value for key, value in totals.items()}
