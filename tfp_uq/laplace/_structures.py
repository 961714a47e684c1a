"""Posterior precisions `h GGN + prior` in the three structures: Kronecker factored, diagonal, full.

Each structure holds the fitted GGN statistics (float64 NumPy, at unit noise
precision h) and gives, for a noise precision h and a prior precision
(scalar, one per block or one per parameter):

- `log_det(h, prior)`: log det of the posterior precision and its gradients
  in h and in each prior precision, in NumPy float64 (closed forms: the
  marginal likelihood's optimiser needs no graph traced);
- `posterior_arrays(h, prior)`: the float32 arrays the predictive needs
  (square roots of the covariance), named for saving;
- `functional_variance(arrays, jacobians)` and `sample(arrays, seed, S)`:
  traceable TensorFlow ops on those arrays for the predictive;
- `covariance(h, prior)`: the dense posterior covariance (small models).

Parameters are laid out per block as `(rows, columns)` matrices (see
`_blocks`), flattened row-major and concatenated in block order.

Kronecker factors follow Martens & Grosse (2015) and, for convolutions,
Grosse & Martens (2016): block b's GGN is approximated by `A_b (x) G_b`
with A the second moment of the (patch) inputs and G the sum of the
pre-activation gradients' outer products; with eigendecompositions
`A = Q_A diag(a) Q_A^T`, `G = Q_G diag(g) Q_G^T` the posterior precision
`h A (x) G + lambda I` has eigenvalues `h a_i g_j + lambda` in the basis
`Q_A (x) Q_G`, so its inverse, square root and log-determinant are exact.
"""

import numpy as np
import scipy.linalg
import tensorflow as tf

from tfp_uq import _random
from tfp_uq.laplace import _function

#: The most parameters hessian="full" (and a dense covariance) takes: its matrices hold parameters^2
#: float64 numbers (200 MB at this limit) and take a cubic-time factorisation.
FULL_MAX_PARAMETERS = 5000


def _stateless_normal(seed, index, shape):
    # tfp_uq._random draws the same numbers eagerly, in a graph and under XLA, where TensorFlow's stateless
    # generators do not (Philox and ThreeFry gave other numbers compiled than uncompiled).
    return _random.normal(shape, _random.substream(seed, index))


class Structure:
    """Interface shared by the structures; see the module docstring."""

    name = None

    def __init__(self, shapes, statistics):
        self.shapes = [tuple(shape) for shape in shapes]
        self.statistics = {key: np.asarray(value, dtype="float64") for key, value in statistics.items()}

    @property
    def num_parameters(self):
        return sum(rows * columns for rows, columns in self.shapes)

    def _prior_blocks(self, prior):
        """The prior precision per block as a float64 `(rows, columns)` array."""
        return [np.broadcast_to(np.asarray(p, "float64"), shape) for p, shape in zip(prior, self.shapes)]

    def _split(self, flat):
        sizes = [rows * columns for rows, columns in self.shapes]
        return [tf.reshape(part, (-1,) + shape) for part, shape in zip(tf.split(flat, sizes, axis=-1), self.shapes)]


def _log_det_of_sums(h, curvatures, prior):
    """log det and gradients of `diag(h c + p)` over blocks of curvatures c and prior precisions p, elementwise."""
    precisions = [h * c + p for c, p in zip(curvatures, prior)]
    value = sum(np.sum(np.log(values)) for values in precisions)
    gradient_h = sum(np.sum(c / values) for c, values in zip(curvatures, precisions))
    return value, gradient_h, [1.0 / values for values in precisions]


def _eigh(factor):
    """`(eigenvalues, eigenvectors)` of a symmetric PSD factor, by TensorFlow.

    NumPy's LAPACK runs its threads in lockstep, which stalls on a busy host:
    a 130 x 130 factor took 450 ms on 2 shared cores, 3 ms in TensorFlow.
    """
    values, basis = tf.linalg.eigh(tf.constant(factor, tf.float64))
    # Rounding can make the smallest eigenvalues of a PSD factor slightly negative.
    return np.maximum(values.numpy(), 0.0), basis.numpy()


