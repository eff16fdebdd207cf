"""Workdir layout, saved config and Orbax checkpoints.

A workdir holds::

    config.json        the resolved config of the run (every other mode reads it)
    checkpoints/<step> Orbax checkpoints of the whole TrainState
    tb/                TensorBoard event files
    figures/, eval/    outputs of the analysis modes
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import ml_collections
import orbax.checkpoint as ocp
from absl import logging

CONFIG_FILE = "config.json"


class WorkdirError(ValueError):
  """A workdir that cannot be used as asked; the message says why and the fix."""


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG_FILE)


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with."""
  path = config_path(workdir)
  if not os.path.exists(path):
    raise WorkdirError(
        f"{workdir!r} has no {CONFIG_FILE}: it is not a training workdir; "
        "train first with `python main.py --workdir=...` or pass the right "
        "--workdir.")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def config_to_json(config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def _normalise(value):
  """JSON round-trip, so tuples and lists compare equal."""
  return json.loads(json.dumps(value, default=list))


# Fields that change how a run is trained or logged, not what the model is:
# a resumed run may change them freely.
RUN_FIELDS = ("num_train_steps", "log_every", "eval_every", "num_eval_batches",
              "image_every", "checkpoint_every", "keep_checkpoints", "name",
              "data_dir", "tfds_data_dir", "cache_dir", "skip_nonfinite",
              "deterministic", "decode_workers")


# How a layer is computed, not what it computes: every form is the same
# function of the same parameters.
COMPUTATION_FIELDS = ("model.upsample", "model.downsample")


def config_differences(saved: dict, new: dict, prefix: str = ""):
  """Dotted names of model-relevant fields whose values differ."""
  diffs = []
  for key in sorted(set(saved) | set(new)):
    name = f"{prefix}{key}"
    if (not prefix and key in RUN_FIELDS) or name in COMPUTATION_FIELDS:
      continue
    a, b = saved.get(key), new.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      diffs += config_differences(a, b, prefix=f"{name}.")
    elif _normalise(a) != _normalise(b):
      diffs.append(f"{name}: {a!r} -> {b!r}")
  return diffs


def has_checkpoint(workdir: str) -> bool:
  """Whether the workdir holds a finished checkpoint step folder."""
  folder = checkpoint_dir(workdir)
  return os.path.isdir(folder) and any(
      name.isdigit() for name in os.listdir(folder))


def check_config(workdir: str, config, allow_config_change: bool = False):
  """Refuses a model-changing edit of an existing run (writes nothing).

  A workdir without a checkpoint (a first run that failed before saving,
  e.g. out of memory) holds nothing to protect: it takes the new config.
  """
  path = config_path(workdir)
  if os.path.exists(path) and has_checkpoint(workdir):
    with open(path) as f:
      saved = json.load(f)
    diffs = config_differences(saved, json.loads(config_to_json(config)))
    if diffs and not allow_config_change:
      raise WorkdirError(
          f"workdir {workdir!r} holds a run with a different config "
          f"({'; '.join(diffs)}); use a new --workdir, or pass "
          "--allow_config_change to resume it with the new values.")


def write_config(workdir: str, config, allow_config_change: bool = False):
  """Writes config.json (atomically), after ``check_config``."""
  check_config(workdir, config, allow_config_change)
  path = config_path(workdir)
  os.makedirs(workdir, exist_ok=True)
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(config_to_json(config))
  os.replace(tmp, path)


class TrainerLock:
  """One trainer per workdir: an exclusive ``flock`` on ``<workdir>/.lock``.

  The kernel drops the lock when its process ends, however it ends (even
  SIGKILL), so a stale lock file never blocks a rerun; the file holds the
  holder's pid and host for the refusal message.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, ".lock")
    self._file = None

  def __enter__(self):
    import fcntl
    import socket
    os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
    handle = open(self.path, "a+")
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      handle.seek(0)
      holder = handle.read().strip() or "another process"
      handle.close()
      raise WorkdirError(
          f"workdir {os.path.dirname(self.path)!r} is being trained by "
          f"{holder}; wait for it, stop it, or use another --workdir.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
    handle.flush()
    self._file = handle
    return self

  def __exit__(self, *exc):
    import fcntl
    if self._file is not None:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None


def make_manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         enable_async_checkpointing=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any,
                   set_aside: bool = False) -> Optional[Any]:
  """The newest checkpoint that restores, or None; broken ones are skipped.

  A checkpoint cut short by a crash (truncated or deleted files) is skipped
  with a warning naming it. Nothing is deleted: with ``set_aside`` (training,
  which will write that step again) the folder is renamed to
  ``<step>.unreadable-<n>`` so the new save cannot collide with it.
  """
  for step in sorted(manager.all_steps(), reverse=True):
    path = os.path.join(str(manager.directory), str(step))
    try:
      return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except Exception as e:  # pylint: disable=broad-except
      reason = (str(e).splitlines() or [""])[0][:200]
      if set_aside:
        n = 0
        while os.path.exists(f"{path}.unreadable-{n}"):
          n += 1
        os.rename(path, f"{path}.unreadable-{n}")
        manager.reload()
        logging.warning("skipping unreadable checkpoint %s (%s: %s); kept as "
                        "%s", path, type(e).__name__, reason,
                        f"{path}.unreadable-{n}")
        print(f"warning: skipping unreadable checkpoint {path}; kept as "
              f"{path}.unreadable-{n}", flush=True)
      else:
        logging.warning("skipping unreadable checkpoint %s (%s: %s)", path,
                        type(e).__name__, reason)
        print(f"warning: skipping unreadable checkpoint {path}", flush=True)
  return None
