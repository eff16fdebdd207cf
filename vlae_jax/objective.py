"""The MMD-VLAE objective (the model-specific part, as in google-research/vdm).

loss = rec_weight * reconstruction
       + sum_l mmd_weight_l * MMD^2(posterior samples of rung l, N(0, I) draws)

or, with ``config.loss.regularizer = "kl"`` (the original VLAE, the model
the paper improves on):

loss = rec_weight * reconstruction
       + w_t * sum_l kl_weight_l * KL(q(z_l | x) || N(0, I))

with the analytic KL of the diagonal Gaussian posterior (summed over
dimensions, mean over the batch) and the warm-up ``w_t = 1 - exp(-t /
kl_warmup_steps)`` (1 when ``kl_warmup_steps`` is 0).

``loss_fn`` is what the train step differentiates; ``reconstruction_loss``
and ``aggregate_mmd`` are also what evaluation reports.
"""

from __future__ import annotations

import functools
from typing import Dict, List, Optional

import jax
import jax.numpy as jnp
import optax

from vlae_jax.discrepancy import mmd

RECONSTRUCTIONS = ("l1", "l2", "bernoulli")
REGULARIZERS = ("mmd", "kl")


def regularizer(config) -> str:
  """``config.loss.regularizer``: "mmd" (default, also for configs saved
  before the field existed) or "kl"."""
  return config.loss.get("regularizer", "mmd") or "mmd"


def gaussian_kl(mean: jax.Array, std: jax.Array) -> jax.Array:
  """KL(N(mean, std^2) || N(0, I)) of each row, summed over dimensions.

  ``mean``, ``std``: ``[batch, dim]`` (std > 0). Returns ``[batch]``:
  ``0.5 * sum_d (mean^2 + std^2 - 1 - 2 log std)``.
  """
  mean = mean.astype(jnp.float32)
  std = std.astype(jnp.float32)
  return 0.5 * jnp.sum(jnp.square(mean) + jnp.square(std) - 1.0
                       - 2.0 * jnp.log(std), axis=-1)


def rung_kls(means: List[jax.Array], stds: List[jax.Array]) -> jax.Array:
  """``[num_rungs]`` KL of each rung's posterior to N(0, I), mean over the
  batch."""
  return jnp.stack([jnp.mean(gaussian_kl(m, s)) for m, s in zip(means, stds)])


def kl_weights(config) -> jax.Array:
  """``[num_rungs]``: ``loss.rung_kl_weights`` (bottom first) where set,
  else ``loss.kl_weight`` for every rung."""
  per_rung = tuple(config.loss.get("rung_kl_weights", ()) or ())
  if per_rung:
    return jnp.asarray(per_rung, jnp.float32)
  return jnp.full((len(config.model.latent_dims),),
                  config.loss.get("kl_weight", 1.0), jnp.float32)


def kl_warmup(config, step) -> jax.Array:
  """The KL term's weight ``1 - exp(-step / kl_warmup_steps)`` (the
  original VLAE's schedule; 1 without warm-up or without a step)."""
  steps = config.loss.get("kl_warmup_steps", 0)
  if not steps or step is None:
    return jnp.float32(1.0)
  return 1.0 - jnp.exp(-jnp.asarray(step, jnp.float32) / steps)


def reconstruction_loss(kind: str, logits: jax.Array, images: jax.Array
                        ) -> jax.Array:
  """Per-image reconstruction error ``[batch]``, a mean over pixels.

  ``l1``: mean |x - sigmoid(logits)| (the reference); ``l2``: mean squared
  error; ``bernoulli``: mean sigmoid cross-entropy (the -log-likelihood of
  non-binary targets in [0, 1], minimal at sigmoid(logits) = x).
  """
  axes = tuple(range(1, images.ndim))
  if kind == "l1":
    return jnp.mean(jnp.abs(images - jax.nn.sigmoid(logits)), axis=axes)
  if kind == "l2":
    return jnp.mean(jnp.square(images - jax.nn.sigmoid(logits)), axis=axes)
  if kind == "bernoulli":
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, images),
                    axis=axes)
  raise ValueError(f"unknown reconstruction {kind!r}; choose one of "
                   f"{list(RECONSTRUCTIONS)}.")


def rung_mmds(config, codes: List[jax.Array], key: jax.Array) -> jax.Array:
  """``[num_rungs]`` MMD^2 of each rung's codes against its own prior draw."""
  values = []
  for l, z in enumerate(codes):
    if z.shape[1] == 0:  # a rung without a code: nothing to regularise
      values.append(jnp.zeros((), jnp.float32))
      continue
    count = config.loss.num_prior_samples or z.shape[0]
    prior = jax.random.normal(jax.random.fold_in(key, l), (count, z.shape[1]),
                              jnp.float32)
    values.append(mmd(z.astype(jnp.float32), prior, kernel=config.loss.kernel,
                      estimator=config.loss.estimator))
  return jnp.stack(values)


