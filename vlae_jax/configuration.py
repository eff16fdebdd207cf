"""Checks a config before any work: one clear error per bad value."""

from __future__ import annotations

import math

from vlae_jax import blas, datasets, models
from vlae_jax.discrepancy import ESTIMATORS, KERNELS
from vlae_jax.objective import RECONSTRUCTIONS, REGULARIZERS


# How the learning rate moves after the warm-up (experiment.py).
SCHEDULES = ("constant", "cosine")


class ConfigError(ValueError):
  """A config value that cannot work; the message names it and the fix."""


def _choice(name, value, choices):
  if value not in choices:
    raise ConfigError(f"unknown {name} {value!r}; set --config.{name} to one "
                      f"of {list(choices)}.")


def _positive(name, value, integer=False):
  kind = int if integer else (int, float)
  if isinstance(value, bool) or not isinstance(value, kind) or \
      not math.isfinite(value) or value <= 0:
    raise ConfigError(f"--config.{name} must be a positive "
                      f"{'integer' if integer else 'finite number'}, got "
                      f"{value!r}.")


def _data_fields(config):
  """The source's own complaint (channels, a missing data folder), then the
  hash split's share of a folder / TFDS data set."""
  source = datasets.source_for(config.dataset)
  problem = source.config_problem(config)
  if problem:
    raise ConfigError(problem)
  if source.channels is not None:
    return
  fraction = config.get("test_fraction", 0.0)
  if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
      or not 0.0 <= fraction < 1.0:
    raise ConfigError(f"--config.test_fraction must be in (0, 1) (0 -> "
                      f"{datasets.folder.DEFAULT_TEST_FRACTION}), got "
                      f"{fraction!r}.")


