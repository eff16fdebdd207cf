"""The variational ladder autoencoder (VLAE) as pure Flax Linen modules.

Inference runs bottom-up through L rungs, ``h_l = f_l(h_{l-1})`` with
``h_0 = x``; rung l emits a diagonal Gaussian posterior ``q(z_l | h_l)``.
Generation runs top-down: ``zt_L = u_L(z_L)``,
``zt_l = u_l(combine(zt_{l+1}, z_l))`` and ``x^ = sigmoid(zt_1)``. Each
generative rung mirrors its inference rung: it maps the inference rung's output
shape back to that rung's input shape, so the decoder is determined by the
encoder's per-rung layer lists.

Shapes: images ``[batch, height, width, channels]`` in [0, 1]; codes
``[batch, latent_dims[l]]``; decoder logits ``[batch, height, width, channels]``.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlae_jax import blas, convolutions

Shape = Tuple[int, ...]

ACTIVATIONS = {
    "leaky_relu": lambda x: nn.leaky_relu(x, negative_slope=0.1),
    "relu": nn.relu,
    "swish": nn.swish,
    "elu": nn.elu,
}
NORMS = ("batch", "none")
COMBINES = ("gated_sum", "concat")
UPSAMPLES = DOWNSAMPLES = ("auto",) + convolutions.FORMS
LAYER_KINDS = ("conv", "dense")


def layer_strides(rung_kinds: Sequence[str],
                  rung_widths: Sequence[Sequence[int]],
                  rung_strides: Optional[Sequence[Sequence[int]]] = None
                  ) -> List[Tuple[int, ...]]:
  """Per rung, the stride of each layer: ``rung_strides`` where given (an
  empty or missing entry means every layer of that rung has stride 2), and 1
  for the layers of dense rungs."""
  out = []
  for l, (kind, widths) in enumerate(zip(rung_kinds, rung_widths)):
    given = tuple(rung_strides[l]) if rung_strides and l < len(
        rung_strides) and rung_strides[l] else ()
    if kind != "conv":
      out.append((1,) * len(widths))
    elif not given:
      out.append((2,) * len(widths))
    else:
      if len(given) != len(widths) or any(s not in (1, 2) for s in given):
        raise ValueError(
            f"model.rung_strides[{l}] = {given} must give a stride of 1 or 2 "
            f"for each of the rung's {len(widths)} layers.")
      out.append(given)
  return out


def rung_shapes(image_shape: Shape, rung_kinds: Sequence[str],
                rung_widths: Sequence[Sequence[int]],
                rung_strides: Optional[Sequence[Sequence[int]]] = None
                ) -> List[List[Shape]]:
  """Per rung, the feature shapes (without batch) before and after each layer.

  ``rung_shapes(...)[l][0]`` is rung l's input shape and ``[l][-1]`` its output.
  A conv layer of stride 2 halves height and width (4x4, SAME), one of stride
  1 keeps them; a dense layer flattens.
  """
  strides = layer_strides(rung_kinds, rung_widths, rung_strides)
  shapes, current = [], tuple(image_shape)
  for kind, widths, rung_stride in zip(rung_kinds, rung_widths, strides):
    rung = [current]
    for width, stride in zip(widths, rung_stride):
      if kind == "conv":
        if len(current) != 3:
          raise ValueError(
              f"a conv rung cannot follow a dense rung (input shape {current}); "
              "put all conv rungs below the dense rungs in model.rung_kinds.")
        height, width_px, _ = current
        if stride == 1:
          current = (height, width_px, width)
          rung.append(current)
          continue
        if height % 2 or width_px % 2:
          raise ValueError(
              f"a stride-2 conv cannot halve a {height}x{width_px} feature map "
              f"evenly (image {tuple(image_shape)}); use fewer conv layers or "
              "an image size divisible by 2 per conv layer.")
        current = (height // 2, width_px // 2, width)
      else:
        current = (width,)
      rung.append(current)
    shapes.append(rung)
  return shapes


def _kernel_and_bias(module: nn.Module, in_features: int):
  """``kernel [4, 4, in, features]`` and ``bias [features]``, float32, with
  the names and initialisers of ``nn.Conv`` / ``nn.ConvTranspose``."""
  kernel = module.param("kernel", nn.initializers.lecun_normal(),
                        (4, 4, in_features, module.features), jnp.float32)
  bias = module.param("bias", nn.initializers.zeros, (module.features,),
                      jnp.float32)
  return kernel, bias


def _with_matmul(form: str, matmul: str, dtype) -> str:
  """An "auto" choice of "gemm" runs its products in BLAS where ``matmul``
  (``config.model.matmul``) resolves to it."""
  if form == "gemm" and blas.resolve(matmul, dtype):
    return "gemm_blas"
  return form


def _dense(features: int, dtype, matmul: str, name: str) -> nn.Dense:
  """``nn.Dense`` whose product runs in BLAS where ``matmul`` resolves to it
  (same parameters and function)."""
  return nn.Dense(features, dtype=dtype, name=name,
                  dot_general=(blas.dot_general
                               if blas.resolve(matmul, dtype) else None))


class DownConv(nn.Module):
  """``nn.Conv(features, (4, 4), strides=(2, 2), padding="SAME")``: the same
  parameters (``kernel [4, 4, in, out]``, ``bias [out]``, the same
  initialisers) and function, computed in the ``form`` of
  ``vlae_jax.convolutions`` ("auto": the fastest measured for the backend and
  shape, see ``convolutions.choose_form``)."""

  features: int
  form: str = "auto"
  dtype: Any = jnp.float32
  matmul: str = "auto"

  @nn.compact
  def __call__(self, x):
    kernel, bias = _kernel_and_bias(self, x.shape[-1])
    form = self.form
    if form == "auto":
      form = _with_matmul(convolutions.choose_form(x.shape), self.matmul,
                          self.dtype)
    y = convolutions.conv(x.astype(self.dtype), kernel.astype(self.dtype),
                          form)
    return y + bias.astype(self.dtype)


class UpConv(nn.Module):
  """``nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")``:
  the same parameters and function, computed in the ``form`` of
  ``vlae_jax.convolutions`` ("auto": the fastest measured for the backend and
  shape, see ``convolutions.choose_form``)."""

  features: int
  form: str = "auto"
  dtype: Any = jnp.float32
  matmul: str = "auto"

  @nn.compact
  def __call__(self, x):
    kernel, bias = _kernel_and_bias(self, x.shape[-1])
    form = self.form
    if form == "auto":
      form = _with_matmul(convolutions.choose_form(x.shape, transposed=True),
                          self.matmul, self.dtype)
    y = convolutions.conv_transpose(x.astype(self.dtype),
                                    kernel.astype(self.dtype), form)
    return y + bias.astype(self.dtype)


class _Layers(nn.Module):
  """Shared block factory: conv/deconv/dense, then norm and activation."""

  norm: str
  activation: str
  dtype: Any
  matmul: str = "auto"

  def normalize_and_activate(self, x, train: bool, name: str):
    if self.norm == "batch":
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                       epsilon=1e-5, dtype=self.dtype, name=f"{name}_bn")(x)
    return ACTIVATIONS[self.activation](x)


class InferenceRung(_Layers):
  """Rung l of the encoder: ``h_l = f_l(h_{l-1})`` and ``q(z_l | h_l)``.

  ``__call__(h [batch, ...], train) -> (h_l, mean [batch, latent_dim],
  std [batch, latent_dim])`` with ``std = sigmoid(.) + std_floor`` (> 0),
  or ``std_floor + (std_ceiling - std_floor) * sigmoid(.)`` when
  ``std_ceiling`` > 0.
  """

  kind: str = "conv"
  widths: Sequence[int] = ()
  strides: Sequence[int] = ()
  latent_dim: int = 2
  std_floor: float = 1e-3
  std_ceiling: float = 0.0
  downsample: str = "auto"
  head_branch: bool = False

  def branch(self, h, train: bool, prefix: str = ""):
    """The rung's layer list on ``h``; ``prefix`` names a second copy."""
    strides = tuple(self.strides) or (2,) * len(self.widths)
    for i, (width, stride) in enumerate(zip(self.widths, strides)):
      if self.kind == "conv" and stride == 2:
        h = DownConv(width, form=self.downsample, dtype=self.dtype,
                     matmul=self.matmul, name=f"{prefix}conv{i}")(h)
      elif self.kind == "conv":
        h = nn.Conv(width, (4, 4), padding="SAME", dtype=self.dtype,
                    name=f"{prefix}conv{i}")(h)
      else:
        h = h.reshape(h.shape[0], -1)
        h = _dense(width, self.dtype, self.matmul, f"{prefix}dense{i}")(h)
      h = self.normalize_and_activate(h, train, f"{prefix}layer{i}")
    return h

  @nn.compact
  def __call__(self, h, train: bool):
    # The reference's two branches: h_l for the next rung, and a ladder
    # branch with its own weights that alone feeds the heads of z_l.
    head_input = self.branch(h, train, "head_") if self.head_branch else None
    h = self.branch(h, train)
    if self.latent_dim == 0:
      # A rung without a code (the single-code baseline's lower rungs): its
      # layers feed the rung above and nothing else.
      empty = jnp.zeros((h.shape[0], 0), jnp.float32)
      return h, empty, empty
    flat = (h if head_input is None else head_input).reshape(h.shape[0], -1)
    # Heads in float32: they parameterise the distribution the MMD sees.
    mean = nn.Dense(self.latent_dim, name="mean")(flat.astype(jnp.float32))
    gate = nn.sigmoid(nn.Dense(self.latent_dim, name="std")(
        flat.astype(jnp.float32)))
    if self.std_ceiling > 0:
      # A ceiling below 1 bars the posterior from collapsing onto the prior
      # (mean 0, std 1): to match N(0, I) under the MMD the means must
      # spread, i.e. carry the image.
      return h, mean, self.std_floor + (self.std_ceiling - self.std_floor) * gate
    return h, mean, gate + self.std_floor


