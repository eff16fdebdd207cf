"""vlae_jax: the MMD variational ladder autoencoder in JAX/Flax.

Public API::

    from vlae_jax import mmd                      # MMD^2 between two samples
    from vlae_jax import GaussianKernel, InverseMultiquadricKernel

The MMD library lives in ``vlae_jax.discrepancy`` (named so that the module and
the ``mmd`` function do not shadow each other); the ladder model is
``vlae_jax.models.VLAE``.

The names are loaded on first use, so importing a submodule that needs no JAX
(``vlae_jax.runtime``, the JPEG decoder's worker processes) does not import it.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    name: "vlae_jax.discrepancy"
    for name in ("ESTIMATORS", "KERNELS", "GaussianKernel",
                 "InverseMultiquadricKernel", "MedianHeuristicGaussian",
                 "ReferenceKernel", "SquaredDistanceKernel", "SumKernel",
                 "gram_matrix", "mmd", "pairwise_squared_distances",
                 "sum_kernels")
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value
  raise AttributeError(f"module 'vlae_jax' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(__all__))
