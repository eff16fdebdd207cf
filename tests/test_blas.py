"""vlae_jax.blas: BLAS products inside jitted code, and their fallbacks."""

import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, tiny_config
from vlae_jax import blas, configuration, experiment, objective, train
from vlae_jax import workdir as workdirs

pytestmark = pytest.mark.skipif(
    not blas.available(), reason=f"BLAS products unavailable: "
    f"{blas.unavailable_reason()}")


def _reference(a, b, transpose_a, transpose_b):
  a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return (a64.T if transpose_a else a64) @ (b64.T if transpose_b else b64)


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("m,k,n", [
    (5, 7, 3),        # one block
    (301, 200, 47),   # split over rows, a ragged last block
    (33, 180, 517),   # split over columns
])
def test_matmul_matches_float64(m, k, n, transpose_a, transpose_b):
  rng = np.random.default_rng(m + k + n)
  a = rng.standard_normal((k, m) if transpose_a else (m, k), np.float32)
  b = rng.standard_normal((n, k) if transpose_b else (k, n), np.float32)
  got = jax.jit(lambda x, y: blas.matmul(x, y, transpose_a, transpose_b))(a, b)
  assert got.shape == (m, n) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, _reference(a, b, transpose_a, transpose_b),
                             rtol=1e-4, atol=1e-4 * np.sqrt(k))


@pytest.mark.parametrize("by_shape", [False, True])
@pytest.mark.parametrize("transpose_a,transpose_b", [(False, False),
                                                     (True, False),
                                                     (False, True),
                                                     (True, True)])
def test_gradients_equal_xla_products(transpose_a, transpose_b, by_shape):
  rng = np.random.default_rng(0)
  # inner dimensions on both sides of MIN_BLAS_INNER in the gradients
  m, k, n = 150, 260, 90
  a = rng.standard_normal((k, m) if transpose_a else (m, k), np.float32)
  b = rng.standard_normal((n, k) if transpose_b else (k, n), np.float32)
  op = lambda x, t: x.T if t else x
  loss = lambda f: lambda x, y: jnp.sum(jnp.sin(f(x, y)))
  ours = jax.jit(jax.grad(loss(lambda x, y: blas.matmul(
      x, y, transpose_a, transpose_b, by_shape)), argnums=(0, 1)))(a, b)
  want = jax.grad(loss(lambda x, y: op(x, transpose_a) @ op(y, transpose_b)),
                  argnums=(0, 1))(a, b)
  for got, expected in zip(ours, want):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_by_shape_sends_short_inner_products_to_xla():
  def targets(k):
    return str(jax.make_jaxpr(lambda x, y: blas.matmul(
        x, y, False, False, True))(jnp.ones((4, k)), jnp.ones((k, 3))))
  assert "vlae_sgemm" not in targets(blas.MIN_BLAS_INNER - 1)
  assert "vlae_sgemm" in targets(blas.MIN_BLAS_INNER)


def test_empty_and_batched_products():
  zeros = jax.jit(blas.matmul)(jnp.ones((4, 0)), jnp.ones((0, 3)))
  np.testing.assert_array_equal(zeros, np.zeros((4, 3)))
  assert jax.jit(blas.matmul)(jnp.ones((0, 5)), jnp.ones((5, 3))).shape == (0, 3)
  rng = np.random.default_rng(1)
  a = rng.standard_normal((3, 6, 5), np.float32)
  b = rng.standard_normal((3, 5, 4), np.float32)
  np.testing.assert_allclose(jax.vmap(blas.matmul)(a, b), a @ b, rtol=1e-5,
                             atol=1e-5)


def test_bad_operands_get_one_clear_error():
  with pytest.raises(ValueError, match=r"2-D operands, got shapes \(2, 3, 4\)"):
    blas.matmul(jnp.ones((2, 3, 4)), jnp.ones((4, 5)))
  with pytest.raises(ValueError, match="float32 operands, got bfloat16"):
    blas.matmul(jnp.ones((2, 4), jnp.bfloat16), jnp.ones((4, 5)))
  with pytest.raises(ValueError, match="inner dimensions 4 and 6"):
    blas.matmul(jnp.ones((2, 4)), jnp.ones((5, 6)), False, True)


