"""The seam between HMC and the Keras backend: which TFP substrate, and how to compile, vectorise and seed.

`sample_posterior` is written once against this small interface. On the
TensorFlow backend it runs TensorFlow Probability's TensorFlow MCMC under
`tf.function`; on the JAX backend the same kernels from TFP's JAX substrate
(`tensorflow_probability.substrates.jax`) under `jax.jit`, with `jax.vmap`
over chains, so the model's `stateless_call` runs on JAX arrays either way.
"""

import collections
import functools

import keras
import numpy as np

__all__ = ["get"]


class _TensorFlow:
    """TFP's TensorFlow MCMC, `tf.function` (XLA when asked) and `tf.vectorized_map`."""

    name = "tensorflow"

    def __init__(self):
        import tensorflow as tf
        import tensorflow_probability as tfp

        self._tf, self.mcmc = tf, tfp.mcmc

    def compile(self, function, jit_compile):
        # A partial: TensorFlow counts traces per code object, so the closures that each
        # sample_posterior call compiles (traced once each) would read as retracing after five calls.
        return self._tf.function(functools.partial(function), jit_compile=jit_compile, autograph=False)

    def vectorized_map(self, function, elements):
        return self._tf.vectorized_map(function, elements)

    def constant(self, array):
        return self._tf.constant(array)

    def seed(self, seed, step):
        """The `[2]` stateless seed of the chunk starting at `step`."""
        return self._tf.constant([seed, step], dtype="int32")

    def to_numpy(self, value):
        return np.asarray(value)

    def from_numpy(self, array, like):
        """`array` (from `to_numpy`) as a tensor of the kind of `like`."""
        del like
        return self._tf.constant(array)


class _Jax:
    """TFP's JAX substrate, `jax.jit` and `jax.vmap`."""

    name = "jax"

    def __init__(self):
        import jax

        self._jax, self.mcmc = jax, _import_tfp_jax().mcmc

    def compile(self, function, jit_compile):
        # Without jit the sampler runs op by op: very slow, for debugging only.
        return self._jax.jit(function) if jit_compile else function

    def vectorized_map(self, function, elements):
        return self._jax.vmap(function)(elements)

    def constant(self, array):
        return self._jax.numpy.asarray(array)

    def seed(self, seed, step):
        """The raw `[2]` uint32 key of the chunk starting at `step` (TFP's JAX substrate takes raw keys)."""
        return self._jax.numpy.asarray(np.asarray([seed, step], "int64") % 2**32, dtype="uint32")

    def _is_key(self, value):
        return self._jax.dtypes.issubdtype(value.dtype, self._jax.dtypes.prng_key)

    def to_numpy(self, value):
        # The kernels' results hold typed PRNG keys: saved as their raw words.
        return np.asarray(self._jax.random.key_data(value) if self._is_key(value) else value)

    def from_numpy(self, array, like):
        """`array` (from `to_numpy`) as a JAX array of the kind of `like` (a typed key for a key)."""
        if self._is_key(like):
            return self._jax.random.wrap_key_data(array, impl=self._jax.random.key_impl(like))
        return self._jax.numpy.asarray(array)


def _import_tfp_jax():
    """`tensorflow_probability.substrates.jax`, importable with newer JAX releases too.

    TFP 0.25's JAX substrate registers its NumPy-backed Variable class in
    `jax.interpreters.xla.pytype_aval_mappings` when imported, a table that
    newer JAX releases no longer have in that module. HMC never hands such a
    variable to JAX, so a throwaway table for that one registration is all
    the import needs.
    """
    from jax.interpreters import xla

    if not hasattr(xla, "pytype_aval_mappings"):
        xla.pytype_aval_mappings = collections.defaultdict(lambda: None)
    from tensorflow_probability.substrates import jax as tfp_jax

    return tfp_jax


@functools.cache
def _substrate(backend):
    return _TensorFlow() if backend == "tensorflow" else _Jax()


def get():
    """The substrate of the current Keras backend.

    Raises:
        NotImplementedError: the backend is neither TensorFlow nor JAX.
    """
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        raise NotImplementedError(
            "tfp_uq.inference runs TensorFlow Probability's MCMC on the TensorFlow or JAX backend; the Keras backend "
            f"is {backend!r}. Sample in a process with KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax, or use the "
            "variational layers (tfp_uq.layers) on this backend."
        )
    return _substrate(backend)
