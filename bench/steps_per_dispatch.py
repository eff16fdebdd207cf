"""Several train steps per dispatch: one jitted ``lax.scan`` over k batches.

    python bench/steps_per_dispatch.py [--configs default,mnist] [--k 1,10]

For a tiny config the step is milliseconds, so the Python dispatch and the
runtime's per-call work could matter. This times, interleaved in one process,
k=1 (``train.train_step`` jitted, state donated, one call per batch, as
main.py runs) against a ``lax.scan`` of the same step over a stack of k
batches in one call, and checks the two give the same parameters. Prints
steps/s median [min-max] per k and writes results/performance/steps_per_dispatch.json.
"""

import argparse
import functools
import importlib
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from vlae_jax import runtime  # pylint: disable=g-import-not-at-top
runtime.retain_freed_host_memory()  # as main.py

import jax  # pylint: disable=g-import-not-at-top
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import write_json  # pylint: disable=g-import-not-at-top
from vlae_jax import datasets, experiment, train  # pylint: disable=g-import-not-at-top


def scanned_step(config, model):
  """``(state, batches [k, ...]) -> (state, metrics of the last step)``."""
  step = functools.partial(train.train_step, model=model, config=config)

  def many(state, batches):
    state, metrics = jax.lax.scan(step, state, batches)
    return state, jax.tree_util.tree_map(lambda m: m[-1], metrics)

  return jax.jit(many, donate_argnums=0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="default,mnist")
  parser.add_argument("--k", default="1,10")
  parser.add_argument("--batch", type=int, default=100)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--steps", type=int, default=0,
                      help="steps per timed window (0: 200 for default, "
                      "20 otherwise); a multiple of every k")
  parser.add_argument("--out", default="results/performance/steps_per_dispatch.json")
  args = parser.parse_args()
  ks = [int(k) for k in args.k.split(",")]
  results = {"device": jax.devices()[0].device_kind, "configs": []}
  for name in args.configs.split(","):
    config = importlib.import_module(f"configs.{name}").get_config()
    config.batch_size = args.batch
    shape = datasets.image_shape(config)
    model = experiment.create_model(config, shape)
    steps = args.steps or (200 if name == "default" else 20)
    if any(steps % k for k in ks):
      parser.error(f"--steps {steps} is not a multiple of every --k {ks}")
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(steps, args.batch) + shape).astype(np.float32)
    labels = np.zeros((steps, args.batch), np.int32)
    fns, states, stacks = {}, {}, {}
    for k in ks:
      states[k] = experiment.create_train_state(config, model)
      if k == 1:
        fns[k] = jax.jit(functools.partial(train.train_step, model=model,
                                           config=config), donate_argnums=0)
        stacks[k] = [jax.device_put({"image": images[i], "label": labels[i]})
                     for i in range(steps)]
      else:
        fns[k] = scanned_step(config, model)
        stacks[k] = [jax.device_put({"image": images[i:i + k],
                                     "label": labels[i:i + k]})
                     for i in range(0, steps, k)]
    # One full pass each (compiles), then the parameters must agree.
    for k in ks:
      for b in stacks[k]:
        states[k], metrics = fns[k](states[k], b)
      jax.block_until_ready(metrics)
    reference = jax.tree_util.tree_leaves(states[ks[0]].params)
    for k in ks[1:]:
      for a, b in zip(reference, jax.tree_util.tree_leaves(states[k].params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4,
                                   atol=2e-5)
    rates = {k: [] for k in ks}
    for _ in range(args.rounds):
      for k in ks:
        start = time.perf_counter()
        for b in stacks[k]:
          states[k], metrics = fns[k](states[k], b)
        jax.block_until_ready(metrics)
        rates[k].append(steps / (time.perf_counter() - start))
    row = {"config": name, "batch": args.batch, "steps_per_window": steps,
           "steps_per_second": {str(k): v for k, v in rates.items()}}
    results["configs"].append(row)
    for k, v in rates.items():
      print(f"{name}: k={k:>3} {statistics.median(v):8.1f} steps/s "
            f"[{min(v):.1f}-{max(v):.1f}]  ({statistics.median(v) / statistics.median(rates[ks[0]]):.2f}x k={ks[0]})",
            flush=True)
  write_json(args.out, results)


if __name__ == "__main__":
  main()
