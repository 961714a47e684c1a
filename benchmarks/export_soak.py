"""Soak test of an exported SavedModel: concurrent requests of random batch sizes.

Loads a SavedModel written by `tfp_uq.export` (in a process that does not
import tfp_uq), sends `--threads` x `--requests` requests of random batch
sizes 1..`--max-batch` drawn from N(0, 1) inputs of the signature's shape,
and checks every response: outputs finite, probabilities in [0, 1]. After a
warm-up of `--warmup` requests per thread it samples the resident memory
(Linux /proc/self/statm) every 100 requests and reports its growth, and the
p50 / p99 latency per request.

Run:  .venv/bin/python benchmarks/export_soak.py EXPORT_DIR [--threads 4 --requests 2000 --max-batch 64]
      .venv/bin/python benchmarks/export_soak.py --make-example DIR   (exports a small Flipout classifier
      to DIR first, with tfp_uq, in a subprocess)
Prints one JSON line: requests, p50_ms, p99_ms, rss_start_mb, rss_end_mb, rss_growth, failures.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_EXAMPLE = """
import keras, numpy as np, tfp_uq, sys
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((16,)), tfp_uq.layers.DenseFlipout(32, activation="relu", seed=1),
                          tfp_uq.layers.DenseFlipout(4, activation="softmax", seed=2)])
tfp_uq.export(model, sys.argv[1], num_samples=30, threshold=0.5, seed=0, overwrite=True)
"""


def _rss_mb():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def soak(path, threads=4, requests=2000, max_batch=64, warmup=100, seed=0):
    """Runs the soak; returns the report dict."""
    import numpy as np
    import tensorflow as tf

    served = tf.saved_model.load(path)
    serve = served.signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    width = tuple(spec.shape[1:])
    latencies, failures, rss = [], [], []
    lock = threading.Lock()

    def worker(index):
        rng = np.random.default_rng(seed + index)
        for request in range(requests):
            x = rng.normal(size=(int(rng.integers(1, max_batch + 1)),) + width).astype(spec.dtype.as_numpy_dtype)
            start = time.perf_counter()
            outputs = serve(tf.constant(x))
            elapsed = time.perf_counter() - start
            problems = [
                name for name, value in outputs.items() if value.dtype.is_floating and not np.all(np.isfinite(value))
            ]
            if "probs" in outputs:
                probs = outputs["probs"].numpy()
                if not np.all((probs >= 0) & (probs <= 1)):
                    problems.append("probs outside [0, 1]")
            with lock:
                if request >= warmup:
                    latencies.append(elapsed)
                if problems:
                    failures.append(problems)
                if index == 0 and request >= warmup and request % 100 == 0:
                    rss.append(_rss_mb())

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    rss.append(_rss_mb())
    latencies = np.asarray(latencies) * 1e3
    return {
        "requests": threads * requests,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "rss_start_mb": rss[0],
        "rss_end_mb": rss[-1],
        "rss_growth": rss[-1] / rss[0] - 1.0,
        "failures": len(failures),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", help="a SavedModel folder written by tfp_uq.export")
    parser.add_argument("--make-example", metavar="DIR", help="export a small Flipout classifier to DIR and soak it")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--requests", type=int, default=2000, help="requests per thread")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=100, help="requests per thread before measuring")
    args = parser.parse_args()
    path = args.path
    if args.make_example:
        subprocess.run([sys.executable, "-c", _EXAMPLE, args.make_example], check=True)
        path = args.make_example
    if not path:
        parser.error("give an export folder or --make-example DIR")
    report = soak(path, args.threads, args.requests, args.max_batch, min(args.warmup, args.requests - 1))
    report["tfp_uq_imported"] = any(name.split(".")[0] == "tfp_uq" for name in sys.modules)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
