"""Every module-level cache and registry of tfp_uq, in one place.

All are keyed weakly by the object they serve (a layer, a model, a
posterior), so nothing here keeps a model alive, and none is saved with one.
Compiled functions close over a weak reference to their owner for the same
reason: a cached `tf.function` holding its model strongly would keep the key
of its own weak dictionary alive.
"""

import threading
import weakref

__all__ = ["compiled", "kl_trackers", "native_library", "posterior_std_layers"]

_LOCK = threading.RLock()
# owner -> {key: compiled function}: a Bayesian layer's posterior draw, a
# posterior's predict function.
_COMPILED = weakref.WeakKeyDictionary()
# Bayesian layer -> the KLTracker metric of the model it reports to.
kl_trackers = weakref.WeakKeyDictionary()
# PosteriorStd metric -> weak references to the Bayesian layers whose scales it averages.
posterior_std_layers = weakref.WeakKeyDictionary()
# The C++ kernels of tfp_uq._native: the loaded library, its path, whether loading failed.
native_library = {"library": None, "failed": False}


def compiled(owner, key, make):
    """The function cached for `(owner, key)`, made by `make(owner_ref)` on first use.

    `owner_ref` is a `weakref.ref` to `owner`; `make` must not close over
    `owner` itself. Thread-safe: concurrent first calls make it once.
    """
    with _LOCK:
        functions = _COMPILED.setdefault(owner, {})
        if key not in functions:
            functions[key] = make(weakref.ref(owner))
        return functions[key]
