"""vlae_jax: the MMD variational ladder autoencoder in JAX/Flax.

Public API::

    from vlae_jax import mmd                      # MMD^2 between two samples
    from vlae_jax import GaussianKernel, InverseMultiquadricKernel
    from vlae_jax import VLAE                     # the ladder model

The MMD library lives in ``vlae_jax.discrepancy`` (named so that the module and
the ``mmd`` function do not shadow each other).
"""

from vlae_jax.discrepancy import (
    ESTIMATORS,
    KERNELS,
    GaussianKernel,
    InverseMultiquadricKernel,
    MedianHeuristicGaussian,
    ReferenceKernel,
    SquaredDistanceKernel,
    SumKernel,
    gram_matrix,
    mmd,
    pairwise_squared_distances,
    sum_kernels,
)

__version__ = "0.1.0"
