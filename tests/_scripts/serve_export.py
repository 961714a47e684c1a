"""Loads a tfp_uq export without importing tfp_uq and prints its outputs.

Usage: python serve_export.py EXPORT_DIR INPUTS.npy [CALLS]  -> JSON on stdout
(with CALLS > 1, the outputs of the later calls too, as "later_outputs")
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

served = tf.saved_model.load(sys.argv[1])
x = np.load(sys.argv[2])
calls = int(sys.argv[3]) if len(sys.argv) > 3 else 1
outputs = [
    {name: np.asarray(value).tolist() for name, value in served.signatures["serving_default"](tf.constant(x)).items()}
    for _ in range(calls)
]
print(
    json.dumps(
        {
            "tfp_uq_imported": any(name.split(".")[0] == "tfp_uq" for name in sys.modules),
            "outputs": outputs[0],
            "later_outputs": outputs[1:],
        }
    )
)
