"""Helpers shared by the benchmark scripts (not part of the library)."""

import json
import statistics
import time


def write_json(path, results):
  """Writes a bench script's results atomically (making the folder) and
  says where."""
  from vlae_jax import files  # pylint: disable=g-import-not-at-top
  files.write_atomically(path, json.dumps(results, indent=1))
  print(f"wrote {path}")


def matmul_peak(dtype="float32", size=2048, seconds=1.0, windows=3):
  """Median FLOP/s of a jitted dense ``size x size`` matmul in this process,
  over ``windows`` timed windows of about ``seconds`` each: the denominator
  of MFU, measured beside the thing it divides (the machine's rate drifts)."""
  import jax
  import jax.numpy as jnp
  a = jnp.ones((size, size), dtype)
  fn = jax.jit(lambda x: x @ x)
  fn(a).block_until_ready()
  start = time.perf_counter()
  fn(a).block_until_ready()
  repeats = max(1, int(seconds / max(time.perf_counter() - start, 1e-6)))
  rates = []
  for _ in range(windows):
    start = time.perf_counter()
    for _ in range(repeats):
      out = fn(a)
    out.block_until_ready()
    rates.append(2.0 * size**3 * repeats / (time.perf_counter() - start))
  return statistics.median(rates)


def compile_with_cost(jitted, *args):
  """``(compiled, seconds to compile, XLA's FLOP count or nan)``."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  seconds = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return compiled, seconds, float((cost or {}).get("flops", float("nan")))


def xla_step_flops(config, shape, state, batch):
  """XLA's FLOP count of the train step computed with XLA's own matrix
  products (``model.matmul="xla"``): XLA's cost analysis cannot see inside
  the BLAS custom call, so the step as it runs would count short. The same
  function, parameters and shapes; compiled once more, for the count only."""
  import functools
  import jax
  from vlae_jax import experiment, train
  variant = config.copy_and_resolve_references()
  variant.model.matmul = "xla"
  model = experiment.create_model(variant, shape)
  step = jax.jit(functools.partial(train.train_step, model=model,
                                   config=variant))
  cost = step.lower(state, batch).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", float("nan")))