class Kron(Structure):
    """Kronecker-factored GGN per block (statistics `rows_i`: A_i, `columns_i`: G_i)."""

    name = "kron"

    def __init__(self, shapes, statistics):
        super().__init__(shapes, statistics)
        self._eigen = []
        for index in range(len(self.shapes)):
            values_a, basis_a = _eigh(self.statistics[f"rows_{index}"])
            values_g, basis_g = _eigh(self.statistics[f"columns_{index}"])
            self._eigen.append((values_a, basis_a, values_g, basis_g))
        # The eigenvalues of A (x) G, laid out as the block in the basis Q_A (x) Q_G.
        self._products = [np.outer(values_a, values_g) for values_a, _, values_g, _ in self._eigen]

    def _eigenvalues(self, h, prior):
        """The posterior precision's eigenvalues per block (a prior of one value per block)."""
        return [h * products + p for products, p in zip(self._products, self._prior_blocks(prior))]

    def log_det(self, h, prior):
        """`(log det, d/dh, [d/dprior per block, elementwise])`; the prior must be one value per block."""
        return _log_det_of_sums(h, self._products, self._prior_blocks(prior))

    def posterior_arrays(self, h, prior):
        arrays = {}
        for index, ((_, basis_a, _, basis_g), values) in enumerate(zip(self._eigen, self._eigenvalues(h, prior))):
            arrays[f"rows_basis_{index}"] = basis_a.astype("float32")
            arrays[f"columns_basis_{index}"] = basis_g.astype("float32")
            arrays[f"scale_{index}"] = (1.0 / np.sqrt(values)).astype("float32")
        return arrays

    def covariance(self, h, prior):
        blocks = []
        for (_, basis_a, _, basis_g), values in zip(self._eigen, self._eigenvalues(h, prior)):
            basis = np.kron(basis_a, basis_g)
            blocks.append((basis / values.reshape(-1)) @ basis.T)
        return _block_diagonal(blocks)

    def functional_variance(self, arrays, jacobians):
        variance = 0.0
        for index, jacobian in enumerate(jacobians):
            basis_a, basis_g = arrays[f"rows_basis_{index}"], arrays[f"columns_basis_{index}"]
            variance_weights = tf.square(arrays[f"scale_{index}"])
            if isinstance(jacobian, _function.Identity):
                rows = tf.square(jacobian.patches[:, 0] @ basis_a)
                variance += (rows @ variance_weights) @ tf.transpose(tf.square(basis_g))
            elif isinstance(jacobian, _function.Factored) and jacobian.patches.shape[1] == 1:
                rows = tf.square(jacobian.patches[:, 0] @ basis_a)
                columns = tf.square(tf.einsum("ncj,jb->ncb", jacobian.grads[:, :, 0], basis_g))
                variance += tf.einsum("na,ab,ncb->nc", rows, variance_weights, columns)
            else:
                rotated = tf.einsum("ncij,ia,jb->ncab", jacobian.dense(), basis_a, basis_g)
                variance += tf.einsum("ncab,ab->nc", tf.square(rotated), variance_weights)
        return variance

    def sample(self, arrays, seed, num_samples):
        deltas = []
        for index, shape in enumerate(self.shapes):
            noise = _stateless_normal(seed, index, (num_samples,) + shape) * arrays[f"scale_{index}"]
            deltas.append(
                tf.einsum("ia,sab,jb->sij", arrays[f"rows_basis_{index}"], noise, arrays[f"columns_basis_{index}"])
            )
        return deltas


class Diag(Structure):
    """Diagonal of the GGN per block (statistics `diagonal_i`: `(rows, columns)`)."""

    name = "diag"

    def _precisions(self, h, prior):
        return [h * self.statistics[f"diagonal_{index}"] + p for index, p in enumerate(self._prior_blocks(prior))]

    def log_det(self, h, prior):
        """`(log det, d/dh, [d/dprior per block, elementwise])`."""
        diagonals = [self.statistics[f"diagonal_{index}"] for index in range(len(self.shapes))]
        return _log_det_of_sums(h, diagonals, self._prior_blocks(prior))

    def posterior_arrays(self, h, prior):
        return {
            f"scale_{index}": (1.0 / np.sqrt(values)).astype("float32")
            for index, values in enumerate(self._precisions(h, prior))
        }

    def covariance(self, h, prior):
        return np.diag(np.concatenate([1.0 / values.reshape(-1) for values in self._precisions(h, prior)]))

    def functional_variance(self, arrays, jacobians):
        variance = 0.0
        for index, jacobian in enumerate(jacobians):
            variance_weights = tf.square(arrays[f"scale_{index}"])
            if isinstance(jacobian, _function.Identity):
                variance += tf.square(jacobian.patches[:, 0]) @ variance_weights
            elif isinstance(jacobian, _function.Factored) and jacobian.patches.shape[1] == 1:
                variance += tf.einsum(
                    "ni,ij,ncj->nc",
                    tf.square(jacobian.patches[:, 0]),
                    variance_weights,
                    tf.square(jacobian.grads[:, :, 0]),
                )
            else:
                variance += tf.einsum("ncij,ij->nc", tf.square(jacobian.dense()), variance_weights)
        return variance

    def sample(self, arrays, seed, num_samples):
        return [
            _stateless_normal(seed, index, (num_samples,) + shape) * arrays[f"scale_{index}"]
            for index, shape in enumerate(self.shapes)
        ]


