"""Fused TensorFlow CPU kernels for Bayesian layers in steps XLA does not compile.

Keras on a CPU trains without XLA unless `jit_compile=True` is asked for. A
Bayesian layer's posterior draw is then either one XLA-compiled function
called from the TensorFlow step (~75-130 us per call on top of the work, run
on one thread) or a TensorFlow kernel per elementwise operation (~20 per
forward and backward pass). `posterior.cc` does the whole draw of one weight,
its KL to a fixed Normal prior and the factors of its gradient in one
vectorised pass on TensorFlow's CPU threads, and the backward pass in a
second one (benchmarks/RESULTS.md has the measured step times).

The kernels are compiled once per TensorFlow version with the machine's C++
compiler: `make` does it, or `tfp-uq build-native`. Without them (no
compiler, another platform, `TFP_UQ_NATIVE=0` in the environment) the layers
use the XLA-compiled draw, with the same random numbers up to float rounding.

They are used only where they cannot leak into a saved or compiled graph: a
training call (`training=True`) outside XLA, with float32 posteriors and a
`tfp_uq.priors.Normal` prior. Inference, export and `jit_compile=True` steps
keep the XLA-compiled draw. Their gradient is first order only: a step that
differentiates a Bayesian layer's gradient again (a gradient penalty, a
Hessian) gets an error that says to set `TFP_UQ_NATIVE=0`.
"""

import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings

from tfp_uq import _caches

_SOURCE = pathlib.Path(__file__).with_name("posterior.cc")
_OUTPUTS = ("sample", "perturbation", "scale")
# Set to "0" to never use the kernels (e.g. to compare against the XLA draw).
ENVIRONMENT_SWITCH = "TFP_UQ_NATIVE"


def library_path():
    """Where the kernels compiled for this TensorFlow and source live."""
    import tensorflow as tf

    digest = hashlib.sha256(_SOURCE.read_bytes()).hexdigest()[:12]
    return _SOURCE.with_name(f"_posterior-tf{tf.__version__}-{digest}.so")


