"""Seeded random draws that stay fast under XLA.

On TensorFlow every draw starts from 32 random bits per element: xxHash32
(Y. Collet's hash, bit for bit) of the element's index and a 64-bit key
derived from the call's seed. That is pure elementwise integer arithmetic, so
XLA fuses it into whatever consumes the draw and vectorises it.

The stateless ops TensorFlow offers do not: `keras.random.normal` compiles to
ThreeFry under XLA (a 784x256 draw took ~38 ms in `jit_compile=True` against
~1.6 ms with Philox), and Philox itself is emitted as four words per counter
that XLA, fusing them into a consumer, recomputed per word in scalar code:
a forward pass of an MLP with one 784x256 `DenseReparameterization` took
4.5 ms against 1.8 ms with the hash (0.7 ms for the plain Dense MLP).

The key is two xxHash32 values of the `[2]`-shaped seed, so two draws repeat
each other's stream only if 64 hashed bits collide. Each draw runs as its own
XLA-compiled function (inlined when the caller is compiled too), so the same
seed gives the same numbers eagerly, in a graph and under XLA; training calls
outside XLA may draw them with the compiled kernels of `tfp_uq._native`
instead (the same bits; Normal draws equal up to float rounding). JAX draws
the same bits with the same hash in `jax.numpy` (Normal values equal up to
float rounding), which XLA fuses there too, where `keras.random` would run
ThreeFry.

Each Bayesian layer owns one `keras.random.SeedGenerator` and asks it for one
seed per call (one state update); the draws inside that call use sub-streams
derived from that seed with `substream`.
"""

import math

import keras
from keras import ops

from tfp_uq import _caches

# Offset between the sub-streams of one seed: a large odd number, so that
# distinct sub-stream numbers below 2^32 give distinct 32-bit seed words.
_SUBSTREAM_STRIDE = 1_000_003


class Stream:
    """Named sub-streams of one layer call's seed (see `stream`).

    Each weight k of a layer has its own block of `SIZE` numbers, so no two
    (purpose, weight) pairs share a sub-stream, whatever the number of weights.
    """

    WEIGHT = 0  # weight k's draw: sample, perturbation, or the samples of vectorised prediction
    KL_SAMPLE = 1  # weight k's extra draw for a Monte Carlo KL estimate
    FLIP_INPUT = 2  # Flipout's input signs
    FLIP_OUTPUT = 3  # Flipout's output signs
    LOCAL_NOISE = 4  # local reparameterization's pre-activation noise
    MASK = 5  # dropout masks
    SIZE = 8  # numbers per weight; purposes above stay below it


def stream(purpose, weight=0):
    """The sub-stream number of `purpose` (a `Stream` constant) for weight index `weight`."""
    if not 0 <= purpose < Stream.SIZE or weight < 0:
        raise ValueError(f"no sub-stream for purpose {purpose} and weight {weight}")
    return weight * Stream.SIZE + purpose


# The xxHash32 primes that an 8-byte message uses (PRIME32_1 only serves longer ones).
_PRIME2, _PRIME3, _PRIME4, _PRIME5 = 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1

# Bit positions 0..31 of a 32-bit word, to unpack it into 32 random bits.
_BIT_INDEX = tuple(range(32))

# The most elements one draw can have (its element index is an int32).
MAX_DRAW_SIZE = 2**31 - 1


def _is_tensorflow():
    return keras.backend.backend() == "tensorflow"


def substream(seed, index):
    """Returns the seed of sub-stream `index` (see `stream`) of a `[2]`-shaped seed tensor."""
    if index == 0:
        return seed
    offset = ops.convert_to_tensor([index * _SUBSTREAM_STRIDE, 0], dtype=seed.dtype)
    return seed + offset


def call_seed(seed, call):
    """The `[2]` seed (NumPy int64) of compiled call number `call` of a prediction seeded with integer `seed`."""
    import numpy as np

    word = int(np.random.SeedSequence(seed % 2**64).generate_state(1)[0]) & 0x7FFFFFFF
    return np.array([word, call], dtype="int64")


def fold_in(seed, value):
    """A new `[2]` seed hashed from `seed` and the integer `value`: independent streams per value.

    Unlike `substream`, which offsets a seed (cheap, for the draws inside one
    call), this mixes both words, so seeds folded from one base never repeat
    each other's sub-streams. `tfp_uq.predict` gives each stochastic layer
    `fold_in(call_seed, layer_index)`.
    """
    if not _is_tensorflow():
        import jax

        return jax.random.fold_in(ops.convert_to_tensor(seed, "uint32"), value)
    import tensorflow as tf

    words = tf.cast(tf.cast(seed, "int64"), "uint32")
    first = xxh32(words[0], words[1], tf.constant(value % 2**32, "uint32"))
    second = xxh32(words[1], words[0], tf.constant((value ^ 0x9E3779B9) % 2**32, "uint32"))
    return tf.cast(tf.stack([first, second]), seed.dtype if seed.dtype == tf.int64 else "int64")


