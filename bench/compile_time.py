"""First-step compile time, cold and from JAX's persistent compilation cache.

    python bench/compile_time.py [--configs mnist,celeba]

Each measurement is a fresh process that builds the config's jit train step
and times ``lower(...).compile()``: first with an empty cache folder (cold),
then again with the folder the first process filled (warm). main.py enables
the cache by default (~/.cache/vlae_jax/jax_compilation_cache). Writes
results/performance/compile_time.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from vlae_jax import files  # pylint: disable=g-import-not-at-top

CHILD = """
import functools, importlib, sys, time
import jax, numpy as np
sys.path.insert(0, {root!r})
jax.config.update("jax_compilation_cache_dir", {cache!r})
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
from vlae_jax import datasets, experiment, parallel, train
config = importlib.import_module("configs.{name}").get_config()
shape = datasets.image_shape(config)
model = experiment.create_model(config, shape)
state = experiment.create_train_state(config, model)
batch = {{"image": np.zeros((config.batch_size,) + shape, np.float32),
         "label": np.zeros((config.batch_size,), np.int32)}}
step = train.make_train_step(config, model, parallel.make_mesh())
start = time.perf_counter()
step.lower(state, batch).compile()
print("SECONDS", time.perf_counter() - start)
"""


def compile_seconds(name, cache):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  out = subprocess.run([sys.executable, "-c", CHILD.format(
      root=ROOT, cache=cache, name=name)], capture_output=True, text=True,
                       env=env, check=True).stdout
  return float(out.split("SECONDS")[1].split()[0])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="mnist,celeba")
  parser.add_argument("--out", default="results/performance/compile_time.json")
  args = parser.parse_args()
  rows = []
  print(f"{'config':>8} {'cold s':>8} {'cached s':>9}")
  for name in args.configs.split(","):
    cache = tempfile.mkdtemp(prefix="jax_cache_")
    cold = compile_seconds(name, cache)
    warm = compile_seconds(name, cache)
    rows.append({"config": name, "cold_seconds": cold, "cached_seconds": warm})
    print(f"{name:>8} {cold:8.2f} {warm:9.2f}", flush=True)
  files.write_atomically(args.out, json.dumps(rows, indent=1))
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
