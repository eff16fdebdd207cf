"""Train-step throughput of the configs, with XLA's FLOP count.

    python bench/train_throughput.py [--configs mnist,celeba] [--batch 100]
        [--upsample native,auto] [--steps 10] [--dtype bfloat16]
    [--max_batch_cap 3200]

For each config and upsampling form: compiles the jit train step (state
donated), runs it on a fixed random batch, and reports steps/s, images/s,
model FLOPs per step from the compiled step's cost analysis, and the achieved
FLOP/s as a fraction of a dense float32 matrix-product peak measured in the
same process. Writes results/performance/train_throughput.json.
"""

import argparse
import functools
import importlib
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import compile_with_cost, matmul_peak, xla_step_flops  # pylint: disable=g-import-not-at-top
from vlae_jax import datasets, experiment, files, train  # pylint: disable=g-import-not-at-top


def memory_limit():
  """Bytes a step may use: the accelerator's limit, or 80% of free host RAM."""
  stats = jax.devices()[0].memory_stats() if hasattr(
      jax.devices()[0], "memory_stats") else None
  if stats and "bytes_limit" in stats:
    return stats["bytes_limit"]
  import psutil
  return 0.8 * psutil.virtual_memory().available


def step_bytes(config):
  """Peak bytes of the compiled step at config.batch_size (no run)."""
  shape = datasets.image_shape(config)
  model = experiment.create_model(config, shape)
  state = jax.eval_shape(lambda: experiment.create_train_state(config, model))
  batch = {"image": jax.ShapeDtypeStruct((config.batch_size,) + shape,
                                         jnp.float32),
           "label": jax.ShapeDtypeStruct((config.batch_size,), jnp.int32)}
  step = jax.jit(functools.partial(train.train_step, model=model,
                                   config=config), donate_argnums=0)
  memory = step.lower(state, batch).compile().memory_analysis()
  return (memory.temp_size_in_bytes + memory.argument_size_in_bytes
          + memory.output_size_in_bytes - memory.alias_size_in_bytes)


def largest_batch(config, cap):
  """Largest power-of-two multiple of 100 up to ``cap`` whose step fits."""
  limit, best, batch = memory_limit(), None, 100
  while batch <= cap:
    config.batch_size = batch
    if step_bytes(config) > limit:
      break
    best, batch = batch, batch * 2
  return best


def measure(config, steps):
  shape = datasets.image_shape(config)
  model = experiment.create_model(config, shape)
  state = experiment.create_train_state(config, model)
  rng = np.random.default_rng(0)
  batch = {"image": rng.uniform(size=(config.batch_size,) + shape
                                ).astype(np.float32),
           "label": np.zeros((config.batch_size,), np.int32)}
  step = jax.jit(functools.partial(train.train_step, model=model,
                                   config=config), donate_argnums=0)
  compiled, compile_seconds, _ = compile_with_cost(step, state, batch)
  flops = xla_step_flops(config, shape, state, batch)
  state, metrics = compiled(state, batch)  # warm-up
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - start) / steps
  return {"seconds_per_step": seconds, "steps_per_second": 1 / seconds,
          "images_per_second": config.batch_size / seconds,
          "flops_per_step": flops, "flops_per_second": flops / seconds,
          "compile_seconds": compile_seconds}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="mnist,celeba")
  parser.add_argument("--batch", type=int, default=100)
  parser.add_argument("--upsample", default="native,auto")
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--max_batch_cap", type=int, default=0,
                      help="also time the largest batch (100 * 2^k) up to "
                      "this cap whose step fits in memory; 0: skip")
  parser.add_argument("--out", default="results/performance/train_throughput.json")
  args = parser.parse_args()
  peak = matmul_peak()
  device = jax.devices()[0].device_kind
  print(f"device: {device}; float32 matmul peak {peak / 1e9:.1f} GFLOP/s")
  print(f"{'config':>8} {'upsample':>10} {'batch':>6} {'steps/s':>8} {'images/s':>9} "
        f"{'GFLOP/step':>10} {'GFLOP/s':>8} {'of peak':>8} {'compile s':>9}")
  rows = []
  for name in args.configs.split(","):
    for upsample in args.upsample.split(","):
      config = importlib.import_module(f"configs.{name}").get_config()
      config.model.upsample = upsample
      config.dtype = args.dtype
      batches = [args.batch]
      if args.max_batch_cap:
        biggest = largest_batch(config, args.max_batch_cap)
        if biggest and biggest != args.batch:
          batches.append(biggest)
      for batch in batches:
        config.batch_size = batch
        r = measure(config, args.steps)
        r.update(config=name, upsample=upsample, batch=batch,
                 dtype=args.dtype,
                 fraction_of_peak=r["flops_per_second"] / peak)
        rows.append(r)
        print(f"{name:>8} {upsample:>10} {batch:>6} "
              f"{r['steps_per_second']:8.2f} {r['images_per_second']:9.1f} "
              f"{r['flops_per_step'] / 1e9:10.2f} "
              f"{r['flops_per_second'] / 1e9:8.1f} "
              f"{r['fraction_of_peak']:8.1%} {r['compile_seconds']:9.1f}",
              flush=True)
  files.write_atomically(args.out, json.dumps(
      {"device": device, "matmul_peak_flops": peak, "rows": rows}, indent=1))
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