def xxh32(word0, word1, seed):
    """xxHash32 of the 8-byte little-endian message (word0, word1), elementwise.

    Args:
        word0, word1, seed: uint32 tensors (broadcastable): TensorFlow tensors
            on TensorFlow, JAX arrays on JAX.

    Returns:
        The uint32 hash, as `xxhash.xxh32_intdigest(pack("<II", word0, word1), seed)`.
    """
    if _is_tensorflow():
        import tensorflow as tf

        bitwise = tf.bitwise

        def const(value):
            return tf.constant(value % 2**32, "uint32")
    else:
        import jax.numpy as bitwise  # the same names: left_shift, right_shift, bitwise_xor, bitwise_or

        def const(value):
            return bitwise.uint32(value % 2**32)

    def rotate_left(x, bits):
        return bitwise.bitwise_or(bitwise.left_shift(x, const(bits)), bitwise.right_shift(x, const(32 - bits)))

    def xor_shift(x, bits):
        return bitwise.bitwise_xor(x, bitwise.right_shift(x, const(bits)))

    h = seed + const(_PRIME5 + 8)
    for word in (word0, word1):
        h = rotate_left(h + word * const(_PRIME3), 17) * const(_PRIME4)
    h = xor_shift(h, 15) * const(_PRIME2)
    h = xor_shift(h, 13) * const(_PRIME3)
    return xor_shift(h, 16)


def _bits(shape, seed):
    """32 random bits (uint32) per element of `shape`, a `[k]`-shaped int tensor."""
    import tensorflow as tf

    words = tf.cast(tf.cast(seed, "int64"), "uint32")  # the low 32 bits of each
    key0 = xxh32(words[0], words[1], tf.constant(0, "uint32"))
    key1 = xxh32(words[0], words[1], tf.constant(1, "uint32"))
    size = tf.reduce_prod(shape)
    index = tf.reshape(tf.cast(tf.range(size), "uint32"), shape)
    return xxh32(index, key1, key0)


def _top_bits(bits, count):
    """The top `count` (<= 24) of 32 bits as a float32 integer, exactly."""
    import tensorflow as tf

    top = tf.bitwise.right_shift(bits, tf.constant(32 - count, "uint32"))
    return tf.cast(tf.cast(top, "int32"), "float32")


def normal_from_bits(bits):
    """Standard Normal values from uint32 random bits, one per element.

    The inverse normal CDF at (2k + 1) / 2^24 for k, the top 23 bits: exact
    quantiles of N(0, 1) on a grid symmetric about 1/2 (so the draws' mean
    is exactly 0 over the grid), tails to +-5.29. With 24 bits the top grid
    point 1 - 2^-25 would round to 1 in float32, whose quantile is infinite.
    """
    import tensorflow as tf

    return tf.math.ndtri(_top_bits(bits, 23) * 2.0**-23 + 2.0**-24)


def uniform_from_bits(bits):
    """Uniform values k / 2^24 in [0, 1) from uint32 random bits (k: the top 24)."""
    return _top_bits(bits, 24) * 2.0**-24


def _normal(shape, seed):
    return normal_from_bits(_bits(shape, seed))


def _uniform(shape, seed):
    return uniform_from_bits(_bits(shape, seed))


