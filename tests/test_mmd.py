"""vlae_jax.mmd against independent NumPy references and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlae_jax import (GaussianKernel, InverseMultiquadricKernel,
                      MedianHeuristicGaussian, ReferenceKernel, mmd,
                      sum_kernels)

IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


# NumPy double-loop references, float64, written from the formulas.
def np_reference_kernel(a, b):
  return np.exp(-np.mean((a - b) ** 2) / a.shape[0])


def np_gaussian_kernel(bandwidth):
  return lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * bandwidth**2))


def np_imq_kernel(a, b, prior_std=1.0):
  d = a.shape[0]
  dist = np.sum((a - b) ** 2)
  return sum(2 * d * prior_std**2 * s / (2 * d * prior_std**2 * s + dist)
             for s in IMQ_SCALES)


def np_mmd(x, y, k, estimator):
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  n, m = len(x), len(y)
  if estimator == "linear":
    p = min(n, m) // 2
    total = 0.0
    for i in range(p):
      x1, x2, y1, y2 = x[2 * i], x[2 * i + 1], y[2 * i], y[2 * i + 1]
      total += k(x1, x2) + k(y1, y2) - k(x1, y2) - k(x2, y1)
    return total / p
  kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n)
            if estimator == "biased" or i != j)
  kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m)
            if estimator == "biased" or i != j)
  kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m))
  if estimator == "biased":
    return kxx / n**2 + kyy / m**2 - 2 * kxy / (n * m)
  return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (n * m)


def np_median_bandwidth(x, y):
  pooled = np.concatenate([x, y]).astype(np.float64)
  d = [np.sum((pooled[i] - pooled[j]) ** 2)
       for i in range(len(pooled)) for j in range(i + 1, len(pooled))]
  return np.sqrt(np.median(d) / 2)


def samples(seed, n=23, m=17, d=3, shift=0.7):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (rng.normal(size=(m, d)) * 1.3 + shift).astype(np.float32)
  return x, y


@pytest.mark.parametrize("estimator", ["biased", "unbiased", "linear"])
@pytest.mark.parametrize("kernel_name", ["reference", "gaussian", "imq",
                                         "median", "sum", "custom"])
def test_matches_numpy_double_loop(kernel_name, estimator):
  x, y = samples(0)
  kernels = {
      "reference": (ReferenceKernel(), np_reference_kernel),
      "gaussian": (GaussianKernel(0.8), np_gaussian_kernel(0.8)),
      "imq": (InverseMultiquadricKernel(), np_imq_kernel),
      "median": (MedianHeuristicGaussian(),
                 np_gaussian_kernel(np_median_bandwidth(x, y))),
      "sum": (sum_kernels(GaussianKernel(0.5), GaussianKernel(2.0)),
              lambda a, b: np_gaussian_kernel(0.5)(a, b)
              + np_gaussian_kernel(2.0)(a, b)),
      # A user's own pair function: takes the generic vmap(vmap(k)) path.
      "custom": (lambda a, b: jnp.exp(-jnp.sum(jnp.abs(a - b))),
                 lambda a, b: np.exp(-np.sum(np.abs(a - b)))),
  }
  ours, reference = kernels[kernel_name]
  expected = np_mmd(x, y, reference, estimator)
  got = mmd(jnp.asarray(x), jnp.asarray(y), kernel=ours, estimator=estimator)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,np_kernel", [("reference", np_reference_kernel),
                                            ("imq", np_imq_kernel)])
def test_kernel_names_resolve_to_the_shipped_kernels(name, np_kernel):
  x, y = samples(1)
  np.testing.assert_allclose(
      float(mmd(x, y, kernel=name)), np_mmd(x, y, np_kernel, "biased"),
      rtol=1e-5)


def test_pair_kernels_are_plain_functions_of_two_vectors():
  a, b = jnp.array([0.0, 1.0]), jnp.array([1.0, 3.0])
  np.testing.assert_allclose(float(ReferenceKernel()(a, b)),
                             np.exp(-5.0 / 4.0), rtol=1e-6)
  np.testing.assert_allclose(float(GaussianKernel(2.0)(a, b)),
                             np.exp(-5.0 / 8.0), rtol=1e-6)


def test_biased_mmd_of_a_sample_with_itself_is_zero():
  x, _ = samples(2)
  for kernel in ["reference", "imq", "gaussian_median"]:
    assert abs(float(mmd(x, x, kernel=kernel))) < 1e-6


def test_symmetric_and_permutation_invariant():
  x, y = samples(3)
  base = float(mmd(x, y, estimator="unbiased"))
  np.testing.assert_allclose(float(mmd(y, x, estimator="unbiased")), base,
                             rtol=1e-5)
  rng = np.random.default_rng(0)
  np.testing.assert_allclose(
      float(mmd(x[rng.permutation(len(x))], y[rng.permutation(len(y))],
                estimator="unbiased")), base, rtol=1e-5)


def test_grows_as_the_mean_shifts():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(200, 2)).astype(np.float32)
  y = rng.normal(size=(200, 2)).astype(np.float32)
  values = [float(mmd(x, y + shift)) for shift in (0.0, 0.5, 1.0, 2.0, 4.0)]
  assert all(b > a for a, b in zip(values, values[1:])), values


def population_mmd2_gaussians(mu_p, s_p, mu_q, s_q, bandwidth):
  """Closed-form MMD^2 between N(mu_p, s_p^2 I) and N(mu_q, s_q^2 I).

  For W ~ N(m, v I) in d dims, E exp(-||W||^2 / (2 h^2)) =
  (h^2 / (h^2 + v))^(d/2) exp(-||m||^2 / (2 (h^2 + v))); apply it to X - X'
  for the three pairs (p, p), (q, q), (p, q).
  """
  d = len(mu_p)
  h2 = bandwidth**2

  def expected_kernel(mean_diff, variance):
    return ((h2 / (h2 + variance)) ** (d / 2)
            * np.exp(-np.sum(mean_diff**2) / (2 * (h2 + variance))))

  return (expected_kernel(np.zeros(d), 2 * s_p**2)
          + expected_kernel(np.zeros(d), 2 * s_q**2)
          - 2 * expected_kernel(mu_p - mu_q, s_p**2 + s_q**2))


def test_unbiased_estimator_matches_the_population_value():
  d, n, m, draws, bandwidth = 2, 8, 12, 4000, 1.0
  mu_q, s_q = np.array([0.5, -0.25]), 1.5
  truth = population_mmd2_gaussians(np.zeros(d), 1.0, mu_q, s_q, bandwidth)
  kx, ky = jax.random.split(jax.random.PRNGKey(0))
  xs = jax.random.normal(kx, (draws, n, d))
  ys = jax.random.normal(ky, (draws, m, d)) * s_q + mu_q
  kernel = GaussianKernel(bandwidth)

  def estimates(estimator):
    fn = jax.vmap(lambda a, b: mmd(a, b, kernel=kernel, estimator=estimator))
    return np.asarray(jax.jit(fn)(xs, ys), np.float64)

  unbiased = estimates("unbiased")
  stderr = unbiased.std() / np.sqrt(draws)
  assert abs(unbiased.mean() - truth) < 4 * stderr, (unbiased.mean(), truth)
  # The test has power: the V-statistic's bias is many standard errors here.
  biased = estimates("biased")
  assert abs(biased.mean() - truth) > 10 * biased.std() / np.sqrt(draws)
  linear = estimates("linear")
  assert abs(linear.mean() - truth) < 4 * linear.std() / np.sqrt(draws)


def test_jit_equals_eager_and_vmaps_over_rungs():
  x, y = samples(5, n=32, m=32)
  eager = mmd(x, y, kernel="imq", estimator="unbiased")
  jitted = jax.jit(lambda a, b: mmd(a, b, kernel="imq",
                                    estimator="unbiased"))(x, y)
  np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-5)
  rungs_x = jnp.stack([x, 2 * x, x + 1])
  rungs_y = jnp.stack([y, y, y])
  per_rung = jax.vmap(mmd)(rungs_x, rungs_y)
  for r in range(3):
    np.testing.assert_allclose(float(per_rung[r]),
                               float(mmd(rungs_x[r], rungs_y[r])), rtol=1e-5)


@pytest.mark.parametrize("kernel", ["reference", "imq", "gaussian_median"])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_gradient_is_finite_at_identical_samples(kernel, estimator):
  x, _ = samples(6)
  grads = jax.grad(lambda a: mmd(a, jnp.asarray(x), kernel=kernel,
                                 estimator=estimator))(jnp.asarray(x))
  assert np.all(np.isfinite(grads))
  grads = jax.grad(lambda a: mmd(a, a, kernel=kernel,
                                 estimator=estimator))(jnp.asarray(x))
  assert np.all(np.isfinite(grads))


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("block_size", [1, 7, 16, 100])
def test_blockwise_equals_dense(estimator, block_size):
  x, y = samples(7, n=41, m=29)
  dense = mmd(x, y, kernel="imq", estimator=estimator)
  blocked = mmd(x, y, kernel="imq", estimator=estimator, block_size=block_size)
  np.testing.assert_allclose(float(blocked), float(dense), rtol=1e-5)
  grad_dense = jax.grad(lambda a: mmd(a, y, estimator=estimator))(x)
  grad_blocked = jax.grad(lambda a: mmd(a, y, estimator=estimator,
                                        block_size=block_size))(x)
  np.testing.assert_allclose(grad_blocked, grad_dense, rtol=1e-4, atol=1e-7)


def test_auto_blocking_matches_dense_on_large_samples():
  rng = np.random.default_rng(9)
  x = rng.normal(size=(2500, 3)).astype(np.float32)
  y = rng.normal(size=(2100, 3)).astype(np.float32) + 0.2
  for estimator in ("biased", "unbiased"):
    np.testing.assert_allclose(
        float(mmd(x, y, estimator=estimator)),
        float(mmd(x, y, estimator=estimator, block_size=None)), rtol=1e-4)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_blockwise_memory_stays_proportional_to_the_block(estimator):
  # A whole test split: 65,536 codes against 65,536 prior samples. Compiled
  # only (running it takes ~15 s): n * n would overflow int32 counts, and the
  # dense Gram matrix alone would take n * n * 4 bytes = 16 GiB.
  n, d, block = 65536, 10, 1024
  x = jax.ShapeDtypeStruct((n, d), jnp.float32)
  fn = jax.jit(lambda a, b: mmd(a, b, estimator=estimator))  # auto blocks
  compiled = fn.lower(x, x).compile()
  memory = compiled.memory_analysis()
  if memory is None:
    pytest.skip("this backend reports no memory analysis")
  assert memory.temp_size_in_bytes < 2 * block * n * 4


def test_bfloat16_inputs_accumulate_in_float32():
  x, y = samples(8, n=64, m=64)
  out = mmd(jnp.asarray(x, jnp.bfloat16), jnp.asarray(y, jnp.bfloat16))
  assert out.dtype == jnp.float32
  expected = np_mmd(np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32),
                    np.asarray(jnp.asarray(y, jnp.bfloat16), np.float32),
                    np_reference_kernel, "biased")
  np.testing.assert_allclose(float(out), expected, rtol=1e-4)


@pytest.mark.parametrize("x_shape,y_shape,kwargs,match", [
    ((10,), (10, 2), {}, r"shape \[num_samples, dim\], got shape \(10,\)"),
    ((4, 2, 1), (4, 2), {}, r"got shape \(4, 2, 1\)"),
    ((10, 2), (10, 3), {}, r"share their feature size.*\(10, 2\).*\(10, 3\)"),
    ((1, 2), (10, 2), {"estimator": "unbiased"}, "at least 2 rows"),
    ((10, 2), (10, 2), {"estimator": "quadratic"}, "unknown estimator 'quadratic'"),
    ((10, 2), (10, 2), {"kernel": "laplace"}, "unknown kernel 'laplace'"),
    ((10, 2), (10, 2), {"block_size": 0}, "block_size must be a positive int"),
    ((10, 2), (10, 2), {"block_size": "big"}, "block_size must be a positive"),
])
def test_bad_input_raises_a_clear_error(x_shape, y_shape, kwargs, match):
  with pytest.raises(ValueError, match=match):
    mmd(jnp.ones(x_shape), jnp.ones(y_shape), **kwargs)


def test_integer_input_is_refused_at_trace_time():
  with pytest.raises(ValueError, match="floating-point x, got dtype int32"):
    jax.jit(mmd)(jnp.ones((4, 2), jnp.int32), jnp.ones((4, 2)))


def test_the_readme_example_runs():
  import os
  import re
  readme = open(os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), "README.md")).read()
  section = readme.split("## `mmd` in your own JAX code")[1]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  namespace = {}
  exec(code, namespace)  # pylint: disable=exec-used
  assert float(namespace["loss"]) > 0
  assert namespace["grads"].shape == (512, 8)
