"""Checks of the seeded draws in `tfp_uq._random`: the hash, then statistics."""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import xxhash
from scipy import stats

from tfp_uq import _random

SEED = tf.constant([3, 4])


def _reference_xxh32(word0, word1, seed):
    return xxhash.xxh32_intdigest(struct.pack("<II", word0, word1), seed=seed)


def test_xxh32_matches_the_reference_implementation():
    rng = np.random.default_rng(0)
    word0, word1, seed = (rng.integers(0, 2**32, size=200, dtype=np.uint64).astype(np.uint32) for _ in range(3))
    got = _random.xxh32(tf.constant(word0), tf.constant(word1), tf.constant(seed)).numpy()
    expected = [_reference_xxh32(int(a), int(b), int(c)) for a, b, c in zip(word0, word1, seed)]
    assert got.tolist() == expected


@pytest.mark.parametrize("seed", [[123456789, 42], [-5, 2**40 + 7]])
def test_draws_are_built_from_xxh32_of_the_element_index(seed):
    # Key: two hashes of the seed's low 32-bit words; bits of element i:
    # the hash of (i, key1) with seed key0.
    words = [w % 2**32 for w in seed]
    key0 = _reference_xxh32(*words, seed=0)
    key1 = _reference_xxh32(*words, seed=1)
    bits = np.array([_reference_xxh32(i, key1, seed=key0) for i in range(15)], dtype=np.uint64)
    draw = _random.uniform((3, 5), tf.constant(seed, "int64")).numpy()
    np.testing.assert_array_equal(draw.ravel(), (bits >> 8) / 2.0**24)


def test_extreme_bits_give_finite_symmetric_normals_and_uniforms_below_one():
    bits = tf.constant([0, 2**32 - 1, 2**31 - 1, 2**31], "uint32")
    normals = _random.normal_from_bits(bits).numpy()
    assert np.all(np.isfinite(normals))
    assert normals[0] == -normals[1] and normals[2] == -normals[3]
    assert normals[0] == pytest.approx(stats.norm.ppf(2.0**-24), rel=1e-5)
    uniforms = _random.uniform_from_bits(bits).numpy()
    assert uniforms[0] == 0.0 and uniforms[1] == 1.0 - 2.0**-24


