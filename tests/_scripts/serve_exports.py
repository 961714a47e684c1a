"""Loads tfp_uq exports without importing tfp_uq and prints their outputs.

Usage: python serve_exports.py EXPORT_DIR INPUTS.npy [EXPORT_DIR INPUTS.npy ...]  -> JSON list on stdout
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

served = []
for path, inputs in zip(sys.argv[1::2], sys.argv[2::2]):
    outputs = tf.saved_model.load(path).signatures["serving_default"](tf.constant(np.load(inputs)))
    served.append({name: np.asarray(value).tolist() for name, value in outputs.items()})
print(json.dumps({"tfp_uq_imported": any(name.split(".")[0] == "tfp_uq" for name in sys.modules), "outputs": served}))