def _rademacher(shape, seed):
    # 32 signs per word. Two words summed (mod 2^32, still uniform) per 32
    # signs: the reduction makes XLA compute the words once instead of
    # fusing the hash into every consumer element (a conv's (batch, 1, 1,
    # channels) signs were otherwise re-drawn for each pixel).
    import tensorflow as tf

    size = tf.reduce_prod(shape)
    words = tf.reduce_sum(_bits(tf.stack([(size + 31) // 32, 2]), seed), axis=1)
    bit_index = tf.constant(_BIT_INDEX, "uint32")
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(words[:, None], bit_index), tf.constant(1, "uint32"))
    signs = 2.0 * tf.cast(tf.reshape(bits, [-1])[:size], "float32") - 1.0
    return tf.reshape(signs, shape)


def _check_size(shape):
    """The number of elements of a static `shape`; raises if one draw cannot have that many."""
    size = math.prod(shape)
    if size > MAX_DRAW_SIZE:
        raise ValueError(
            f"A random draw of shape {tuple(shape)} has more than {MAX_DRAW_SIZE} elements, the most one draw can have."
        )
    return size


def _jax_keys(seed):
    """The two 32-bit hash keys of a `[2]` (or `[..., 2]`) seed, as `_bits` derives them on TensorFlow."""
    import jax.numpy as jnp

    words = jnp.asarray(seed).astype(jnp.uint32)  # the low 32 bits of each
    zero, one = jnp.uint32(0), jnp.uint32(1)
    return xxh32(words[..., 0], words[..., 1], zero), xxh32(words[..., 0], words[..., 1], one)


def _jax_bits(shape, seed):
    """`_bits` on JAX: the same 32 bits per element, from the same hash of the element's index."""
    import jax

    key0, key1 = _jax_keys(seed)
    index = jax.lax.iota("uint32", math.prod(shape)).reshape(shape)
    return xxh32(index, key1, key0)


def _jax_normal_from_bits(bits):
    """`normal_from_bits` on JAX, as sqrt(2) erfinv(2u - 1): XLA's erfinv is ~2x cheaper than its ndtri."""
    import jax
    import jax.numpy as jnp

    grid = jnp.right_shift(bits, jnp.uint32(9)).astype("int32").astype("float32")
    return math.sqrt(2.0) * jax.lax.erf_inv(grid * 2.0**-22 + (2.0**-23 - 1.0))


def _jax_draw(kind, shape, seed, dtype):
    """Normal, uniform or Rademacher draws on JAX from the xxHash32 bits of `_bits`.

    The same bits as on TensorFlow (Normal values equal up to float rounding),
    and fused by XLA into their consumer: a 784x256 Normal draw took 0.5 ms
    against 2.2 ms for `jax.random.normal`'s ThreeFry, and Flipout's signs
    0.1 ms against 0.8 ms for `jax.random.randint` (one CPU thread).
    """
    import jax.numpy as jnp

    shape = tuple(int(d) for d in shape)
    size = _check_size(shape)
    if kind == "rademacher":
        # 32 signs per word, two words summed per 32 signs, as `_rademacher` does on TensorFlow.
        words = jnp.sum(_jax_bits(((size + 31) // 32, 2), seed), axis=1, dtype="uint32")
        bits = jnp.right_shift(words[:, None], jnp.asarray(_BIT_INDEX, "uint32")) & jnp.uint32(1)
        return (2.0 * bits.reshape(-1)[:size].astype(dtype) - 1.0).reshape(shape)
    bits = _jax_bits(shape, seed)
    if kind == "normal":
        return _jax_normal_from_bits(bits).astype(dtype)
    return (jnp.right_shift(bits, jnp.uint32(8)).astype("int32").astype("float32") * 2.0**-24).astype(dtype)


# The draws tfp_uq._native also has, by its names for them.
_NATIVE_NAMES = {_normal: "normal", _rademacher: "rademacher"}


def _draw(fn, shape, seed, dtype, training=None):
    """Runs `fn(shape, seed)` as one XLA-compiled function; casts to `dtype`.

    In a training call outside XLA, the compiled kernels of `tfp_uq._native`
    draw the same numbers instead, where they are built.
    """
    import tensorflow as tf

    from tfp_uq import _native

    static = [d if isinstance(d, int) else None for d in shape]
    if None not in static:
        _check_size(static)
    shape = tf.stack([tf.cast(d, "int32") for d in shape]) if shape else tf.zeros([0], "int32")
    draw = _native.random(_NATIVE_NAMES[fn], shape, seed, training) if fn in _NATIVE_NAMES else None
    if draw is None:
        compiled = _caches.compiled(fn, "xla", lambda _: tf.function(fn, jit_compile=True, autograph=False))
        if _native.in_xla_context():  # inlined into the caller's compiled function, at its own shape
            draw = compiled(shape, seed)
        else:
            # Called on its own, the function is compiled once per shape it is given (~0.2 s each):
            # drawn flat at a rounded-up size and cut, draws of similar sizes share one compile, and
            # the numbers are the same (element i depends on i and the seed alone).
            size = tf.reduce_prod(shape)
            draw = tf.reshape(compiled(draw_bucket(size)[None], seed)[:size], shape)
    draw = tf.cast(draw, dtype)
    # The compiled function takes its shape as a tensor: give the result back
    # the static dimensions (else a units=1 layer's outputs lose their last).
    draw.set_shape(static)
    return draw


# Draws of at most this many elements share one compiled size (see `draw_bucket`).
_SMALLEST_BUCKET = 4096


def draw_bucket(size):
    """The size at which a draw of `size` elements (an int32 scalar tensor) is made outside XLA.

    `size` rounded up to `_SMALLEST_BUCKET`, or to a multiple of 2^(floor(log2 size) - 3): at most
    1/8 more elements than asked for, and at most 8 compiled sizes per doubling.
    """
    import tensorflow as tf

    size = tf.cast(size, "int64")
    exponent = tf.cast(tf.math.floor(tf.math.log(tf.cast(tf.maximum(size, 1), "float64")) / math.log(2.0)), "int64")
    step = tf.bitwise.left_shift(tf.constant(1, "int64"), tf.maximum(exponent - 3, 0))
    bucket = tf.maximum((size + step - 1) // step * step, _SMALLEST_BUCKET)
    return tf.cast(tf.maximum(tf.minimum(bucket, MAX_DRAW_SIZE), size), "int32")


def normal(shape, seed, dtype="float32", training=None):
    """Standard Normal draw of `shape` from a `[2]`-shaped integer seed tensor.

    `training=True` (a layer's training call) lets TensorFlow use the fused
    kernels of `tfp_uq._native` outside XLA; the numbers are the same.
    """
    if _is_tensorflow():
        return _draw(_normal, shape, seed, dtype, training)
    return _jax_draw("normal", shape, seed, dtype)


def rademacher(shape, seed, dtype="float32", training=None):
    """Random signs in {-1, +1} of `shape` from a `[2]`-shaped seed tensor.

    On TensorFlow each sign is one bit of a hashed word: 32 signs per word,
    where drawing each sign as its own word cost ~0.4 ms of a training step
    (Flipout's signs for a 128x784 batch under XLA on CPU, ~10%).
    `training` as for `normal`.
    """
    if _is_tensorflow():
        return _draw(_rademacher, shape, seed, dtype, training)
    return _jax_draw("rademacher", shape, seed, dtype)


def _normal_at(index, seed):
    import tensorflow as tf

    words = tf.cast(tf.cast(seed, "int64"), "uint32")  # the low 32 bits of each
    key0 = xxh32(words[..., 0], words[..., 1], tf.constant(0, "uint32"))
    key1 = xxh32(words[..., 0], words[..., 1], tf.constant(1, "uint32"))
    # A key per leading row of `index` (`[n, 2]` seeds), or one for all: broadcast along the other axes.
    keys_shape = tf.concat([tf.shape(key0), tf.ones([tf.rank(index) - tf.rank(key0)], "int32")], 0)
    key0, key1 = tf.reshape(key0, keys_shape), tf.reshape(key1, keys_shape)
    return normal_from_bits(xxh32(tf.cast(index, "uint32"), key1, key0))


def normal_at(index, seed, dtype="float32"):
    """Standard Normal values at flat element positions `index` of a stream, drawn only there.

    On TensorFlow, `normal_at(i, seed)` is `normal(shape, seed)` flattened at
    position i, for any shape: an embedding layer draws its posterior at the
    rows a batch looks up, and the same row gets the same numbers wherever it
    occurs in the batch, without drawing the whole table. The same holds on
    JAX.

    Args:
        index: a non-negative integer tensor of positions (< 2^32).
        seed: a `[2]`-shaped integer seed tensor, or `[n, 2]`: one seed per
            leading row of `index` (Monte Carlo sample s of vectorised
            prediction has its own, `sample_seeds`).
        dtype: dtype of the result.

    Returns:
        A tensor of `index`'s shape.
    """
    if _is_tensorflow():
        import tensorflow as tf

        compiled = _caches.compiled(
            _normal_at,
            "xla",
            lambda _: tf.function(_normal_at, jit_compile=True, autograph=False, reduce_retracing=True),
        )
        return tf.cast(compiled(tf.convert_to_tensor(index), tf.convert_to_tensor(seed)), dtype)
    import jax.numpy as jnp

    index = jnp.asarray(index).astype("uint32")
    key0, key1 = _jax_keys(seed)
    if key0.ndim:  # a key per leading row of `index`
        key0, key1 = (key.reshape(key.shape + (1,) * (index.ndim - key.ndim)) for key in (key0, key1))
    return _jax_normal_from_bits(xxh32(index, key1, key0)).astype(dtype)


def sample_seeds(seed, num_samples):
    """`[num_samples, 2]` seeds, one per Monte Carlo sample, from a `[2]` seed.

    Sample s offsets the second word by s; sub-streams (`substream`) offset
    the first, so the two never meet.
    """
    offsets = ops.stack([ops.zeros((num_samples,), seed.dtype), ops.arange(num_samples, dtype=seed.dtype)], axis=1)
    return seed[None, :] + offsets


def uniform(shape, seed, dtype="float32"):
    """Uniform draw on [0, 1) of `shape` from a `[2]`-shaped seed tensor."""
    if _is_tensorflow():
        return _draw(_uniform, shape, seed, dtype)
    return _jax_draw("uniform", shape, seed, dtype)
