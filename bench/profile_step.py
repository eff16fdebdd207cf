"""Where a train step's time goes: forward/backward, encoder/decoder, MMD.

    python bench/profile_step.py [--config celeba] [--batch 100] [--matmul auto]

Times jit-compiled pieces of the step on one fixed batch (median of repeats)
and prints each with XLA's FLOP and byte counts, so the share of time against
the share of FLOPs shows which parts run below the machine's matmul rate
(memory-bound elementwise work: batch norm, activations, the optimizer).
XLA counts no FLOPs inside the BLAS custom call (``model.matmul``, "auto"
on a CPU): ``--matmul xla`` gives the full counts. Writes
results/performance/profile_<config>.json.
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
from vlae_jax import datasets, experiment, files, objective, train  # pylint: disable=g-import-not-at-top


def timed(fn, *args, repeats=5):
  compiled = jax.jit(fn).lower(*args).compile()
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return (float(np.median(times)), float(cost.get("flops", 0.0)),
          float(cost.get("bytes accessed", 0.0)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="celeba")
  parser.add_argument("--batch", type=int, default=100)
  parser.add_argument("--matmul", default="auto",
                      help="model.matmul: auto, xla or blas")
  args = parser.parse_args()
  config = importlib.import_module(f"configs.{args.config}").get_config()
  config.batch_size = args.batch
  config.model.matmul = args.matmul
  shape = datasets.image_shape(config)
  model = experiment.create_model(config, shape)
  state = experiment.create_train_state(config, model)
  images = jnp.asarray(np.random.default_rng(0).uniform(
      size=(args.batch,) + shape), jnp.float32)
  batch = {"image": images}
  key = jax.random.PRNGKey(0)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  codes = [jnp.zeros((args.batch, d)) for d in model.latent_dims]

  def encoder(v, x):
    return model.apply(v, x, train=True, sample=True, rngs={"noise": key},
                       method=model.encode, mutable=["batch_stats"])[0]

  def decoder(v, z):
    return model.apply(v, z, train=True, method=model.decode,
                       mutable=["batch_stats"])[0]

  def loss(params, x):
    return objective.loss_fn(params, state.batch_stats, {"image": x}, key,
                         model=model, config=config)[0]

  mmd_terms = lambda z: objective.rung_mmds(config, z, key)
  pieces = {
      "encoder forward": (encoder, variables, images),
      "decoder forward": (decoder, variables, codes),
      "per-rung MMD (forward)": (mmd_terms, codes),
      "loss forward": (loss, state.params, images),
      "loss forward+backward": (jax.grad(loss), state.params, images),
      "whole train step": (functools.partial(train.train_step, model=model,
                                             config=config), state, batch),
  }
  rows = {}
  total = None
  print(f"config {args.config}, batch {args.batch}, {jax.devices()[0]}")
  print(f"{'piece':>24} {'ms':>9} {'GFLOP':>8} {'GFLOP/s':>8} {'GB moved':>9}")
  for name, (fn, *fn_args) in pieces.items():
    seconds, flops, moved = timed(fn, *fn_args)
    rows[name] = {"seconds": seconds, "flops": flops, "bytes": moved}
    print(f"{name:>24} {seconds * 1e3:9.1f} {flops / 1e9:8.2f} "
          f"{flops / seconds / 1e9:8.1f} {moved / 1e9:9.2f}", flush=True)
    total = seconds
  step = rows["whole train step"]
  rest = step["seconds"] - rows["loss forward+backward"]["seconds"]
  print(f"optimizer + bookkeeping (step - forward+backward): {rest * 1e3:.1f} ms")
  out = os.path.join(ROOT, "results", "performance", f"profile_{args.config}.json")
  files.write_atomically(out, json.dumps(rows, indent=1))
  print(f"wrote {out}")
  del total


if __name__ == "__main__":
  main()
