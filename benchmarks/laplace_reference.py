"""tfp_uq.laplace against laplace-torch (aleximmer/Laplace) on the same trained weights: digits, last layer.

Trains the digits MLP of benchmarks/laplace.py (64-128-128-9, ReLU, Adam 1e-3,
60 epochs of batch 64, no weight decay; 85% of the training split, the rest
held out as validation data), then fits both libraries to the same weights:
tfp_uq's last-layer Laplace with hessian "kron" and "full" and the prior
precision by marginal likelihood, and laplace-torch's
`Laplace(model, "classification", subset_of_weights="last_layer",
hessian_structure=...)` on a float64 torch copy of the network, with
`optimize_prior_precision(method="marglik")` (its default: 100 Adam steps of
0.1 in log lambda from lambda = 1) and `method="gridsearch"` on the
validation data. Per row: the prior precision, the log marginal likelihood
there and at lambda = 1 and 100 (lambda = 100: the best test NLL of a sweep
in RESULTS.md), and test NLL / ECE (15 bins, `tfp_uq.metrics`) of the GLM
predictive with the probit link, at the chosen lambda and at 100.

laplace-torch runs in a separate Python (it needs torch), given by
--torch-python; nothing of it enters tfp_uq. About 3 minutes on 2 cores.

Run:  .venv/bin/python benchmarks/laplace_reference.py --torch-python /tmp/laplace-venv/bin/python
      (that venv: pip install torch laplace-torch)
"""

import argparse
import json
import os
import subprocess
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

PRIORS = (1.0, 100.0)


def torch_side(folder):
    """laplace-torch's numbers for the weights in folder/digits.npz (runs in the torch Python)."""
    import importlib.metadata

    import torch
    from laplace import Laplace
    from torch.utils.data import DataLoader, TensorDataset

    data = np.load(os.path.join(folder, "digits.npz"))
    kernels = [data[f"kernel_{i}"] for i in range(3)]
    layers = [torch.nn.Linear(*kernel.shape).double() for kernel in kernels]
    with torch.no_grad():
        for index, layer in enumerate(layers):
            layer.weight.copy_(torch.tensor(kernels[index].T))
            layer.bias.copy_(torch.tensor(data[f"bias_{index}"]))
    model = torch.nn.Sequential(layers[0], torch.nn.ReLU(), layers[1], torch.nn.ReLU(), layers[2]).eval()

    def loader(x, y):
        return DataLoader(TensorDataset(torch.tensor(x, dtype=torch.float64), torch.tensor(y)), batch_size=128)

    x_test = torch.tensor(data["x_test"], dtype=torch.float64)

    def probs(la, prior):
        la.prior_precision = torch.tensor(prior, dtype=torch.float64)
        return la(x_test, pred_type="glm", link_approx="probit").detach().numpy()

    rows, arrays = [], {"plain": torch.softmax(model(x_test), -1).detach().numpy()}
    for hessian, method in (("kron", "marglik"), ("full", "marglik"), ("kron", "gridsearch")):
        la = Laplace(model, "classification", subset_of_weights="last_layer", hessian_structure=hessian)
        la.fit(loader(data["x_train"], data["y_train"]))
        extra = {"val_loader": loader(data["x_val"], data["y_val"])} if method == "gridsearch" else {}
        la.optimize_prior_precision(pred_type="glm", method=method, link_approx="probit", **extra)
        prior = float(la.prior_precision.reshape(-1)[0])
        # log_marginal_likelihood(p) also sets la.prior_precision to p: probs() sets it again.
        evidence = {
            str(p): float(la.log_marginal_likelihood(torch.tensor(p, dtype=torch.float64))) for p in (prior,) + PRIORS
        }
        name = f"laplace-torch {hessian} {method}"
        arrays[name] = probs(la, prior)
        arrays[name + " at 100"] = probs(la, 100.0)
        rows.append({"name": name, "prior": prior, "evidence": evidence})
    versions = {name: importlib.metadata.version(name) for name in ("torch", "laplace-torch", "curvlinops-for-pytorch")}
    np.savez(os.path.join(folder, "torch_probs.npz"), **arrays)
    with open(os.path.join(folder, "torch.json"), "w") as handle:
        json.dump({"rows": rows, "versions": versions}, handle)


def train(folder, seed):
    """Trains the digits MLP of benchmarks/laplace.py; writes its weights and data to folder/digits.npz."""
    import keras
    from sklearn.model_selection import train_test_split

    from tfp_uq import _demo, _recipes

    keras.utils.set_random_seed(seed)
    x_train, y_train, x_test, y_test, _ = _demo.load_digits_split(seed)
    x_train, x_val, y_train, y_val = train_test_split(
        x_train, y_train, test_size=0.15, random_state=seed, stratify=y_train
    )
    model = _recipes.build("plain", 64, "classification", 9, len(x_train), hidden=(128, 128), seed=seed)
    model.fit(x_train, y_train, epochs=60, batch_size=64, verbose=0)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    np.savez(
        os.path.join(folder, "digits.npz"),
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        **{f"kernel_{i}": layer.kernel.numpy() for i, layer in enumerate(dense)},
        **{f"bias_{i}": layer.bias.numpy() for i, layer in enumerate(dense)},
    )
    return model


