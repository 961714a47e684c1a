"""Loads a tfp_uq export without importing tfp_uq and prints its outputs.

Usage: python serve_export.py EXPORT_DIR INPUTS.npy  -> JSON on stdout
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

served = tf.saved_model.load(sys.argv[1])
x = np.load(sys.argv[2])
outputs = served.signatures["serving_default"](tf.constant(x))
print(
    json.dumps(
        {
            "tfp_uq_imported": any(name.split(".")[0] == "tfp_uq" for name in sys.modules),
            "outputs": {name: np.asarray(value).tolist() for name, value in outputs.items()},
        }
    )
)