class GenerativeRung(_Layers):
  """Rung l of the decoder, mirroring inference rung l.

  ``__call__(upper, z, train)``: ``upper`` is the output of rung l+1 with
  shape ``[batch, *shapes[-1]]`` (None for the top rung), ``z`` is
  ``[batch, latent_dim]``. Returns ``[batch, *shapes[0]]``; for the bottom
  rung these are image logits (no norm, no activation on that last layer).
  """

  kind: str = "conv"
  shapes: Sequence[Shape] = ()
  strides: Sequence[int] = ()
  combine: str = "gated_sum"
  upsample: str = "auto"
  is_bottom: bool = False

  def _project(self, z, shape, name):
    out = _dense(math.prod(shape), self.dtype, self.matmul, name)(z)
    return out.reshape((z.shape[0],) + tuple(shape))

  @nn.compact
  def __call__(self, upper, z, train: bool):
    out_shape = tuple(self.shapes[-1])
    if upper is None:
      h = self._project(z, out_shape, "top")
      h = self.normalize_and_activate(h, train, "top")
    elif z.shape[-1] == 0:  # a rung without a code passes the upper one on
      h = upper
    elif self.combine == "gated_sum":
      gate = self.param("gate", nn.initializers.constant(0.1), out_shape)
      h = upper + gate.astype(self.dtype) * self._project(z, out_shape, "z_proj")
    else:  # concat along the last (channel / unit) axis
      h = jnp.concatenate(
          [upper, self._project(z, out_shape, "z_proj").astype(upper.dtype)],
          axis=-1)
    num_layers = len(self.shapes) - 1
    for i in reversed(range(num_layers)):
      target = tuple(self.shapes[i])
      if self.kind == "conv" and (not self.strides or self.strides[i] == 2):
        h = UpConv(target[-1], form=self.upsample, dtype=self.dtype,
                   matmul=self.matmul, name=f"deconv{i}")(h)
      elif self.kind == "conv":
        h = nn.ConvTranspose(target[-1], (4, 4), padding="SAME",
                             dtype=self.dtype, name=f"deconv{i}")(h)
      else:
        h = h.reshape(h.shape[0], -1)
        h = _dense(math.prod(target), self.dtype, self.matmul,
                   f"dense{i}")(h)
        h = h.reshape((h.shape[0],) + target)
      if not (self.is_bottom and i == 0):
        h = self.normalize_and_activate(h, train, f"layer{i}")
    return h