def test_repeatable_bit_for_bit_and_concurrent_products():
  """Two independent products XLA may run at once on its two threads, each
  split over the same pool: no deadlock, right values, the same bits twice."""
  rng = np.random.default_rng(2)
  a, b, c, d = (rng.standard_normal(s, np.float32) for s in
                ((400, 300), (300, 500), (600, 256), (256, 350)))
  both = jax.jit(lambda a, b, c, d: (blas.matmul(a, b), blas.matmul(c, d)))
  first, second = both(a, b, c, d), both(a, b, c, d)
  for x, y in zip(first, second):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_allclose(first[0], _reference(a, b, False, False),
                             rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(first[1], _reference(c, d, False, False),
                             rtol=1e-4, atol=1e-3)


def test_dense_with_blas_dot_general_is_nn_dense():
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 3, 200))
  ours = nn.Dense(130, dot_general=blas.dot_general)
  plain = nn.Dense(130)
  variables = plain.init(jax.random.PRNGKey(1), x)
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         ours.init(jax.random.PRNGKey(1), x), variables)
  np.testing.assert_allclose(ours.apply(variables, x),
                             plain.apply(variables, x), rtol=1e-5, atol=1e-4)
  loss = lambda m: lambda v, x: jnp.sum(jnp.tanh(m.apply(v, x)))
  got = jax.grad(loss(ours), argnums=(0, 1))(variables, x)
  want = jax.grad(loss(plain), argnums=(0, 1))(variables, x)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
      got, want)
  # bfloat16 and batched contractions stay with XLA
  assert blas.dot_general(jnp.ones((2, 4), jnp.bfloat16),
                          jnp.ones((4, 3), jnp.bfloat16),
                          (((1,), (0,)), ((), ()))).dtype == jnp.bfloat16


def _ffi_targets(config):
  model = experiment.create_model(config)
  state = jax.eval_shape(lambda: experiment.create_train_state(config, model))
  batch = {"image": jax.ShapeDtypeStruct((config.batch_size, 8, 8, 1),
                                         jnp.float32),
           "label": jax.ShapeDtypeStruct((config.batch_size,), jnp.int32)}
  text = str(jax.make_jaxpr(lambda s, b: train.train_step(
      s, b, model=model, config=config))(state, batch))
  return text.count("target_name=vlae_sgemm")


def test_model_matmul_setting_decides_who_multiplies():
  config = tiny_config(dataset="digits", batch_size=200)
  config.model.rung_widths = ((8, 128), (256,), (256,))
  config.model.matmul = "auto"
  assert _ffi_targets(config) > 0  # one CPU device here
  config.model.matmul = "xla"
  assert _ffi_targets(config) == 0
  config.model.matmul = "gpu"
  with pytest.raises(configuration.ConfigError, match="model.matmul.*'gpu'"):
    configuration.validate(config)


def test_model_gradients_with_blas_repeat_bit_for_bit_and_match_xla():
  """The model's loss and gradients with BLAS products: the same bits twice,
  and equal to those with XLA's products."""
  config = tiny_config(dataset="digits", batch_size=160)
  config.model.rung_widths = ((8, 128), (256,), (256,))
  # Without batch norm: at initialisation some pre-norm features vary little
  # over these random images, and normalising divides float32 rounding
  # (whoever multiplies) by that small spread, up to 1% of a gradient and a
  # different amount on each CPU model. Without it the two agree to 1e-7.
  config.model.norm = "none"
  batch = {"image": jax.random.uniform(jax.random.PRNGKey(3), (160, 8, 8, 1)),
           "label": jnp.zeros((160,), jnp.int32)}
  key = jax.random.PRNGKey(5)
  results = {}
  for matmul in ("auto", "xla"):
    config.model.matmul = matmul
    model = experiment.create_model(config)
    state = experiment.create_train_state(config, model)
    grad = jax.jit(jax.value_and_grad(
        lambda p, m=model: objective.loss_fn(p, state.batch_stats, batch, key,
                                         model=m, config=config)[0]))
    results[matmul] = [grad(state.params) for _ in range(2)]
  assert _ffi_targets(config) == 0 and config.model.matmul == "xla"
  jax.tree_util.tree_map(np.testing.assert_array_equal, *results["auto"])
  (loss, grads), (xla_loss, xla_grads) = results["auto"][0], results["xla"][0]
  np.testing.assert_allclose(loss, xla_loss, rtol=1e-5)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
      grads, xla_grads)


