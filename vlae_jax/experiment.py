"""What a run is made of: the model and the TrainState built from a config,
and a trained run loaded back from its workdir.

Below both the training loop (train.py) and the analysis modes
(analysis.py, evaluate.py), so neither imports the other to build a model
or a state.
"""

from __future__ import annotations

import functools
import os
from typing import Any

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


def make_optimizer(config) -> optax.GradientTransformation:
  return optax.adam(config.learning_rate)


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


def load_experiment(workdir: str):
  """``(config, model, state)`` of a workdir's newest valid checkpoint.

  Raises ``WorkdirError`` (one line, with the fix) when there is none.
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
    state = checkpoints.restore_latest(manager, abstract)
  finally:
    manager.close()
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
