"""Every matrix product of a train step: XLA:CPU's GEMM against BLAS's.

    python bench/blas_products.py [--configs mnist,celeba] [--rounds 5]

Traces each config's train step with ``model.matmul="blas"``, collects the
products it sends to ``vlae_jax.blas`` (operand shapes, transpose flags, how
many times per step), then times each product alone, jitted, both ways,
interleaved (XLA, BLAS, XLA, ...) ``--rounds`` times: median ms [min-max],
GFLOP/s, and the time per step each product's choice saves. The float32
matmul peak is measured in the same process. Writes
results/performance/blas_products.json.
"""

import argparse
import collections
import functools
import importlib
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from vlae_jax import runtime  # pylint: disable=g-import-not-at-top
runtime.retain_freed_host_memory()  # as main.py: no per-call page faults

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import matmul_peak, write_json  # pylint: disable=g-import-not-at-top
from vlae_jax import blas, datasets, experiment, train  # pylint: disable=g-import-not-at-top


def _ffi_calls(jaxpr):
  """Yields every ``vlae_sgemm`` equation of a jaxpr and its sub-jaxprs."""
  for eqn in jaxpr.eqns:
    if (eqn.primitive.name == "ffi_call"
        and eqn.params.get("target_name") == blas.TARGET_NAME):
      yield eqn
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (list, tuple)) else (value,)):
        inner = getattr(sub, "jaxpr", None)
        if inner is not None:
          yield from _ffi_calls(getattr(inner, "jaxpr", inner))


def step_products(config, batch_size):
  """``Counter`` of ``(a_shape, b_shape, transpose_a, transpose_b)``."""
  config = config.copy_and_resolve_references()
  config.batch_size = batch_size
  config.model.matmul = "blas"
  shape = datasets.image_shape(config)
  model = experiment.create_model(config, shape)
  state = jax.eval_shape(lambda: experiment.create_train_state(config, model))
  batch = {"image": jax.ShapeDtypeStruct((batch_size,) + shape, jnp.float32),
           "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}
  jaxpr = jax.make_jaxpr(functools.partial(
      train.train_step, model=model, config=config))(state, batch)
  found = collections.Counter()
  for eqn in _ffi_calls(jaxpr.jaxpr):
    a, b = (v.aval.shape for v in eqn.invars)
    flags = dict(eqn.params["attributes"])
    found[(tuple(a), tuple(b), bool(flags["transpose_a"]),
           bool(flags["transpose_b"]))] += 1
  return found


def _time(fn, args, repeats):
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / repeats


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="mnist,celeba")
  parser.add_argument("--batch", type=int, default=100)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default="results/performance/blas_products.json")
  args = parser.parse_args()
  if not blas.available():
    sys.exit(f"BLAS products cannot run here: {blas.unavailable_reason()}")
  peak = matmul_peak("float32")
  results = {"device": jax.devices()[0].device_kind, "jax": jax.__version__,
             "matmul_peak": peak, "configs": []}
  print(f"float32 2048^3 matmul peak (XLA): {peak / 1e9:.0f} GFLOP/s")
  rng = np.random.default_rng(0)
  for name in args.configs.split(","):
    config = importlib.import_module(f"configs.{name}").get_config()
    products = step_products(config, args.batch)
    rows = []
    print(f"{name}: {sum(products.values())} BLAS products per step, "
          f"{len(products)} shapes")
    print("  op(a) x op(b)                     calls  XLA ms          "
          "BLAS ms         GFLOP/s XLA/BLAS  saves ms/step")
    for (a_shape, b_shape, ta, tb), calls in sorted(
        products.items(), key=lambda kv: -np.prod(kv[0][0]) * kv[0][1][-1]):
      a = jnp.asarray(rng.standard_normal(a_shape, np.float32))
      b = jnp.asarray(rng.standard_normal(b_shape, np.float32))
      m, k = (a_shape[1], a_shape[0]) if ta else a_shape
      n = b_shape[0] if tb else b_shape[1]
      xla = jax.jit(lambda x, y, ta=ta, tb=tb: jnp.dot(
          x.T if ta else x, y.T if tb else y))
      ours = jax.jit(lambda x, y, ta=ta, tb=tb: blas.matmul(x, y, ta, tb))
      np.testing.assert_allclose(np.asarray(ours(a, b)), np.asarray(xla(a, b)),
                                 rtol=2e-3, atol=2e-3 * np.sqrt(k))
      times = {"xla": [], "blas": []}
      for _ in range(args.rounds):
        times["xla"].append(_time(xla, (a, b), args.repeats))
        times["blas"].append(_time(ours, (a, b), args.repeats))
      med = {key: statistics.median(value) for key, value in times.items()}
      flop = 2.0 * m * n * k
      row = {"a": list(a_shape), "b": list(b_shape), "transpose_a": ta,
             "transpose_b": tb, "m": m, "n": n, "k": k, "calls": calls,
             "xla_seconds": times["xla"], "blas_seconds": times["blas"],
             "xla_over_blas": med["xla"] / med["blas"]}
      rows.append(row)
      label = (f"[{m},{k}]{'T' if ta else ' '} x [{k},{n}]"
               f"{'T' if tb else ' '}")
      print(f"  {label:32} {calls:5}  "
            f"{med['xla'] * 1e3:6.1f} [{min(times['xla']) * 1e3:.1f}-"
            f"{max(times['xla']) * 1e3:.1f}]  "
            f"{med['blas'] * 1e3:6.1f} [{min(times['blas']) * 1e3:.1f}-"
            f"{max(times['blas']) * 1e3:.1f}]  "
            f"{flop / med['xla'] / 1e9:4.0f}/{flop / med['blas'] / 1e9:4.0f}  "
            f"{(med['xla'] - med['blas']) * calls * 1e3:+7.1f}", flush=True)
    total = {key: sum(statistics.median(r[f"{key}_seconds"]) * r["calls"]
                      for r in rows) for key in ("xla", "blas")}
    print(f"  all products of the step: XLA {total['xla'] * 1e3:.0f} ms, "
          f"BLAS {total['blas'] * 1e3:.0f} ms ({total['xla'] / total['blas']:.2f}x)")
    results["configs"].append({"config": name, "products": rows,
                               "xla_ms_per_step": total["xla"] * 1e3,
                               "blas_ms_per_step": total["blas"] * 1e3})
  write_json(args.out, results)


if __name__ == "__main__":
  main()