def test_changing_who_multiplies_resumes_a_run():
  """model.matmul changes speed, not the model: a saved run (also one saved
  before the field existed) resumes under any value; a model change does
  not pass."""
  new = tiny_config(dataset="digits").to_dict()
  saved = tiny_config(dataset="digits").to_dict()
  saved["model"]["matmul"] = "xla"
  assert workdirs.config_differences(saved, new) == []
  del saved["model"]["matmul"]
  assert workdirs.config_differences(saved, new) == []
  saved["model"]["latent_dims"] = (3, 2, 2)
  assert workdirs.config_differences(saved, new) == [
      "model.latent_dims: (3, 2, 2) -> (2, 2, 2)"]


def test_a_gpu_backend_is_refused_in_one_line(monkeypatch):
  """With the default backend reported as a GPU, BLAS is unavailable with the
  reason, model.matmul=blas and an explicit gemm_blas form are refused in
  one line, and "auto" puts no BLAS call into the program."""
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert not blas.available()
  assert blas.unavailable_reason() == (
      "the default backend is gpu, and BLAS custom calls run on the CPU only")
  assert not blas.resolve("auto") and not blas.usable()
  with pytest.raises(RuntimeError, match="model.matmul='blas' cannot run here: "
                     "the default backend is gpu"):
    blas.resolve("blas")
  for field, value in [("matmul", "blas"), ("downsample", "gemm_blas"),
                       ("upsample", "gemm_blas")]:
    bad = tiny_config(dataset="digits")
    bad.model[field] = value
    with pytest.raises(configuration.ConfigError) as error:
      configuration.validate(bad)
    assert str(error.value) == (
        f"--config.model.{field}={value} cannot run here: the default backend "
        "is gpu, and BLAS custom calls run on the CPU only; use auto or "
        f"{'xla' if field == 'matmul' else 'gemm'}.")
  assert blas.describe("auto") == "XLA (gpu backend)"


def _run(code, env_extra, timeout=240):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **env_extra)
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=timeout, check=False)


_PROBE = """
  import jax.numpy as jnp, numpy as np
  from vlae_jax import blas
  print("available", blas.available(), blas.unavailable_reason())
  if blas.available():
    a = np.arange(200 * 300, dtype=np.float32).reshape(200, 300) / 1e4
    np.testing.assert_allclose(blas.matmul(a, a.T), a @ a.T, rtol=1e-4)
"""


def test_without_compiler_or_when_turned_off_xla_multiplies(tmp_path):
  """No C++ compiler on PATH and an empty cache, or VLAE_JAX_BLAS=0: BLAS is
  unavailable with the reason, and the model trains on XLA's products."""
  for extra, reason in [
      ({"PATH": str(tmp_path / "empty"), "CXX": "",
        "VLAE_JAX_NATIVE_CACHE": str(tmp_path / "cache")}, "no C++ compiler"),
      ({"VLAE_JAX_BLAS": "0"}, "turned off by VLAE_JAX_BLAS=0")]:
    result = _run(_PROBE + """
  from conftest import tiny_config
  from vlae_jax import configuration, experiment, objective, train
  config = tiny_config(dataset="digits")
  config.model.matmul = "blas"
  try:
    configuration.validate(config)
  except configuration.ConfigError as error:
    print("refused:", error)
""", dict(extra, PYTHONPATH=os.path.join(ROOT, "tests")))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"available False {reason}" in result.stdout
    assert "refused: --config.model.matmul=blas cannot run here" in result.stdout


def test_cache_survives_concurrent_builds_and_a_damaged_library(tmp_path):
  """Two processes building into one empty cache both work and leave one
  library; a truncated, then a byte-flipped library is rebuilt, not loaded."""
  env = {"VLAE_JAX_NATIVE_CACHE": str(tmp_path)}
  script = textwrap.dedent(_PROBE)
  procs = [subprocess.Popen(
      [sys.executable, "-c", script], cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS="cpu", **env),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  for proc in procs:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "available True None" in out
  libraries = sorted(tmp_path.glob("*.so"))
  assert len(libraries) == 1, sorted(tmp_path.iterdir())
  assert not list(tmp_path.glob("*.partial"))
  library = libraries[0]
  built = library.read_bytes()
  for damage in ("truncate", "flip"):
    if damage == "truncate":
      library.write_bytes(built[:len(built) // 3])
    else:
      flipped = bytearray(built)
      flipped[len(flipped) // 2] ^= 0xFF
      library.write_bytes(bytes(flipped))
    result = _run(_PROBE, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "available True None" in result.stdout
    assert library.read_bytes() == built  # rebuilt to the same bytes