class Full(Structure):
    """The full GGN over all parameters of all blocks (statistic `ggn`: `(P, P)`)."""

    name = "full"

    def __init__(self, shapes, statistics):
        super().__init__(shapes, statistics)
        self._values, self._basis = np.linalg.eigh(self.statistics["ggn"])
        self._values = np.maximum(self._values, 0.0)

    def _prior_vector(self, prior):
        return np.concatenate([p.reshape(-1) for p in self._prior_blocks(prior)])

    def _precision(self, h, prior):
        return h * self.statistics["ggn"] + np.diag(self._prior_vector(prior))

    def log_det(self, h, prior):
        """`(log det, d/dh, [d/dprior per block, elementwise])`: d/dprior is the diagonal of the covariance."""
        vector = self._prior_vector(prior)
        if np.all(vector == vector[0]):  # one prior precision: the GGN's eigenvalues give it without a factorisation
            values = h * self._values + vector[0]
            value, gradient_h = np.sum(np.log(values)), np.sum(self._values / values)
            variances = np.square(self._basis) @ (1.0 / values)
        else:
            cholesky = np.linalg.cholesky(self._precision(h, prior))
            covariance = scipy.linalg.cho_solve((cholesky, True), np.eye(len(vector)))
            value = 2.0 * np.sum(np.log(np.diag(cholesky)))
            gradient_h, variances = np.sum(covariance * self.statistics["ggn"]), np.diag(covariance)
        return value, gradient_h, [part.reshape(shape) for part, shape in zip(self._split_flat(variances), self.shapes)]

    def _split_flat(self, flat):
        return np.split(flat, np.cumsum([rows * columns for rows, columns in self.shapes])[:-1])

    def _scale(self, h, prior):
        """S with S S^T = precision^-1: the inverse transpose of the precision's Cholesky factor."""
        cholesky = np.linalg.cholesky(self._precision(h, prior))
        return scipy.linalg.solve_triangular(cholesky, np.eye(len(cholesky)), lower=True).T

    def posterior_arrays(self, h, prior):
        return {"scale": self._scale(h, prior).astype("float32")}

    def covariance(self, h, prior):
        scale = self._scale(h, prior)
        return scale @ scale.T

    def functional_variance(self, arrays, jacobians):
        flat = tf.concat([_flat_jacobian(j, shape[1]) for j, shape in zip(jacobians, self.shapes)], axis=-1)
        return tf.reduce_sum(tf.square(tf.einsum("ncp,pq->ncq", flat, arrays["scale"])), axis=-1)

    def sample(self, arrays, seed, num_samples):
        noise = _stateless_normal(seed, 0, (num_samples, self.num_parameters))
        return self._split(tf.einsum("pq,sq->sp", arrays["scale"], noise))


def _flat_jacobian(jacobian, columns):
    """`(batch, cotangents, rows * columns)` of a predictive Jacobian (an Identity's cotangents are unit vectors)."""
    if isinstance(jacobian, _function.Identity):
        dense = tf.einsum("ni,jc->ncij", jacobian.patches[:, 0], tf.eye(columns, dtype=jacobian.patches.dtype))
    else:
        dense = jacobian.dense()
    shape = tf.shape(dense)
    return tf.reshape(dense, tf.concat([shape[:2], [-1]], axis=0))


def _block_diagonal(blocks):
    size = sum(len(block) for block in blocks)
    matrix = np.zeros((size, size))
    start = 0
    for block in blocks:
        matrix[start : start + len(block), start : start + len(block)] = block
        start += len(block)
    return matrix


STRUCTURES = {"kron": Kron, "diag": Diag, "full": Full}
