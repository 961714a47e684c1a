"""Prints tfp_uq._random's draws on the JAX backend as JSON, for tests/test_random.py to compare with TensorFlow's."""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from tfp_uq import _random  # noqa: E402


def main():
    seed = jnp.asarray(json.loads(sys.argv[1]), "int32")
    shape = tuple(json.loads(sys.argv[2]))
    index = np.asarray(json.loads(sys.argv[3]), "int64")
    draws = {
        "normal": _random.normal(shape, seed),
        "uniform": _random.uniform(shape, seed),
        "rademacher": _random.rademacher(shape, seed),
        "normal_at": _random.normal_at(index, seed),
        "normal_at_per_row": _random.normal_at(index, _random.sample_seeds(seed, index.shape[0])),
    }
    print(json.dumps({name: np.asarray(value).tolist() for name, value in draws.items()}))


if __name__ == "__main__":
    main()
