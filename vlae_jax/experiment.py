"""What a run is made of: the model and the TrainState built from a config,
and a trained run loaded back from its workdir.

Below both the training loop (train.py) and the analysis modes
(analysis.py, the evaluation package), so neither imports the other to build a model
or a state.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from vlae_jax import checkpoints, datasets, models, objective
from vlae_jax import workdir as workdirs


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; a pytree, saved whole by Orbax."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array                  # base key; step s uses fold_in(rng, s)
  skipped_updates: jax.Array      # non-finite updates skipped so far


def learning_rate_schedule(config):
  """The learning rate as a function of the step: ``config.learning_rate``
  (a float, plain Adam's constant) or an optax schedule.

  - warm-up: from 0 up to ``learning_rate`` linearly over
    ``config.warmup_steps`` steps where that is set;
  - ``config.learning_rate_schedule == "cosine"``: then a cosine from
    ``learning_rate`` down to ``learning_rate * learning_rate_end_fraction``
    at ``config.num_train_steps``, and that end value after it.

  Why a warm-up: Adam moves every weight by about the learning rate from
  the first step on, whatever the gradient's size, so a dense head with a
  large fan-in (rung 0's at 64x64 reads 32 x 32 x 64 features) moves its
  output by fan-in x rate at once and its codes leave the MMD kernel's
  reach, where the MMD term has no gradient. Why a decay: with a constant
  rate the rungs keep trading factors late in training (the light's colour
  drifting from rung 0 to rung 1 between 8,000 and 16,000 CelebA steps,
  docs/FIDELITY.md); a falling rate settles the split the run ends with.
  A cosine's length is the run's budget, fixed from its first step, so a
  cosine run is resumed with the same ``num_train_steps`` (workdir.py)."""
  rate = config.learning_rate
  warmup = config.get("warmup_steps", 0)
  if config.get("learning_rate_schedule", "constant") == "constant":
    return optax.linear_schedule(0.0, rate, warmup) if warmup else rate
  cosine = optax.cosine_decay_schedule(
      rate, config.num_train_steps - warmup,
      alpha=config.get("learning_rate_end_fraction", 0.0))
  if not warmup:
    return cosine
  return optax.join_schedules(
      [optax.linear_schedule(0.0, rate, warmup), cosine], [warmup])


def make_optimizer(config) -> optax.GradientTransformation:
  """Adam at ``learning_rate_schedule(config)``. A constant rate with no
  warm-up keeps plain Adam (and the optimizer state of runs saved before
  the schedules existed)."""
  return optax.adam(learning_rate_schedule(config))


def create_model(config, image_shape=None) -> models.VLAE:
  shape = image_shape or datasets.image_shape(config)
  return models.model_from_config(config.model, shape, config.dtype)


def create_train_state(config, model: models.VLAE) -> TrainState:
  """Initial state from ``config.seed`` (params, batch stats, Adam moments)."""
  init_key, state_key = jax.random.split(jax.random.PRNGKey(config.seed))
  dummy = jnp.zeros((2,) + tuple(model.image_shape), jnp.float32)
  variables = jax.jit(functools.partial(model.init, train=False))(
      {"params": init_key, "noise": init_key}, dummy)
  params = variables["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables.get("batch_stats", {}),
      opt_state=make_optimizer(config).init(params),
      rng=state_key,
      skipped_updates=jnp.zeros((), jnp.int32))


def load_experiment(workdir: str, step: Optional[int] = None):
  """``(config, model, state)`` of a workdir's newest valid checkpoint, or
  of its checkpoint at ``step`` (the analysis modes' --checkpoint_step).

  Raises ``WorkdirError`` (one line, with the fix) when there is none, or
  none at ``step`` (naming the steps there are).
  """
  config = workdirs.load_config(workdir)
  model = create_model(config)
  abstract = jax.eval_shape(lambda: create_train_state(config, model))
  if not os.path.isdir(workdirs.checkpoint_dir(workdir)):
    raise workdirs.WorkdirError(
        f"workdir {workdir!r} has no checkpoint; train first with "
        f"`python main.py --workdir={workdir}`.")
  manager = checkpoints.make_manager(workdir, config.keep_checkpoints,
                                     read_only=True)
  try:
    saved_steps = sorted(manager.all_steps())
    if step is not None and step not in saved_steps:
      raise workdirs.WorkdirError(
          f"workdir {workdir!r} has no checkpoint at step {step}; it keeps "
          f"steps {', '.join(map(str, saved_steps)) or 'none'}: pass one of "
          "them to --checkpoint_step (config.keep_checkpoints and "
          "config.keep_checkpoint_every decide which a run keeps).")
    state = checkpoints.restore_verified(manager, abstract, wanted_step=step)
  finally:
    manager.close()
  if state is None and step is not None:
    raise workdirs.WorkdirError(
        f"checkpoint {step} of workdir {workdir!r} is unreadable (the "
        "warning above says why); pass another --checkpoint_step.")
  if state is None:
    raise workdirs.WorkdirError(
        f"workdir {workdir!r} has no readable checkpoint; train first with "
        f"`python main.py --workdir={workdir}`.")
  end = objective.schedule_end(config)
  if int(state.step) < end:
    # Analysis decodes with every rung at full scale, as after the schedule.
    print(f"note: step {int(state.step)} is inside the progressive schedule "
          f"(every rung fully in from step {end}); the analysis decodes with "
          "every rung at full scale.", flush=True)
  return config, model, state


def local_data_fingerprint(config):
  """The decode-cache fingerprint of a run's local data folder; None for
  bundled digits and TFDS data."""
  return datasets.local_fingerprint(config)


def check_data_folder(workdir: str, config, allow_change: bool = False):
  """Refuses (``WorkdirError``) a ``data_dir`` other than the run's whose
  files differ from those the run was trained on; writes nothing. Returns
  the folder's fingerprint (None for bundled or TFDS data)."""
  fingerprint = local_data_fingerprint(config)
  record = workdirs.read_data_record(workdir)
  if (fingerprint is None or record is None or allow_change
      or os.path.abspath(config.data_dir) == record["data_dir"]
      or fingerprint == record["fingerprint"]):
    return fingerprint
  raise workdirs.WorkdirError(
      f"--config.data_dir={config.data_dir} holds other files than the run "
      f"in {workdir} was trained on (fingerprint {fingerprint[:12]}; the "
      f"run's, from {record['data_dir']}: {record['fingerprint'][:12]}); "
      "point it at the run's data, moved with its files' sizes and "
      "modification times (mv, cp -p, rsync -t)"
      + ("." if allow_change is None else
         ", or pass --allow_config_change to train on the new data."))


def repoint_data(workdir: str, data_dir: str) -> bool:
  """An analysis mode's ``--config.data_dir=NEW``: the run's data, moved.

  Accepted when the new folder's fingerprint matches the one recorded at
  training (or when none was recorded, with a warning); then config.json
  and the record point there, so later commands need no flag. Returns
  whether anything changed.
  """
  saved = workdirs.load_config(workdir) if os.path.exists(
      workdirs.config_path(workdir)) else None
  if saved is None or not saved.get("data_dir") or (
      os.path.abspath(data_dir) == os.path.abspath(saved.data_dir)):
    return False
  if not os.path.isdir(data_dir):
    raise datasets.DataError(
        f"data_dir {datasets.display_name(data_dir)!r} does not exist; "
        "point --config.data_dir at the folder the run's data is in now.")
  moved = saved.copy_and_resolve_references()
  moved.data_dir = os.path.abspath(data_dir)
  fingerprint = check_data_folder(workdir, moved, allow_change=None)
  if workdirs.read_data_record(workdir) is None:
    print(f"warning: {workdir} records no fingerprint of its data (trained "
          f"by an earlier version); {data_dir} is used unchecked.",
          flush=True)
  workdirs.write_config(workdir, moved)
  workdirs.write_data_record(workdir, moved.data_dir, fingerprint)
  print(f"data folder re-pointed: {saved.data_dir} -> {moved.data_dir} "
        "(the files the run was trained on)", flush=True)
  return True

