"""Maximum mean discrepancy (MMD^2) between two samples, for JAX.

Kernels are written for one pair of vectors, ``k(a, b) -> scalar`` with ``a``
and ``b`` of shape ``[d]``, and lifted to Gram matrices with ``jax.vmap``; any
such function of your own works::

    from vlae_jax import mmd
    value = mmd(x, y)                                   # reference kernel, V-statistic
    value = mmd(x, y, kernel=lambda a, b: jnp.exp(-jnp.sum(jnp.abs(a - b))))
    value = mmd(x, y, kernel="imq", estimator="unbiased", block_size=4096)

The shipped kernels depend on the pair only through the squared distance
``||a - b||^2``. For them the Gram matrix is computed with one matrix product,
``||a||^2 + ||b||^2 - 2 a.b`` (on centred inputs, at full float32 precision,
clamped at 0), which is what makes the pairwise API as fast as the hand-written
expansion; a user's own kernel takes the generic ``vmap(vmap(k))`` path. No
square root of a distance is ever taken, so gradients stay finite at ``x == y``.

Estimators (Gretton et al. 2012, JMLR 13):
- ``"biased"`` (default, the reference code's): the V-statistic
  ``mean K(x, x) + mean K(y, y) - 2 mean K(x, y)``, diagonals included; >= 0 for
  a characteristic kernel, and exactly 0 when ``x == y``.
- ``"unbiased"``: the U-statistic, diagonals dropped and divided by n(n-1);
  unbiased, may be negative (never take its square root).
- ``"linear"``: the linear-time statistic (Lemma 14) over disjoint pairs
  ``(x_{2i}, x_{2i+1}, y_{2i}, y_{2i+1})``, using the first 2 * floor(min(n, m) / 2)
  rows of each sample; unbiased, O(n) time and memory, higher variance.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp

PairKernel = Callable[[jax.Array, jax.Array], jax.Array]
KernelLike = Union[str, PairKernel, "SquaredDistanceKernel", "MedianHeuristicGaussian"]

ESTIMATORS = ("biased", "unbiased", "linear")
# block_size="auto": samples above AUTO_BLOCK_THRESHOLD rows are summed in
# tiles of AUTO_BLOCK_ROWS rows. Dense Gram matrices of that size are bound by
# memory traffic; tiles that stay in cache are 2-8x faster (bench/mmd_scaling.py).
AUTO_BLOCK_THRESHOLD = 2048
AUTO_BLOCK_ROWS = 1024


# ----------------------------------------------------------------------------
# Kernels.


class SquaredDistanceKernel:
  """A kernel that depends on a pair only through ``||a - b||^2``.

  Subclasses implement ``profile(squared_distance, dim)``; the instance is also
  an ordinary pair kernel ``k(a, b)``. Calling ``gram(x, y)`` evaluates the whole
  ``[n, m]`` Gram matrix through one matrix product.
  """

  def profile(self, squared_distance: jax.Array, dim: int) -> jax.Array:
    raise NotImplementedError

  def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
    return self.profile(jnp.sum(jnp.square(a - b)), a.shape[-1])

  def gram(self, x: jax.Array, y: jax.Array) -> jax.Array:
    """Gram matrix ``[n, m]`` of ``x [n, d]`` against ``y [m, d]``."""
    return self.profile(pairwise_squared_distances(x, y), x.shape[-1])


@dataclasses.dataclass(frozen=True)
class ReferenceKernel(SquaredDistanceKernel):
  """``exp(-||a - b||^2 / d^2)``, d the latent size: the VLAE/MMD-VAE reference.

  Equivalently ``exp(-mean_j (a_j - b_j)^2 / d)``; a Gaussian with 2 sigma^2 = d^2.
  """

  def profile(self, squared_distance, dim):
    return jnp.exp(-squared_distance / float(dim * dim))


@dataclasses.dataclass(frozen=True)
class GaussianKernel(SquaredDistanceKernel):
  """``exp(-||a - b||^2 / (2 bandwidth^2))`` with an explicit bandwidth > 0."""

  bandwidth: float = 1.0

  def __post_init__(self):
    if not isinstance(self.bandwidth, jax.Array) and not self.bandwidth > 0:
      raise ValueError(
          f"GaussianKernel bandwidth must be > 0, got {self.bandwidth!r}; "
          "pass a positive length scale.")

  def profile(self, squared_distance, dim):
    return jnp.exp(-squared_distance / (2.0 * jnp.square(self.bandwidth)))


@dataclasses.dataclass(frozen=True)
class InverseMultiquadricKernel(SquaredDistanceKernel):
  """``sum_s C_s / (C_s + ||a - b||^2)``, ``C_s = 2 d sigma_prior^2 s`` (WAE).

  Heavy-tailed, so it keeps a gradient for far-apart codes; summing over scales
  removes the need to pick one.
  """

  scales: Sequence[float] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
  prior_std: float = 1.0

  def __post_init__(self):
    object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
    if not self.scales or min(self.scales) <= 0 or not self.prior_std > 0:
      raise ValueError(
          f"InverseMultiquadricKernel needs positive scales and prior_std, got "
          f"scales={self.scales}, prior_std={self.prior_std}.")

  def profile(self, squared_distance, dim):
    total = jnp.zeros_like(squared_distance)
    for scale in self.scales:
      c = 2.0 * dim * self.prior_std**2 * scale
      total = total + c / (c + squared_distance)
    return total


@dataclasses.dataclass(frozen=True)
class SumKernel(SquaredDistanceKernel):
  """The sum of several squared-distance kernels (multi-scale MMD)."""

  kernels: Sequence[SquaredDistanceKernel] = ()

  def __post_init__(self):
    object.__setattr__(self, "kernels", tuple(self.kernels))
    if not self.kernels:
      raise ValueError("SumKernel needs at least one kernel.")

  def profile(self, squared_distance, dim):
    return sum(k.profile(squared_distance, dim) for k in self.kernels)


@dataclasses.dataclass(frozen=True)
class MedianHeuristicGaussian:
  """Gaussian kernel whose bandwidth is set from the data being compared.

  ``bandwidth^2 = median(||a - b||^2) / 2`` over the pooled sample (at most
  ``max_points`` rows of it, so it stays cheap on large samples), under
  ``stop_gradient``: the bandwidth is a choice, not something to optimise.
  """

  max_points: int = 1024

  def bind(self, x: jax.Array, y: jax.Array) -> GaussianKernel:
    half = max(1, self.max_points // 2)
    pooled = jnp.concatenate([x[:half], y[:half]], axis=0)
    pooled = jax.lax.stop_gradient(pooled)
    squared = pairwise_squared_distances(pooled, pooled)
    rows, cols = jnp.triu_indices(pooled.shape[0], k=1)
    median = jnp.median(squared[rows, cols])
    # A degenerate sample (all rows equal) would give bandwidth 0.
    bandwidth = jnp.sqrt(jnp.maximum(median, 1e-12) / 2.0)
    return GaussianKernel(bandwidth=bandwidth)


def sum_kernels(*kernels: SquaredDistanceKernel) -> SumKernel:
  """Sum of squared-distance kernels, e.g. Gaussians at several bandwidths."""
  return SumKernel(kernels=kernels)


KERNELS = {
    "reference": ReferenceKernel,
    "gaussian_median": MedianHeuristicGaussian,
    "imq": InverseMultiquadricKernel,
}


def get_kernel(kernel: KernelLike):
  """Resolves a kernel name (one of ``KERNELS``) or passes a kernel through."""
  if isinstance(kernel, str):
    if kernel not in KERNELS:
      raise ValueError(
          f"unknown kernel {kernel!r}; choose one of {sorted(KERNELS)} or pass a "
          "pair function k(a, b) -> scalar.")
    return KERNELS[kernel]()
  if not callable(kernel) and not hasattr(kernel, "bind"):
    raise ValueError(
        f"kernel must be a name in {sorted(KERNELS)} or a pair function "
        f"k(a, b) -> scalar, got {type(kernel).__name__}.")
  return kernel


# ----------------------------------------------------------------------------
# Gram matrices.


def pairwise_squared_distances(x: jax.Array, y: jax.Array) -> jax.Array:
  """``||x_i - y_j||^2`` as an ``[n, m]`` matrix, via one matrix product.

  Both samples are centred on a common point first (distances are translation
  invariant) so the expansion loses little to cancellation; the product runs at
  full precision (no TF32/bf16 passes on accelerators); the result is clamped
  at 0, since round-off can make it slightly negative.
  """
  centre = jax.lax.stop_gradient(
      0.5 * (jnp.mean(x, axis=0) + jnp.mean(y, axis=0)))
  x = x - centre
  y = y - centre
  cross = jnp.matmul(x, y.T, precision=jax.lax.Precision.HIGHEST)
  squared = (jnp.sum(jnp.square(x), axis=1)[:, None]
             + jnp.sum(jnp.square(y), axis=1)[None, :] - 2.0 * cross)
  return jnp.maximum(squared, 0.0)


def gram_matrix(kernel: PairKernel, x: jax.Array, y: jax.Array) -> jax.Array:
  """``[n, m]`` matrix of ``kernel(x_i, y_j)``.

  A ``SquaredDistanceKernel`` is evaluated through the matrix-product form;
  any other pair function is lifted with ``vmap(vmap(kernel))``.
  """
  if isinstance(kernel, SquaredDistanceKernel):
    return kernel.gram(x, y)
  return jax.vmap(lambda a: jax.vmap(lambda b: kernel(a, b))(y))(x)


def _diagonal_sum(kernel: PairKernel, x: jax.Array) -> jax.Array:
  return jnp.sum(jax.vmap(kernel)(x, x))


def _gram_sum(kernel: PairKernel, x: jax.Array, y: jax.Array,
              block_size: Optional[int]) -> jax.Array:
  """``sum_ij k(x_i, y_j)``, dense or in row blocks of ``block_size``.

  The blockwise form holds one ``[block_size, m]`` tile at a time (also in the
  backward pass, through ``jax.checkpoint``), so memory is O(block_size * m).
  """
  n = x.shape[0]
  if block_size is None or block_size >= n:
    return jnp.sum(gram_matrix(kernel, x, y))
  num_blocks = -(-n // block_size)
  padded = num_blocks * block_size
  x_blocks = jnp.pad(x, ((0, padded - n), (0, 0))).reshape(
      num_blocks, block_size, x.shape[1])
  valid = (jnp.arange(padded) < n).reshape(num_blocks, block_size)

  @jax.checkpoint
  def block_sum(x_block, valid_block):
    tile = gram_matrix(kernel, x_block, y)
    return jnp.sum(jnp.where(valid_block[:, None], tile, 0.0))

  def body(total, inputs):
    return total + block_sum(*inputs), None

  total, _ = jax.lax.scan(body, jnp.zeros((), x.dtype), (x_blocks, valid))
  return total


# ----------------------------------------------------------------------------
# The statistic.


def _validate(x, y, estimator, block_size):
  for name, array in (("x", x), ("y", y)):
    if jnp.ndim(array) != 2:
      raise ValueError(
          f"mmd expects {name} of shape [num_samples, dim], got shape "
          f"{jnp.shape(array)}; reshape it to 2-D (vmap over extra axes).")
    if not jnp.issubdtype(jnp.result_type(array), jnp.floating):
      raise ValueError(
          f"mmd expects floating-point {name}, got dtype "
          f"{jnp.result_type(array)}; cast it with .astype(jnp.float32).")
  if x.shape[1] != y.shape[1]:
    raise ValueError(
        f"mmd samples must share their feature size, got x {x.shape} and "
        f"y {y.shape}.")
  if estimator not in ESTIMATORS:
    raise ValueError(
        f"unknown estimator {estimator!r}; choose one of {list(ESTIMATORS)}.")
  if estimator == "unbiased" and min(x.shape[0], y.shape[0]) < 2:
    raise ValueError(
        f"the unbiased estimator needs at least 2 rows in each sample, got x "
        f"{x.shape} and y {y.shape}; use estimator='biased' or more samples.")
  if estimator == "linear" and min(x.shape[0], y.shape[0]) < 2:
    raise ValueError(
        f"the linear estimator needs at least 2 rows in each sample, got x "
        f"{x.shape} and y {y.shape}.")
  if block_size is not None and block_size != "auto" and (
      isinstance(block_size, bool) or not isinstance(block_size, int)
      or block_size < 1):
    raise ValueError(
        f"block_size must be a positive int, 'auto' or None, got "
        f"{block_size!r}.")


def _linear_time(kernel: PairKernel, x: jax.Array, y: jax.Array) -> jax.Array:
  pairs = min(x.shape[0], y.shape[0]) // 2
  x1, x2 = x[0:2 * pairs:2], x[1:2 * pairs:2]
  y1, y2 = y[0:2 * pairs:2], y[1:2 * pairs:2]
  k = jax.vmap(kernel)
  h = k(x1, x2) + k(y1, y2) - k(x1, y2) - k(x2, y1)
  return jnp.mean(h)


def mmd(x: jax.Array,
        y: jax.Array,
        kernel: KernelLike = "reference",
        estimator: str = "biased",
        block_size: Union[int, str, None] = "auto") -> jax.Array:
  """Squared MMD between the samples ``x`` and ``y``.

  Args:
    x: ``[n, d]`` float array, e.g. posterior codes of one rung.
    y: ``[m, d]`` float array, e.g. prior samples; ``m != n`` is allowed.
    kernel: a name in ``KERNELS`` (``"reference"``: exp(-||a-b||^2/d^2);
      ``"gaussian_median"``; ``"imq"``), a ``SquaredDistanceKernel`` instance, a
      ``MedianHeuristicGaussian``, or any pair function ``k(a, b) -> scalar``.
    estimator: ``"biased"`` (V-statistic), ``"unbiased"`` (U-statistic) or
      ``"linear"`` (linear-time).
    block_size: Gram sums are taken over row tiles of this many rows, in
      memory O(block_size * max(n, m)) instead of O(n * m). ``"auto"``
      (default): dense up to 2048 rows, tiles of 1024 rows above; ``None``:
      always dense.

  Returns:
    Scalar MMD^2 (float32 for bfloat16/float16/float32 inputs). Not
    square-rooted; the unbiased and linear estimates can be negative.

  Raises:
    ValueError: at trace time, for inputs that are not 2-D floating arrays with
      equal feature sizes, an unknown kernel or estimator, or too few rows.
  """
  _validate(x, y, estimator, block_size)
  if block_size == "auto":
    block_size = (AUTO_BLOCK_ROWS if max(x.shape[0], y.shape[0])
                  > AUTO_BLOCK_THRESHOLD else None)
  kernel = get_kernel(kernel)
  accumulate = jnp.promote_types(jnp.result_type(x, y), jnp.float32)
  x = jnp.asarray(x, accumulate)
  y = jnp.asarray(y, accumulate)
  if hasattr(kernel, "bind"):
    kernel = kernel.bind(x, y)
  if estimator == "linear":
    return _linear_time(kernel, x, y)
  n, m = x.shape[0], y.shape[0]
  sum_xx = _gram_sum(kernel, x, x, block_size)
  sum_yy = _gram_sum(kernel, y, y, block_size)
  sum_xy = _gram_sum(kernel, x, y, block_size)
  # Python floats: n * m overflows int32 from 46,341 rows on.
  if estimator == "biased":
    return (sum_xx / float(n * n) + sum_yy / float(m * m)
            - 2.0 * sum_xy / float(n * m))
  sum_xx = sum_xx - _diagonal_sum(kernel, x)
  sum_yy = sum_yy - _diagonal_sum(kernel, y)
  return (sum_xx / float(n * (n - 1)) + sum_yy / float(m * (m - 1))
          - 2.0 * sum_xy / float(n * m))