def _architecture_flags():
    """Vector instructions this CPU has that the compiler may use."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return []
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= set(flags) else []


def build(compiler=None):
    """Compiles the kernels for the installed TensorFlow; returns the library path.

    Args:
        compiler: the C++ compiler command (default: `$CXX`, else `c++`).

    Raises:
        RuntimeError: no compiler was found, compiling failed (its output is
            in the message), or the kernels it built do not draw what the
            XLA-compiled draws draw (then nothing is installed).

    Example:

    >>> from tfp_uq import _native
    >>> _native.build()  # doctest: +SKIP
    """
    import tensorflow as tf

    target = library_path()
    compiler = compiler or os.environ.get("CXX") or "c++"
    if shutil.which(compiler) is None:
        raise RuntimeError(f"No C++ compiler {compiler!r} found: install one or set CXX.")
    with tempfile.TemporaryDirectory() as folder:
        built = pathlib.Path(folder) / target.name
        command = [
            compiler,
            "-shared",
            "-fPIC",
            "-O3",
            "-fopenmp-simd",
            "-fno-math-errno",
            "-fno-trapping-math",
            "-ffp-contract=fast",
            "-w",
            *_architecture_flags(),
            *tf.sysconfig.get_compile_flags(),
            str(_SOURCE),
            "-o",
            str(built),
            *tf.sysconfig.get_link_flags(),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"Compiling {_SOURCE.name} failed:\n{' '.join(command)}\n{result.stderr[-4000:]}")
        # In a fresh process that never loads the installed kernels: a library whose ops are
        # registered cannot be replaced, and loading two registers every op twice.
        check = f"from tfp_uq._native import _self_check; _self_check({str(built)!r})"
        environment = {**os.environ, ENVIRONMENT_SWITCH: "0"}
        result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=environment)
        if result.returncode != 0:
            raise RuntimeError(f"The kernels built with {compiler} failed their check:\n{result.stderr[-4000:]}")
        for stale in target.parent.glob("_posterior-*.so"):
            stale.unlink()
        shutil.copyfile(built, target)
    return target


def _self_check(path):
    """Raises if the kernels at `path` do not draw what the XLA draws draw."""
    import numpy as np
    import tensorflow as tf

    from tfp_uq import _parameterization, _random, priors

    lib = tf.load_op_library(path)
    seed, shape = tf.constant([3, -4], "int64"), tf.constant([65, 33])
    for name, draw in (("normal", _random._normal), ("rademacher", _random._rademacher)):
        expected = tf.function(draw, jit_compile=True, autograph=False)(shape, seed)
        np.testing.assert_allclose(lib.tfp_uq_random(shape, seed, distribution=name), expected, rtol=1e-5, atol=1e-6)
    loc = tf.random.stateless_normal([65, 33], [1, 2])
    rho = tf.random.stateless_normal([65, 33], [3, 4]) * 3.0 - 3.0
    energy, kl_weight = tf.random.stateless_uniform([65, 1], [5, 6]) * 2.0, tf.constant(1e-3)
    for parameterization, scale in (
        ("softplus", priors.positive_scale(rho)),
        ("curvature", _parameterization.curvature_scale(rho, energy, kl_weight, 1.0)),
    ):
        sample, kl, _, _ = lib.tfp_uq_normal_posterior(
            loc,
            rho,
            seed,
            energy,
            kl_weight,
            kind="sample",
            substream=0,
            prior_loc=0.0,
            prior_scale=1.0,
            floor=priors.SCALE_FLOOR,
            parameterization=parameterization,
        )
        np.testing.assert_allclose(sample, loc + scale * _random.normal(loc.shape, seed), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(kl, priors.Normal().kl_divergence(loc, scale, None), rtol=1e-5)


def library():
    """The loaded kernels, or None when they are not built or switched off."""
    if os.environ.get(ENVIRONMENT_SWITCH, "1") == "0":
        return None
    if _caches.native_library["library"] is None and not _caches.native_library["failed"]:
        if "path" not in _caches.native_library:
            _caches.native_library["path"] = library_path()
        path = _caches.native_library["path"]
        if path.exists():  # looked for again on later calls until built
            import tensorflow as tf

            try:
                _caches.native_library["library"] = _register_gradient(tf.load_op_library(str(path)))
            except (tf.errors.OpError, OSError) as error:
                _caches.native_library["failed"] = True
                warnings.warn(
                    f"tfp_uq could not load its compiled kernels ({error}); Bayesian layers use the "
                    "XLA-compiled draw. Rebuild them with `tfp-uq build-native`.",
                    stacklevel=2,
                )
    return _caches.native_library["library"]


def _register_gradient(lib):
    import tensorflow as tf

    def _gradient(op, grad_output, grad_kl, *unused):
        attributes = {name: op.get_attr(name) for name in ("kind", "prior_loc", "prior_scale")}
        loc = op.inputs[0]
        grad_output = tf.zeros_like(loc) if grad_output is None else grad_output
        grad_kl = tf.zeros([]) if grad_kl is None else grad_kl
        grad_loc, grad_rho = lib.tfp_uq_normal_posterior_grad(
            grad_output, grad_kl, loc, op.outputs[2], op.outputs[3], **attributes
        )
        return grad_loc, grad_rho, None, None, None

    def _no_second_order(op, *grads):
        raise LookupError(
            "Second-order gradients through a Bayesian layer's training call are not available with "
            f"tfp_uq's compiled kernels: set {ENVIRONMENT_SWITCH}=0 before the step is traced, or compile "
            "it with jit_compile=True, to use the XLA-compiled draw, which has them."
        )

    tf.RegisterGradient("TfpUqNormalPosterior")(_gradient)
    tf.RegisterGradient("TfpUqNormalPosteriorGrad")(_no_second_order)
    return lib


def in_xla_context():
    """Whether ops built now belong to an XLA-compiled function (True when that cannot be told)."""
    import tensorflow as tf

    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # the check moved: never risk an op XLA cannot compile
        return True
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _applies(lib, seed, training):
    """The rule for every kernel: built, a training call, outside XLA."""
    return lib is not None and training is True and seed.dtype == "int64" and not in_xla_context()


def random(distribution, shape, seed, training):
    """A "normal" or "rademacher" float32 draw as `tfp_uq._random` draws it, or None.

    Args:
        distribution: "normal" or "rademacher".
        shape: int32 shape tensor.
        seed: `[2]` int64 seed tensor.
        training: the layer call's `training` argument.

    Returns:
        The draw, or None when the kernels do not apply (not built, not a
        training call, or inside an XLA-compiled function).
    """
    lib = library()
    if not _applies(lib, seed, training):
        return None
    return lib.tfp_uq_random(shape, seed, distribution=distribution)


def posterior_draws(posteriors, seed, output, prior, training, scale_inputs=None):
    """`BayesianLayer.draw_posteriors` by the compiled kernels, or None.

    Args:
        posteriors: dict name -> (loc, rho, prior variables) of tensors, in
            the layer's order (weight k draws from seed sub-stream k).
        seed: `[2]` int64 seed tensor.
        output: "sample", "perturbation" or "scale".
        prior: the layer's prior.
        training: the layer call's `training` argument.
        scale_inputs: None for the softplus scale; for the curvature scale
            `({name: energy}, kl_weight)` as `BayesianLayer` passes them, each
            energy a scalar or laid out [rows, 1 or columns] against the
            weight's last two axes.

    Returns:
        `(drawn, kl)` as `draw_posteriors` returns them, or None when the
        kernels do not apply (not built, not a training call, another prior,
        dtype or output, or inside an XLA-compiled function), so the caller
        draws as usual.
    """
    from tfp_uq import _random, priors

    lib = library()
    if (
        output not in _OUTPUTS
        or type(prior) is not priors.Normal
        or any(loc.dtype != "float32" or rho.dtype != "float32" for loc, rho, _ in posteriors.values())
        or not _applies(lib, seed, training)
    ):
        return None
    import tensorflow as tf

    from tfp_uq import _parameterization

    if scale_inputs is None:
        parameterization, energies, kl_weight = "softplus", {}, tf.zeros([])
    else:
        parameterization, (energies, kl_weight) = "curvature", scale_inputs
    drawn, kl = {}, 0.0
    for index, (name, (loc, rho, _)) in enumerate(posteriors.items()):
        energy = energies.get(name, tf.zeros([0, 1]))
        if energy.shape.rank == 0:  # one energy for every row (a bias's, a layer that keeps no statistics)
            energy = tf.broadcast_to(tf.reshape(energy, [1, 1]), [loc.shape[-2] if loc.shape.rank > 1 else 1, 1])
        drawn[name], weight_kl, _, _ = lib.tfp_uq_normal_posterior(
            loc,
            rho,
            seed,
            energy,
            kl_weight,
            kind=output,
            substream=_random.stream(_random.Stream.WEIGHT, index),
            prior_loc=prior.loc,
            prior_scale=prior.scale,
            floor=priors.SCALE_FLOOR,
            parameterization=parameterization,
            min_kl_weight=_parameterization.MIN_KL_WEIGHT,
        )
        kl = kl + weight_kl
    return drawn, kl