def test_every_bit_is_fair():
    bits = _random._bits(tf.constant([40000]), SEED).numpy()
    ones = (bits[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    assert np.all(np.abs(ones.mean(axis=0) - 0.5) < 4 * 0.5 / np.sqrt(len(bits)))


def test_normal_draw_is_standard_normal():
    draw = _random.normal((400, 250), SEED).numpy().ravel()
    assert stats.kstest(draw, "norm").pvalue > 1e-3
    assert abs(draw.mean()) < 4 / np.sqrt(draw.size)
    assert abs(draw.var() - 1.0) < 4 * np.sqrt(2 / draw.size)


def test_uniform_draw_is_uniform():
    draw = _random.uniform((400, 250), SEED).numpy().ravel()
    assert draw.min() >= 0.0 and draw.max() < 1.0
    assert stats.kstest(draw, "uniform").pvalue > 1e-3


def test_normal_draw_is_uncorrelated_within_and_across_seeds():
    n = 100_000
    draw = _random.normal((n,), SEED).numpy()
    bound = 4 / np.sqrt(n)
    for lag in (1, 2, 255, 256, 257, 4096):
        assert abs(np.corrcoef(draw[:-lag], draw[lag:])[0, 1]) < bound, lag
    # A layer's next call gets the seed with its second word plus one; its
    # weights and bias use sub-streams of that seed.
    for other in (tf.constant([3, 5]), tf.constant([4, 4]), _random.substream(SEED, 1)):
        assert abs(np.corrcoef(draw, _random.normal((n,), other).numpy())[0, 1]) < bound


@pytest.mark.parametrize("draw", [_random.normal, _random.uniform, _random.rademacher])
def test_draw_is_the_same_eager_in_a_graph_with_unknown_batch_and_under_xla(draw):
    expected = draw((100, 7), SEED).numpy()

    def in_graph(x):
        return draw((tf.shape(x)[0], 7), SEED)

    graph = tf.function(in_graph, input_signature=[tf.TensorSpec((None, 3))])
    xla = tf.function(in_graph, jit_compile=True)
    np.testing.assert_array_equal(graph(tf.zeros((100, 3))).numpy(), expected)
    np.testing.assert_array_equal(xla(tf.zeros((100, 3))).numpy(), expected)


@pytest.mark.parametrize("draw", [_random.normal, _random.uniform, _random.rademacher])
def test_a_draw_cut_from_its_bucket_is_the_draw_at_its_own_shape(draw):
    # Outside XLA a draw of 37 x 1111 = 41,107 elements is made at 45,056 and cut;
    # inside XLA (inlined, its own shape) nothing is cut: the numbers must agree.
    shape = (37, 1111)
    assert int(_random.draw_bucket(tf.constant(41_107))) == 45_056
    eager = draw(shape, SEED).numpy()
    xla = tf.function(lambda: draw(shape, SEED), jit_compile=True)().numpy()
    np.testing.assert_array_equal(eager, xla)


def test_draw_buckets_round_up_by_at_most_an_eighth():
    sizes = np.array([1, 7, 4096, 4097, 5000, 8191, 8192, 8193, 41_107, 2**20 + 1, 10**8, _random.MAX_DRAW_SIZE])
    buckets = _random.draw_bucket(tf.constant(sizes, "int32")).numpy()
    assert np.all(buckets >= sizes)
    assert np.all(buckets <= np.maximum(4096, np.ceil(sizes * 1.125)))
    assert buckets.max() <= _random.MAX_DRAW_SIZE
    # 8 sizes per doubling: every size from 4,097 to 8,192 shares one of 8 buckets.
    assert len(np.unique(_random.draw_bucket(tf.range(4097, 8193)).numpy())) == 8


def test_a_draw_larger_than_an_int32_index_raises():
    with pytest.raises(ValueError, match="elements"):
        _random.normal((2**16, 2**16), SEED)


def test_rademacher_signs_are_fair_and_independent():
    # 77 columns: rows do not start at word boundaries (32 signs per word).
    signs = _random.rademacher((2000, 77), SEED).numpy()
    assert set(np.unique(signs)) == {-1.0, 1.0}
    flat = signs.ravel()
    bound = 4 / np.sqrt(flat.size)
    assert abs(flat.mean()) < bound
    # Neighbouring bits of one word, the same bit of neighbouring words, and
    # neighbouring examples are uncorrelated.
    for lag in (1, 31, 32, 33, 77):
        assert abs(np.mean(flat[:-lag] * flat[lag:])) < bound, lag


def test_rademacher_substreams_differ():
    first = _random.rademacher((64, 64), _random.substream(SEED, 10)).numpy()
    second = _random.rademacher((64, 64), _random.substream(SEED, 11)).numpy()
    assert abs(np.mean(first * second)) < 4 / 64


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_draw_dtype(dtype):
    signs = _random.rademacher((5, 3), SEED, dtype)
    assert signs.dtype == dtype
    assert set(np.unique(signs.numpy().astype("float32"))) <= {-1.0, 1.0}
    assert _random.normal((5, 3), SEED, dtype).dtype == dtype
    assert _random.uniform((5, 3), SEED, dtype).dtype == dtype


def test_named_sub_streams_never_collide_for_any_number_of_weights():
    numbers = [
        _random.stream(purpose, weight)
        for weight in range(500)
        for purpose in (
            _random.Stream.WEIGHT,
            _random.Stream.KL_SAMPLE,
            _random.Stream.FLIP_INPUT,
            _random.Stream.FLIP_OUTPUT,
            _random.Stream.LOCAL_NOISE,
            _random.Stream.MASK,
        )
    ]
    assert len(set(numbers)) == len(numbers)
    # Distinct numbers give distinct seed words (the stride is odd, so it is invertible mod 2^32).
    words = {(int(SEED.numpy()[0]) + n * _random._SUBSTREAM_STRIDE) % 2**32 for n in numbers}
    assert len(words) == len(numbers)
    with pytest.raises(ValueError, match="sub-stream"):
        _random.stream(_random.Stream.SIZE, 0)


def test_folded_seeds_differ_per_value_and_repeat_per_value():
    folded = [tuple(_random.fold_in(SEED, i).numpy()) for i in range(200)]
    assert len(set(folded)) == 200
    assert tuple(_random.fold_in(SEED, 7).numpy()) == folded[7]
    # Layer seeds folded from one base never repeat each other's offset sub-streams.
    offsets = {(int(words[0]) + n * _random._SUBSTREAM_STRIDE) % 2**32 for words in folded for n in range(16)}
    assert len(offsets) == 200 * 16


@pytest.mark.slow  # a JAX subprocess, like the other JAX-backend tests
def test_jax_draws_the_same_numbers_as_tensorflow():
    # One model, the same seeds, the same weights drawn on either backend (JAX in a subprocess: its backend is
    # fixed at import). The Normal values agree exactly here: XLA computes both inverse CDFs alike.
    pytest.importorskip("jax", reason="the test extra installs jax")
    seed, shape, index = [3, -4], [65, 33], [[0, 5, 2144], [7, 7, 1]]
    script = os.path.join(os.path.dirname(__file__), "_scripts", "jax_draws.py")
    completed = subprocess.run(
        [sys.executable, script, json.dumps(seed), json.dumps(shape), json.dumps(index)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    drawn = {name: np.asarray(value) for name, value in json.loads(completed.stdout.strip().splitlines()[-1]).items()}
    seed, index = tf.constant(seed), tf.constant(index, "int64")
    np.testing.assert_array_equal(drawn["rademacher"], _random.rademacher(shape, seed).numpy())
    np.testing.assert_array_equal(drawn["uniform"], _random.uniform(shape, seed).numpy())
    np.testing.assert_allclose(drawn["normal"], _random.normal(shape, seed).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(drawn["normal_at"], _random.normal_at(index, seed).numpy(), rtol=1e-6, atol=1e-6)
    per_row = _random.normal_at(index, _random.sample_seeds(seed, 2)).numpy()
    np.testing.assert_allclose(drawn["normal_at_per_row"], per_row, rtol=1e-6, atol=1e-6)