def ours(model, folder):
    import tfp_uq
    from tfp_uq import laplace

    data = np.load(os.path.join(folder, "digits.npz"))
    train_data = (data["x_train"], data["y_train"])
    rows, arrays = [], {"keras plain": model.predict(data["x_test"], verbose=0)}
    for hessian in ("kron", "full"):
        posterior = laplace.fit(model, train_data, hessian=hessian, verbose=0)
        prior = posterior.prior_precision
        evidence = {str(p): posterior.log_marginal_likelihood(p) for p in (prior,) + PRIORS}
        name = f"tfp_uq {hessian} marglik"
        arrays[name] = tfp_uq.predict(posterior, data["x_test"], num_samples=2, seed=0).probs
        fixed = laplace.fit(model, train_data, hessian=hessian, prior_precision=100.0, verbose=0)
        arrays[name + " at 100"] = tfp_uq.predict(fixed, data["x_test"], num_samples=2, seed=0).probs
        rows.append({"name": name, "prior": prior, "evidence": evidence})
    validation = (data["x_val"], data["y_val"])
    posterior = laplace.fit(model, train_data, prior_precision="gridsearch", validation_data=validation, verbose=0)
    arrays["tfp_uq kron gridsearch"] = tfp_uq.predict(posterior, data["x_test"], num_samples=2, seed=0).probs
    arrays["tfp_uq kron gridsearch at 100"] = arrays["tfp_uq kron marglik at 100"]
    evidence = {str(p): posterior.log_marginal_likelihood(p) for p in (posterior.prior_precision,) + PRIORS}
    rows.append({"name": "tfp_uq kron gridsearch", "prior": posterior.prior_precision, "evidence": evidence})
    return rows, arrays


def table(rows, arrays, y_test):
    from tfp_uq import metrics

    def scores(probs):
        return metrics.negative_log_likelihood(probs, y_test), metrics.expected_calibration_error(probs, y_test)

    header = (
        f"{'posterior (last layer)':30s} {'lambda':>8s} {'log ML':>11s} {'at 1':>9s} {'at 100':>9s}   "
        f"{'NLL':>6s} {'ECE':>6s}   {'NLL@100':>7s} {'ECE@100':>7s}"
    )
    lines = [header, "-" * len(header)]
    nll, ece = scores(arrays["plain"])
    lines.append(f"{'plain MLP':30s} {'':8s} {'':11s} {'':9s} {'':9s}   {nll:6.4f} {ece:6.4f}")
    for row in sorted(rows, key=lambda row: (row["name"].split()[1:], row["name"])):
        evidence = list(row["evidence"].values())
        nll, ece = scores(arrays[row["name"]])
        nll_100, ece_100 = scores(arrays[row["name"] + " at 100"])
        lines.append(
            f"{row['name']:30s} {row['prior']:8.4g} {evidence[0]:11.3f} {evidence[1]:9.3f} {evidence[2]:9.3f}   "
            f"{nll:6.4f} {ece:6.4f}   {nll_100:7.4f} {ece_100:7.4f}"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch-python", help="a Python with torch and laplace-torch installed")
    parser.add_argument("--torch-side", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.torch_side:
        torch_side(args.torch_side)
        return
    if not args.torch_python:
        parser.error("give --torch-python, a Python with torch and laplace-torch")
    with tempfile.TemporaryDirectory() as folder:
        model = train(folder, args.seed)
        # -I: without this folder on its path, where benchmarks/laplace.py would shadow the laplace package.
        subprocess.run([args.torch_python, "-I", os.path.abspath(__file__), "--torch-side", folder], check=True)
        rows, arrays = ours(model, folder)
        with open(os.path.join(folder, "torch.json")) as handle:
            reference = json.load(handle)
        with np.load(os.path.join(folder, "torch_probs.npz")) as torch_probs:
            arrays.update({key: torch_probs[key] for key in torch_probs.files})
        y_test = np.load(os.path.join(folder, "digits.npz"))["y_test"]
    import keras

    print(f"digits, seed {args.seed}; {json.dumps(reference['versions'])}, keras {keras.__version__}")
    print(table(rows + reference["rows"], arrays, y_test))
    difference = np.abs(arrays["plain"] - arrays["keras plain"]).max()
    print(f"(the torch copy's probabilities differ from the Keras model's by at most {difference:.1e})")


if __name__ == "__main__":
    main()
