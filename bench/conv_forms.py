"""Per-layer speed of each exact conv / transposed-conv formulation.

    python bench/conv_forms.py [--configs celeba,mnist] [--rounds 3]

For every 4x4 stride-2 conv and transposed conv of each config (batch 100),
times forward + backward (gradients of the kernel, and of the input except
for the first encoder layer, whose input is the image) of every form in
``vlae_jax.convolutions``, interleaved (all forms of a layer in turn, then the
next round), and prints the median ms [min-max], useful GFLOP/s (analytic
count, ``vlae_jax.flops``) and the fastest form per layer beside a dense
matmul peak measured in the same process. Writes results/performance/conv_forms.json; its
figures back ``convolutions.choose_form`` (docs/PERFORMANCE.md keeps the
table of the forms measured slower and deleted).
"""

import argparse
import functools
import importlib
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from vlae_jax import files, runtime  # pylint: disable=g-import-not-at-top
runtime.retain_freed_host_memory()  # as main.py: no per-call page faults

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import matmul_peak  # pylint: disable=g-import-not-at-top
from vlae_jax import convolutions, datasets, flops  # pylint: disable=g-import-not-at-top


def layer_step(layer, form, batch, input_grad):
  """jit(forward + backward) of one layer in one form, and its arguments."""
  fn = convolutions.conv if layer.kind == "conv" else \
      convolutions.conv_transpose
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch,) + layer.input_shape), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(4, 4, layer.input_shape[-1],
                                        layer.output_shape[-1])) * 0.05,
                       jnp.float32)
  cotangent = jnp.asarray(rng.normal(size=(batch,) + layer.output_shape),
                          jnp.float32)

  def loss(x, kernel):
    return jnp.vdot(fn(x, kernel, form), cotangent)

  # value_and_grad: the forward product is computed (with plain grad XLA
  # drops it, as the backward pass of a linear layer does not need it).
  grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1) if input_grad
                                    else (1,)))
  return functools.partial(grad, x, kernel)


def time_call(call, repeats):
  jax.block_until_ready(call())
  start = time.perf_counter()
  for _ in range(repeats):
    out = call()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / repeats


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="celeba,mnist")
  parser.add_argument("--batch", type=int, default=100)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--forms", default="",
                      help="comma-separated subset of the forms (default all)")
  parser.add_argument("--native_deconv_max_channels", type=int, default=16,
                      help="time the native transposed conv only up to this "
                      "many output channels (its CPU backward takes seconds "
                      "on the wider layers: 2.8 s and 9.6 s measured)")
  parser.add_argument("--out", default="results/performance/conv_forms.json")
  args = parser.parse_args()
  peak = matmul_peak()
  print(f"device: {jax.devices()[0].device_kind}; float32 matmul peak "
        f"{peak / 1e9:.1f} GFLOP/s (2048^2, this process)")
  wanted = set(args.forms.split(",")) if args.forms else None
  layers = []
  for name in args.configs.split(","):
    config = importlib.import_module(f"configs.{name}").get_config()
    shape = datasets.image_shape(config)
    for i, layer in enumerate(l for l in flops.layer_table(config.model, shape)
                              if l.kind in ("conv", "deconv")):
      forms = [f for f in convolutions.FORMS if (wanted is None or f in wanted) and not (
          layer.kind == "deconv" and f == "native"
          and layer.output_shape[-1] > args.native_deconv_max_channels)]
      steps = {f: layer_step(layer, f, args.batch, input_grad=i > 0)
               for f in forms}
      layers.append((name, layer, steps, {f: [] for f in forms}))
  for _ in range(args.rounds):
    for _, layer, steps, times in layers:
      for form, call in steps.items():
        times[form].append(time_call(call, args.repeats))
  rows = []
  print(f"{'config':>7} {'layer':<24} {'shape':<24} {'form':<15} "
        f"{'ms median [min-max]':>22} {'GFLOP/s':>8} {'of peak':>7}")
  for name, layer, _, times in layers:
    useful = 3.0 * args.batch * layer.forward_flops
    best = min(times, key=lambda f: statistics.median(times[f]))
    for form, seconds in times.items():
      median = statistics.median(seconds)
      rows.append({"config": name, "layer": layer.name, "kind": layer.kind,
                   "input_shape": layer.input_shape,
                   "output_shape": layer.output_shape, "form": form,
                   "seconds": seconds, "useful_flops": useful,
                   "fastest": form == best})
      shape = (f"{'x'.join(map(str, layer.input_shape))}->"
               f"{'x'.join(map(str, layer.output_shape))}")
      print(f"{name:>7} {layer.name:<24} {shape:<24} "
            f"{form + (' *' if form == best else ''):<15} "
            f"{median * 1e3:8.1f} [{min(seconds) * 1e3:.0f}-"
            f"{max(seconds) * 1e3:.0f}]".ljust(22) +
            f" {useful / median / 1e9:8.1f} {useful / median / peak:7.1%}",
            flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  files.write_atomically(args.out, json.dumps(
      {"device": jax.devices()[0].device_kind, "matmul_peak_flops": peak,
       "batch": args.batch, "rows": rows}, indent=1))
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