def per_rung(value, num_rungs: int, field: str) -> Tuple[float, ...]:
  """Per rung, a number given once for every rung or as a sequence with one
  per rung (bottom first); ``field`` names it in the error."""
  if isinstance(value, (int, float)):
    return (float(value),) * num_rungs
  values = tuple(float(v) for v in value)
  if len(values) != num_rungs:
    raise ValueError(f"{field} has {len(values)} entries but the model has "
                     f"{num_rungs} rungs; give one number, or one per rung.")
  return values


class VLAE(nn.Module):
  """The ladder: ``len(latent_dims)`` inference and generative rungs.

  Attributes:
    image_shape: ``(height, width, channels)`` of the data.
    latent_dims: per rung, the size of z_l (rung 0 is the bottom); 0 for a
      rung below the top without a code (the single-code baseline: its
      layers run, the code only enters at the top).
    rung_kinds: per rung, "conv" (4x4 stride-2 convs) or "dense".
    rung_widths: per rung, the channels/units of each of its layers.
    combine: "gated_sum" (upper + g * dense(z), g init 0.1) or "concat".
    std_floor: the posterior std's floor, one number or one per rung (a
      floor limits how much a rung's code can carry to the decoder).
    std_ceiling: per rung, a ceiling of the posterior std (0: none, the std
      reaches 1 + floor); below 1 it forces the rung's codes to be used.
    norm: "batch" or "none". activation: a key of ``ACTIVATIONS``.
    rung_strides: per rung, the stride (1 or 2) of each conv layer; None or
      an empty entry: all 2. The decoder mirrors them.
    head_branches: each rung's heads read a second copy of its layer list
      (own weights) instead of h_l, as in the reference code.
    decoder_activation: the generative rungs' activation ("": activation).
    upsample, downsample: how the 4x4 stride-2 transposed convs and convs are
      computed ("auto" or a form of ``vlae_jax.convolutions``); every form is
      the same function of the same parameters.
    matmul: who runs the dense layers' products and those of "auto" conv
      forms: "auto" (an optimised BLAS inside the step on a one-device CPU,
      float32, see ``vlae_jax.blas``; XLA elsewhere), "xla" or "blas".
    dtype: computation dtype of convs and dense layers (params stay float32).
  """

  image_shape: Shape
  latent_dims: Sequence[int]
  rung_kinds: Sequence[str]
  rung_widths: Sequence[Sequence[int]]
  combine: str = "gated_sum"
  norm: str = "batch"
  activation: str = "leaky_relu"
  upsample: str = "auto"
  downsample: str = "auto"
  std_floor: Any = 1e-3
  std_ceiling: Any = 0.0
  dtype: Any = jnp.float32
  rung_strides: Optional[Sequence[Sequence[int]]] = None
  head_branches: bool = False
  decoder_activation: str = ""
  matmul: str = "auto"

  def setup(self):
    shapes = rung_shapes(self.image_shape, self.rung_kinds, self.rung_widths,
                         self.rung_strides)
    strides = layer_strides(self.rung_kinds, self.rung_widths,
                            self.rung_strides)
    common = dict(norm=self.norm, dtype=self.dtype, matmul=self.matmul)
    self.inference_rungs = [
        InferenceRung(kind=kind, widths=tuple(widths), strides=stride,
                      latent_dim=dim, std_floor=floor, std_ceiling=ceiling,
                      downsample=self.downsample,
                      head_branch=self.head_branches,
                      activation=self.activation, **common)
        for kind, widths, stride, dim, floor, ceiling in zip(
            self.rung_kinds, self.rung_widths, strides, self.latent_dims,
            per_rung(self.std_floor, self.num_rungs, "model.std_floor"),
            per_rung(self.std_ceiling, self.num_rungs,
                     "model.rung_std_ceilings"))]
    self.generative_rungs = [
        GenerativeRung(kind=kind, shapes=tuple(rung), strides=stride,
                       combine=self.combine, upsample=self.upsample,
                       is_bottom=(l == 0),
                       activation=self.decoder_activation or self.activation,
                       **common)
        for l, (kind, rung, stride) in enumerate(zip(self.rung_kinds, shapes,
                                                     strides))]

  @property
  def num_rungs(self) -> int:
    return len(self.latent_dims)

  def encode(self, images, train: bool = False, sample: bool = True):
    """Posterior of every rung.

    Args:
      images: ``[batch, H, W, C]`` in [0, 1].
      train: batch norm in training mode (batch statistics) if True.
      sample: draw ``z = mean + std * eps`` (needs the "noise" rng); if False
        the samples are the means.

    Returns:
      ``(means, stds, samples)``, each a list over rungs of
      ``[batch, latent_dims[l]]`` float32 arrays.
    """
    means, stds, samples = [], [], []
    h = images.astype(self.dtype)
    for rung in self.inference_rungs:
      h, mean, std = rung(h, train)
      means.append(mean)
      stds.append(std)
      if sample:
        eps = jax.random.normal(self.make_rng("noise"), mean.shape, mean.dtype)
        samples.append(mean + std * eps)
      else:
        samples.append(mean)
    return means, stds, samples

  def decode(self, codes, train: bool = False, rung_scales=None):
    """Image logits ``[batch, H, W, C]`` (float32) from per-rung codes.

    ``codes`` is a list over rungs (bottom first) of ``[batch, latent_dims[l]]``.
    ``rung_scales``: None, or ``[num_rungs]`` factors in [0, 1] multiplying
    each rung's code before it enters the decoder (progressive training: 0
    keeps a rung out, its projection then adds only its bias).
    ``jax.nn.sigmoid`` of the result is the image in [0, 1].
    """
    h = None
    for l in reversed(range(self.num_rungs)):
      z = codes[l]
      if rung_scales is not None:
        z = z * rung_scales[l].astype(z.dtype)
      h = self.generative_rungs[l](h, z.astype(self.dtype), train)
    return h.astype(jnp.float32)

  def __call__(self, images, train: bool = False, sample: bool = True,
               rung_scales=None):
    """Encode then decode: returns ``(logits, means, stds, samples)``."""
    means, stds, samples = self.encode(images, train=train, sample=sample)
    return (self.decode(samples, train=train, rung_scales=rung_scales), means,
            stds, samples)


def model_from_config(model_config, image_shape: Shape, dtype: str = "float32"):
  """Builds ``VLAE`` from ``config.model`` (see configs/default.py)."""
  return VLAE(
      image_shape=tuple(image_shape),
      latent_dims=tuple(model_config.latent_dims),
      rung_kinds=tuple(model_config.rung_kinds),
      rung_widths=tuple(tuple(w) for w in model_config.rung_widths),
      combine=model_config.combine,
      norm=model_config.norm,
      activation=model_config.activation,
      upsample=model_config.upsample,
      downsample=model_config.get("downsample", "auto"),
      std_floor=(tuple(model_config.get("rung_std_floors", ()) or ()) or
                 model_config.std_floor),
      std_ceiling=tuple(model_config.get("rung_std_ceilings", ()) or ()) or 0.0,
      dtype=jnp.dtype(dtype),
      rung_strides=tuple(tuple(s) for s in model_config.get(
          "rung_strides", ()) or ()) or None,
      head_branches=bool(model_config.get("head_branches", False)),
      decoder_activation=model_config.get("decoder_activation", ""),
      matmul=model_config.get("matmul", "auto"),
  )