def rung_scales(config, step) -> Optional[jax.Array]:
  """Progressive training's per-rung code scales at ``step`` (proVLAE, Li et
  al. 2020: the top rung learns alone first, lower rungs fade in later).

  ``config.rung_start_steps`` gives, per rung (bottom first), the step where
  the rung starts to reach the decoder; over ``config.rung_fade_steps`` its
  scale then ramps linearly from 0 to 1 (0 steps: it switches on). Returns
  None (every rung at 1) when no schedule is set, else ``[num_rungs]``
  float32 in [0, 1]. ``step`` may be traced.
  """
  starts = tuple(config.get("rung_start_steps", ()) or ())
  if not starts:
    return None
  step = jnp.asarray(step, jnp.float32)
  starts = jnp.asarray(starts, jnp.float32)
  fade = config.get("rung_fade_steps", 0)
  if fade > 0:
    return jnp.clip((step - starts + 1.0) / fade, 0.0, 1.0)
  return (step >= starts).astype(jnp.float32)


def schedule_end(config) -> int:
  """The first step at which every rung has its full scale (0: no schedule)."""
  starts = tuple(config.get("rung_start_steps", ()) or ())
  if not starts:
    return 0
  return max(starts) + max(config.get("rung_fade_steps", 0) - 1, 0)


def mmd_weights(config) -> jax.Array:
  """``[num_rungs]`` weights of the rungs' MMD terms: ``loss.mmd_weight``
  for every rung, or ``loss.rung_mmd_weights`` (bottom first) where set."""
  per_rung = tuple(config.loss.get("rung_mmd_weights", ()) or ())
  if per_rung:
    return jnp.asarray(per_rung, jnp.float32)
  return jnp.full((len(config.model.latent_dims),), config.loss.mmd_weight,
                  jnp.float32)


def model_variables(params, batch_stats) -> Dict:
  """The ``model.apply`` variables: params, and batch statistics if any."""
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  return variables


def loss_fn(params, batch_stats, batch, key, *, model, config, step=None):
  """The training loss of one batch, batch norm in training mode.

  ``batch["image"]``: ``[batch, H, W, C]`` in [0, 1]; ``key``: the step's
  key (posterior noise and prior draws); ``step``: the train step, which
  sets the progressive schedule's rung scales (``rung_scales``). A rung
  that is not yet in keeps its MMD term, so its codes are prior-like when
  it fades in. Returns ``(loss, (metrics,
  new batch_stats))`` with metrics ``loss``, ``reconstruction`` (scalars),
  ``mmd`` (or ``kl``, with the KL regulariser) and ``posterior_std``
  (``[num_rungs]``).
  """
  noise_key, prior_key = jax.random.split(key)
  variables = model_variables(params, batch_stats)
  (logits, means, stds, codes), updates = model.apply(
      variables, batch["image"], train=True, sample=True,
      rung_scales=None if step is None else rung_scales(config, step),
      rngs={"noise": noise_key}, mutable=["batch_stats"])
  rec = jnp.mean(reconstruction_loss(config.loss.reconstruction, logits,
                                     batch["image"]))
  if regularizer(config) == "kl":
    kls = rung_kls(means, stds)
    loss = config.loss.rec_weight * rec + kl_warmup(config, step) * jnp.sum(
        kl_weights(config) * kls)
    terms = {"kl": kls}
  else:  # the MMD path, exactly as before the KL option existed
    mmds = rung_mmds(config, codes, prior_key)
    loss = config.loss.rec_weight * rec + jnp.sum(mmd_weights(config) * mmds)
    terms = {"mmd": mmds}
  metrics = {"loss": loss, "reconstruction": rec, **terms,
             "posterior_std": jnp.stack([
                 jnp.mean(s) if s.shape[-1] else jnp.zeros((), jnp.float32)
                 for s in stds])}
  return loss, (metrics, updates.get("batch_stats", {}))


@functools.partial(jax.jit, static_argnames=("kernel", "block_size"))
def aggregate_mmd(codes: List[jax.Array], kernel: str, key: jax.Array,
                  block_size: int = 1024) -> jax.Array:
  """``[num_rungs]`` MMD^2 of a whole split's codes (per rung ``[n, dim]``)
  against as many N(0, I) draws (one key per rung), in row tiles so any split
  size fits. One compiled program for all rungs: no host sync per rung."""
  return jnp.stack([
      mmd(z, jax.random.normal(jax.random.fold_in(key, l), z.shape, z.dtype),
          kernel=kernel, block_size=block_size) if z.shape[1] else
      jnp.zeros((), jnp.float32)  # a rung without a code
      for l, z in enumerate(codes)])