def validate(config):
  """Raises ``ConfigError`` for the first value that cannot work."""
  if not datasets.is_known(config.dataset):
    raise ConfigError(f"unknown dataset {config.dataset!r}; set "
                      f"--config.dataset to one of "
                      f"{datasets.registry.names()} (NAME: a TFDS image data "
                      "set, e.g. tfds:cifar10).")
  _data_fields(config)
  m = config.model
  _choice("model.combine", m.combine, models.COMBINES)
  _choice("model.norm", m.norm, models.NORMS)
  _choice("model.activation", m.activation, tuple(models.ACTIVATIONS))
  if m.get("decoder_activation", ""):
    _choice("model.decoder_activation", m.decoder_activation,
            tuple(models.ACTIVATIONS))
  if not isinstance(m.get("head_branches", False), bool):
    raise ConfigError(f"--config.model.head_branches must be True or False, "
                      f"got {m.head_branches!r}.")
  strides = m.get("rung_strides", ()) or ()
  if len(strides) not in (0, len(m.latent_dims)):
    raise ConfigError(
        f"model.rung_strides has {len(strides)} entries but model.latent_dims "
        f"has {len(m.latent_dims)} rungs; give one entry per rung (or none).")
  _choice("model.upsample", m.upsample, models.UPSAMPLES)
  _choice("model.downsample", m.get("downsample", "auto"), models.DOWNSAMPLES)
  _choice("model.matmul", m.get("matmul", "auto"), blas.MATMULS)
  for field, value, instead in [
      ("matmul", m.get("matmul", "auto"), "xla"),
      ("downsample", m.get("downsample", "auto"), "gemm"),
      ("upsample", m.upsample, "gemm")]:
    if value in ("blas", "gemm_blas") and not blas.available():
      raise ConfigError(f"--config.model.{field}={value} cannot run here: "
                        f"{blas.unavailable_reason()}; use auto or {instead}.")
  _choice("dtype", config.dtype, ("float32", "bfloat16"))
  for name in ("deterministic", "skip_nonfinite"):
    if not isinstance(config.get(name, False), bool):
      raise ConfigError(f"--config.{name} must be True or False, got "
                        f"{config[name]!r}.")
  _choice("loss.reconstruction", config.loss.reconstruction, RECONSTRUCTIONS)
  _choice("loss.kernel", config.loss.kernel, tuple(KERNELS))
  _choice("loss.estimator", config.loss.estimator, ESTIMATORS)
  for name in ("learning_rate", "loss.rec_weight"):
    value = config.learning_rate if name == "learning_rate" else \
        config.loss.rec_weight
    _positive(name, value)
  _choice("loss.regularizer", config.loss.get("regularizer", "mmd"),
          REGULARIZERS)
  for name in ("mmd_weight", "kl_weight", "kl_warmup_steps"):
    value = config.loss.get(name, 0.0)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or \
        not math.isfinite(value) or value < 0:
      raise ConfigError(f"--config.loss.{name} must be >= 0, got "
                        f"{value!r}.")
  limit = config.get("max_train_minutes", 0.0)
  if not isinstance(limit, (int, float)) or isinstance(limit, bool) or \
      not math.isfinite(limit) or limit < 0:
    raise ConfigError(f"--config.max_train_minutes must be >= 0 (0: no "
                      f"limit), got {limit!r}.")
  warmup = config.get("warmup_steps", 0)
  if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
    raise ConfigError(f"--config.warmup_steps must be an integer >= 0 (0: "
                      f"no warm-up), got {warmup!r}.")
  schedule = config.get("learning_rate_schedule", "constant")
  _choice("learning_rate_schedule", schedule, SCHEDULES)
  end = config.get("learning_rate_end_fraction", 0.0)
  if not isinstance(end, (int, float)) or isinstance(end, bool) or \
      not 0 <= end <= 1:
    raise ConfigError(f"--config.learning_rate_end_fraction must be in [0, 1] "
                      f"(the cosine's last rate over learning_rate), got "
                      f"{end!r}.")
  for name in ("batch_size", "num_train_steps", "log_every", "eval_every",
               "image_every", "checkpoint_every", "keep_checkpoints"):
    _positive(name, config[name], integer=True)
  if schedule == "cosine" and warmup >= config.num_train_steps:
    raise ConfigError(
        f"--config.warmup_steps={warmup} leaves no steps of the cosine "
        f"before --config.num_train_steps={config.num_train_steps}; warm up "
        f"over fewer steps or train longer.")
  keep_every = config.get("keep_checkpoint_every", 0)
  if not isinstance(keep_every, int) or isinstance(keep_every, bool) or \
      keep_every < 0:
    raise ConfigError(f"--config.keep_checkpoint_every must be an integer "
                      f">= 0 (0: only the newest keep_checkpoints), got "
                      f"{keep_every!r}.")
  if keep_every and keep_every % config.checkpoint_every:
    raise ConfigError(
        f"--config.keep_checkpoint_every={keep_every} is not a multiple of "
        f"checkpoint_every={config.checkpoint_every}, so no checkpoint would "
        "be kept by it; use a multiple.")
  import jax  # the device count decides how the batch splits
  if config.batch_size % jax.device_count():
    raise ConfigError(
        f"--config.batch_size={config.batch_size} does not split evenly over "
        f"{jax.device_count()} devices; use a multiple of {jax.device_count()}.")
  if config.dataset not in ("digits", "mnist"):
    _positive("image_size", config.image_size, integer=True)
  num_rungs = len(m.latent_dims)
  if num_rungs < 1:
    raise ConfigError("--config.model.latent_dims needs at least one rung.")
  for name in ("rung_kinds", "rung_widths"):
    if len(m[name]) != num_rungs:
      raise ConfigError(
          f"model.{name} has {len(m[name])} entries but model.latent_dims has "
          f"{num_rungs} rungs; give one entry per rung.")
  for l, dim in enumerate(m.latent_dims):
    if dim == 0 and not isinstance(dim, bool):
      if l < num_rungs - 1:
        continue  # a rung without a code (the single-code baseline)
      raise ConfigError(
          f"--config.model.latent_dims[{l}] must be a positive integer, got "
          "0: the top rung needs a code (only rungs below it may be 0).")
    _positive(f"model.latent_dims[{l}]", dim, integer=True)
  for l, (kind, widths) in enumerate(zip(m.rung_kinds, m.rung_widths)):
    _choice(f"model.rung_kinds[{l}]", kind, models.LAYER_KINDS)
    if not widths:
      raise ConfigError(f"model.rung_widths[{l}] is empty; give each rung at "
                        "least one layer width.")
    for w in widths:
      _positive(f"model.rung_widths[{l}]", w, integer=True)
  try:
    models.rung_shapes(datasets.image_shape(config), m.rung_kinds,
                       m.rung_widths, m.get("rung_strides", ()) or None)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  _positive("model.std_floor", m.std_floor)
  for term in ("mmd", "kl"):
    weights = tuple(config.loss.get(f"rung_{term}_weights", ()) or ())
    if weights and (len(weights) != num_rungs or any(
        isinstance(w, bool) or not isinstance(w, (int, float)) or
        not math.isfinite(w) or w < 0 for w in weights)):
      raise ConfigError(
          f"--config.loss.rung_{term}_weights={weights} must give one number "
          f">= 0 per rung ({num_rungs} rungs), or be () to use "
          f"loss.{term}_weight.")
  floors = tuple(m.get("rung_std_floors", ()) or ())
  if floors and (len(floors) != num_rungs or any(
      isinstance(f, bool) or not isinstance(f, (int, float)) or
      not math.isfinite(f) or f <= 0 for f in floors)):
    raise ConfigError(
        f"--config.model.rung_std_floors={floors} must give one number > 0 "
        f"per rung ({num_rungs} rungs), or be () to use model.std_floor.")
  ceilings = tuple(m.get("rung_std_ceilings", ()) or ())
  floors = floors or (m.std_floor,) * num_rungs
  if ceilings and (len(ceilings) != num_rungs or any(
      isinstance(c, bool) or not isinstance(c, (int, float)) or
      not math.isfinite(c) or c < 0 or c > 1 or (c and c <= f)
      for c, f in zip(ceilings, floors))):
    raise ConfigError(
        f"--config.model.rung_std_ceilings={ceilings} must give per rung "
        f"({num_rungs} rungs) 0 (no ceiling) or a number above the rung's std "
        f"floor and <= 1, or be () for none.")
  starts = tuple(config.get("rung_start_steps", ()) or ())
  if starts:
    if len(starts) != num_rungs:
      raise ConfigError(
          f"--config.rung_start_steps has {len(starts)} entries but the model "
          f"has {num_rungs} rungs; give one start step per rung (or ()).")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0
           for s in starts):
      raise ConfigError(f"--config.rung_start_steps={starts} must be integers "
                        ">= 0.")
    if min(starts) != 0:
      raise ConfigError(
          f"--config.rung_start_steps={starts} keeps every rung out of the "
          "decoder at step 0; start at least one rung (the top) at 0.")
  fade = config.get("rung_fade_steps", 0)
  if isinstance(fade, bool) or not isinstance(fade, int) or fade < 0:
    raise ConfigError(f"--config.rung_fade_steps must be an integer >= 0, got "
                      f"{fade!r}.")
  held_out = config.get("validation_size", 0)
  if isinstance(held_out, bool) or not isinstance(held_out, int) or \
      held_out < 0:
    raise ConfigError(f"--config.validation_size must be an integer >= 0 (0: "
                      f"no validation hold-out), got {held_out!r}.")
  if held_out and datasets.has_official_validation(config):
    raise ConfigError(
        f"--config.validation_size={held_out}: {config.dataset} has its "
        "official validation partition, which --split=validation reads; "
        "leave validation_size at 0.")
  workers = config.get("decode_workers", 0)
  if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
    raise ConfigError(f"--config.decode_workers must be an integer >= 0 (0 "
                      f"means every core), got {workers!r}.")
  prior = config.loss.num_prior_samples
  if isinstance(prior, bool) or not isinstance(prior, int) or prior < 0:
    raise ConfigError(f"--config.loss.num_prior_samples must be an integer "
                      f">= 0 (0 means the batch size), got {prior!r}.")
  if config.loss.estimator in ("unbiased", "linear") and (
      config.batch_size < 2 or prior == 1):
    raise ConfigError(
        f"the {config.loss.estimator} MMD estimator needs at least 2 samples; "
        f"batch_size={config.batch_size}, num_prior_samples={prior}.")
