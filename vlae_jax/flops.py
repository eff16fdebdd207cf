"""Useful FLOPs of the ladder, counted analytically layer by layer.

"Useful" means what each layer needs, not what a formulation computes:
- a 4x4 stride-2 conv: ``2 * Ho * Wo * Cout * 16 * Cin`` (every kernel tap at
  every output, the convention of FLOP counters such as fvcore and ptflops);
- a 4x4 stride-2 transposed conv, as a direct transposed conv without the zero
  taps of a dilated input or a sub-pixel kernel: ``2 * H * W * Cin * 16 * Cout``
  for an ``H x W`` input (each input pixel meets 16 kernel taps);
- a dense layer: ``2 * in * out``; the posterior heads are two dense layers.
``Layer.in_bounds_flops`` is the stricter count that leaves out the taps
falling on the 'SAME' padding (what XLA's cost analysis counts for a conv):
3% to 14% less per layer; 5.5% (mnist) and 13.5% (celeba) less per step.
Batch norm, activations, the loss and the MMD (about 1e-4 of the total) are
not counted. A train step is 3x the forward pass (the backward pass is counted
as 2x the forward, the usual convention) times the batch.

``layer_table(config)`` lists every layer; ``train_step_flops(config)`` is the
total per step, the numerator of useful MFU (useful FLOP/s over a matmul peak).
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Tuple

from vlae_jax import models

BACKWARD_FACTOR = 2.0  # backward FLOPs per forward FLOP


class Layer(NamedTuple):
  name: str           # e.g. "encoder.rung1.conv0", "decoder.rung0.deconv0"
  kind: str           # "conv", "deconv", "dense"
  input_shape: Tuple[int, ...]   # without batch
  output_shape: Tuple[int, ...]
  forward_flops: float           # per image, every kernel tap
  in_bounds_flops: float         # per image, taps on the padding left out


def _taps_in_bounds(size_in: int, size_out: int) -> int:
  """Per spatial axis, the (input, output) pairs a 4-tap 'SAME' conv from
  ``size_in`` to ``size_out`` positions connects (stride 2 when the size
  halves, else 1)."""
  stride = 1 if size_in == size_out else 2
  pad_before = max((size_out - 1) * stride + 4 - size_in, 0) // 2
  return sum(1 for o in range(size_out) for k in range(4)
             if 0 <= stride * o + k - pad_before < size_in)


def _conv(name, inp, out) -> Layer:
  taps = _taps_in_bounds(inp[0], out[0]) * _taps_in_bounds(inp[1], out[1])
  return Layer(name, "conv", inp, out,
               2.0 * out[0] * out[1] * out[2] * 16 * inp[2],
               2.0 * taps * inp[2] * out[2])


def _deconv(name, inp, out) -> Layer:
  # A transposed conv connects exactly the pairs of the conv it transposes
  # (from the output shape back to the input shape).
  taps = _taps_in_bounds(out[0], inp[0]) * _taps_in_bounds(out[1], inp[1])
  return Layer(name, "deconv", inp, out,
               2.0 * inp[0] * inp[1] * inp[2] * 16 * out[2],
               2.0 * taps * inp[2] * out[2])


def _dense(name, inp, out) -> Layer:
  count = 2.0 * math.prod(inp) * math.prod(out)
  return Layer(name, "dense", inp, out, count, count)


def layer_table(model_config, image_shape) -> List[Layer]:
  """Every conv / transposed conv / dense layer of the VLAE, per image,
  encoder bottom-up then decoder top-down (as the forward pass runs)."""
  shapes = models.rung_shapes(image_shape, model_config.rung_kinds,
                              model_config.rung_widths,
                              model_config.get("rung_strides", ()) or None)
  branches = (("", "head_") if model_config.get("head_branches", False)
              else ("",))
  layers = []
  for l, (kind, rung, dim) in enumerate(zip(model_config.rung_kinds, shapes,
                                            model_config.latent_dims)):
    for prefix in branches:
      for i in range(len(rung) - 1):
        build = _conv if kind == "conv" else _dense
        layers.append(build(f"encoder.rung{l}.{prefix}{kind}{i}",
                            tuple(rung[i]), tuple(rung[i + 1])))
    layers.append(_dense(f"encoder.rung{l}.heads", tuple(rung[-1]),
                         (2 * dim,)))
  num_rungs = len(shapes)
  for l in reversed(range(num_rungs)):
    kind, rung, dim = (model_config.rung_kinds[l], shapes[l],
                       model_config.latent_dims[l])
    top = tuple(rung[-1])
    if l == num_rungs - 1:
      layers.append(_dense(f"decoder.rung{l}.top", (dim,), top))
      current = top
    else:
      layers.append(_dense(f"decoder.rung{l}.z_proj", (dim,), top))
      if model_config.combine == "concat":
        current = top[:-1] + (2 * top[-1],)
      else:
        current = top
    for i in reversed(range(len(rung) - 1)):
      target = tuple(rung[i])
      if kind == "conv":
        layers.append(_deconv(f"decoder.rung{l}.deconv{i}", current, target))
      else:
        layers.append(_dense(f"decoder.rung{l}.dense{i}", current, target))
      current = target
  return layers


def forward_flops(model_config, image_shape, in_bounds: bool = False
                  ) -> float:
  """Useful FLOPs of one image's forward pass."""
  return sum(layer.in_bounds_flops if in_bounds else layer.forward_flops
             for layer in layer_table(model_config, image_shape))


def train_step_flops(config, image_shape=None, in_bounds: bool = False
                     ) -> float:
  """Useful FLOPs of one train step at ``config.batch_size``."""
  from vlae_jax import datasets
  shape = image_shape or datasets.image_shape(config)
  return (1.0 + BACKWARD_FACTOR) * config.batch_size * forward_flops(
      config.model, shape, in_bounds)
