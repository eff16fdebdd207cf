"""Times MMD^2 forms for n = m in 256..16384 and d in {2, 10, 64}.

    python bench/mmd_scaling.py [--sizes 256,1024,4096,16384] [--dims 2,10,64]

Forms (all the biased V-statistic of the reference kernel exp(-||a-b||^2/d^2)):
  tiled      the reference code's approach: broadcast to an [n, m, d] tensor
  expansion  ||a||^2 + ||b||^2 - 2 a.b with one matrix product, by hand
  vmapped    vmap(vmap(k)) of a plain pair function (the generic path)
  ours       vlae_jax.mmd(x, y) (pair kernel; compiles to the matmul form,
             in 1024-row tiles above 2048 rows: block_size="auto")
  ours_dense vlae_jax.mmd(x, y, block_size=None) (one dense Gram matrix)
Prints a table (median of 5 to 200 timed runs after compilation; XLA's temp-buffer
size of the compiled program as peak memory) and writes JSON.
"""

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vlae_jax import files, mmd  # pylint: disable=g-import-not-at-top


def tiled(x, y):
  d = x.shape[1]

  def mean_kernel(a, b):
    diff = a[:, None, :] - b[None, :, :]
    return jnp.mean(jnp.exp(-jnp.mean(jnp.square(diff), -1) / d))

  return mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y)


def expansion(x, y):
  d = x.shape[1]

  def mean_kernel(a, b):
    sq = (jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :]
          - 2 * a @ b.T)
    return jnp.mean(jnp.exp(-jnp.maximum(sq, 0) / (d * d)))

  return mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y)


def vmapped(x, y):
  d = x.shape[1]
  k = lambda a, b: jnp.exp(-jnp.sum(jnp.square(a - b)) / (d * d))
  gram = lambda a, b: jax.vmap(lambda u: jax.vmap(lambda v: k(u, v))(b))(a)
  return (jnp.mean(gram(x, x)) + jnp.mean(gram(y, y))
          - 2 * jnp.mean(gram(x, y)))


FORMS = {
    "tiled": tiled,
    "expansion": expansion,
    "vmapped": vmapped,
    "ours": lambda x, y: mmd(x, y),
    "ours_dense": lambda x, y: mmd(x, y, block_size=None),
}


def time_form(fn, x, y, min_repeats=5, max_repeats=200, min_seconds=0.5,
              max_seconds=20.0):
  compiled = jax.jit(fn).lower(x, y).compile()
  memory = compiled.memory_analysis()
  temp = getattr(memory, "temp_size_in_bytes", None) if memory else None
  compiled(x, y).block_until_ready()
  times = []
  while len(times) < max_repeats:
    start = time.perf_counter()
    compiled(x, y).block_until_ready()
    times.append(time.perf_counter() - start)
    if len(times) >= min_repeats and (sum(times) > min_seconds
                                      or sum(times) > max_seconds):
      break
  return float(np.median(times)), temp, float(compiled(x, y))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="256,1024,4096,16384")
  parser.add_argument("--dims", default="2,10,64")
  parser.add_argument("--max_tensor_gb", type=float, default=4.0,
                      help="skip the tiled form above this n*m*d*4 bytes")
  parser.add_argument("--forms", default=",".join(FORMS),
                      help="comma-separated subset of " + ",".join(FORMS))
  parser.add_argument("--out", default="results/performance/mmd_scaling.json")
  args = parser.parse_args()
  forms = {name: FORMS[name] for name in args.forms.split(",")}
  rows = []
  device = jax.devices()[0]
  print(f"device: {device.device_kind} ({platform.processor() or 'cpu'}), "
        f"jax {jax.__version__}")
  header = (f"{'n':>6} {'d':>3} | " + " | ".join(f"{f:>17}" for f in forms)
            + " | ours/fastest")
  print(header)
  print("-" * len(header))
  for n in map(int, args.sizes.split(",")):
    for d in map(int, args.dims.split(",")):
      kx, ky = jax.random.split(jax.random.PRNGKey(n * 100 + d))
      x = jax.random.normal(kx, (n, d))
      y = jax.random.normal(ky, (n, d)) + 0.1
      cells, result = [], {"n": n, "d": d}
      for name, fn in forms.items():
        if name in ("tiled", "vmapped") and (
            n * n * d * 4 / 2**30 > args.max_tensor_gb):
          cells.append(f"{'skipped (mem)':>17}")
          result[name] = None
          continue
        seconds, temp, value = time_form(fn, x, y)
        result[name] = {"seconds": seconds, "temp_bytes": temp,
                        "value": value}
        mem = f"{temp / 2**20:.0f}MiB" if temp is not None else "?"
        cells.append(f"{seconds * 1e3:8.2f}ms {mem:>7}")
      timed = [result[f]["seconds"] for f in forms if result.get(f)]
      ratio = result["ours"]["seconds"] / min(timed)
      result["ours_over_fastest"] = ratio
      rows.append(result)
      print(f"{n:>6} {d:>3} | " + " | ".join(cells) + f" | {ratio:5.2f}x",
            flush=True)
  files.write_atomically(args.out, json.dumps(
      {"device": str(device.device_kind), "jax": jax.__version__,
       "rows": rows}, indent=1))
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
