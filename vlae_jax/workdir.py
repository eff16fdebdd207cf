"""The workdir: its layout, saved config, config comparison and trainer lock.

Every path of a workdir is named here, and nothing here needs JAX, so the
command line reads a run's config before JAX starts::

    config.json              the resolved config of the run (every mode reads it)
    .lock                    held by the one trainer (pid and host inside)
    checkpoints/<step>/      Orbax checkpoints of the whole TrainState
    checkpoints/manifests/   a checksum manifest per step (vlae_jax.checkpoints)
    tb/                      TensorBoard event files
    figures/                 the figure modes' output (traverse, sample, ...)
    eval/                    evaluate's metrics, tables and heatmaps
"""

from __future__ import annotations

import errno
import json
import os

import ml_collections

from vlae_jax import files

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
CHECKPOINTS = "checkpoints"
MANIFESTS = "manifests"  # inside checkpoints/
EVENTS = "tb"
FIGURES = "figures"
EVALUATION = "eval"




class WorkdirError(ValueError):
  """A workdir that cannot be used as asked; the message says why and the fix."""


# Config fields that name files or folders: ``~`` and ``$VARS`` in them are
# expanded, as a shell would have (it does not after ``--flag=``).
PATH_FIELDS = ("data_dir", "tfds_data_dir", "cache_dir", "labels_file")


def expand_path(path: str) -> str:
  """``~`` and environment variables expanded; "" stays ""."""
  return os.path.expanduser(os.path.expandvars(path)) if path else path


def expand_config_paths(config):
  """Expands every ``PATH_FIELDS`` value of ``config`` in place."""
  for field in PATH_FIELDS:
    value = config.get(field)
    if isinstance(value, str) and value:
      config[field] = expand_path(value)
  return config


DATA_RECORD = "data.json"  # the data a run was trained on: folder, fingerprint


def read_data_record(workdir: str):
  """``{"data_dir", "fingerprint"}`` of the data the run was trained on, or
  None (a run on bundled or TFDS data, or trained by an earlier version)."""
  try:
    with open(os.path.join(workdir, DATA_RECORD)) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return None
  if not (isinstance(record, dict) and isinstance(record.get("data_dir"), str)
          and isinstance(record.get("fingerprint"), str)):
    return None
  return record


def write_data_record(workdir: str, data_dir: str, fingerprint: str):
  files.write_atomically(os.path.join(workdir, DATA_RECORD), json.dumps(
      {"data_dir": os.path.abspath(data_dir), "fingerprint": fingerprint}))


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG_FILE)


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINTS)


def events_dir(workdir: str) -> str:
  return os.path.join(workdir, EVENTS)


def output_dir(workdir: str, mode: str) -> str:
  """Where an analysis mode writes by default: eval/ for evaluate, else
  figures/."""
  return os.path.join(workdir, EVALUATION if mode == "evaluate" else FIGURES)


def lock_path(workdir: str) -> str:
  return os.path.join(workdir, LOCK_FILE)


def check_workdir(workdir: str):
  """Refuses a workdir path that cannot be a folder (e.g. a regular file)."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir {workdir!r} is a file, not a folder; pass "
                       "a folder path (it is created if missing).")


def read_saved_config(workdir: str) -> dict:
  """The workdir's config.json as a dict; WorkdirError if missing or broken."""
  check_workdir(workdir)
  path = config_path(workdir)
  if not os.path.exists(path):
    raise WorkdirError(
        f"{workdir!r} has no {CONFIG_FILE}: it is not a training workdir; "
        "train first with `python main.py --workdir=...` or pass the right "
        "--workdir.")
  try:
    with open(path) as f:
      saved = json.load(f)
  except ValueError as e:
    raise WorkdirError(
        f"{path} is damaged ({first_line(e)}); rerun training with the run's "
        "--config and --allow_config_change to rewrite it (its checkpoints "
        "are kept and resumed if they fit that config).") from None
  except OSError as e:
    raise WorkdirError(f"cannot read {path} ({first_line(e)}).") from None
  if not isinstance(saved, dict):
    raise WorkdirError(
        f"{path} is not a config (a JSON object); rerun training with the "
        "run's --config and --allow_config_change to rewrite it.")
  return saved


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with."""
  return ml_collections.ConfigDict(read_saved_config(workdir))


def config_to_json(config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def _normalise(value):
  """JSON round-trip, so tuples and lists compare equal."""
  return json.loads(json.dumps(value, default=list))


# Fields that change how a run is trained or logged, not what the model is:
# a resumed run may change them freely.
RUN_FIELDS = ("num_train_steps", "log_every", "eval_every", "num_eval_batches",
              "image_every", "checkpoint_every", "keep_checkpoints",
              "keep_checkpoint_every", "name",
              "data_dir", "tfds_data_dir", "cache_dir", "skip_nonfinite",
              "deterministic", "decode_workers", "max_train_minutes",
              "labels_file")


# How a layer is computed, not what it computes: every form, and either
# matrix-product backend, is the same function of the same parameters (a
# workdir saved before model.matmul existed resumes too).
COMPUTATION_FIELDS = ("model.upsample", "model.downsample", "model.matmul")


# Fields added after runs were saved whose default is not falsy: a saved
# config without them ran exactly as with these values.
ADDED_FIELD_DEFAULTS = {"loss.regularizer": "mmd", "loss.kl_weight": 1.0,
                        "learning_rate_schedule": "constant"}


def config_differences(saved: dict, new: dict, prefix: str = ""):
  """Dotted names of model-relevant fields whose values differ."""
  diffs = []
  for key in sorted(set(saved) | set(new)):
    name = f"{prefix}{key}"
    if (not prefix and key in RUN_FIELDS) or name in COMPUTATION_FIELDS:
      continue
    a, b = saved.get(key), new.get(key)
    neutral = ADDED_FIELD_DEFAULTS.get(name)
    if (key not in saved and (not b or _normalise(b) == neutral)) or (
        key not in new and (not a or _normalise(a) == neutral)):
      continue  # a field a later version added, at its neutral default
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
  Returns the model-relevant fields that differ from the saved config.
  """
  check_workdir(workdir)
  path = config_path(workdir)
  if not (os.path.exists(path) and has_checkpoint(workdir)):
    return []
  try:
    saved = read_saved_config(workdir)
  except WorkdirError:
    if allow_config_change:
      return []  # the way out: rewrite it from the command line's config
    raise
  diffs = config_differences(saved, json.loads(config_to_json(config)))
  if config.get("learning_rate_schedule", "constant") == "cosine" and \
      saved.get("num_train_steps") != config.num_train_steps:
    # The cosine's length is the budget: another one bends the rate mid-run.
    diffs.append(f"num_train_steps: {saved.get('num_train_steps')!r} -> "
                 f"{config.num_train_steps!r} (the length of the cosine "
                 "learning-rate schedule)")
  if diffs and not allow_config_change:
    raise WorkdirError(
        f"workdir {workdir!r} holds a run with a different config "
        f"({'; '.join(diffs)}); use a new --workdir, or pass "
        "--allow_config_change to resume it with the new values.")
  return diffs


def write_config(workdir: str, config):
  """Writes config.json (atomically, only when it changes). The caller has
  run ``check_config``."""
  path = config_path(workdir)
  text = config_to_json(config)
  try:
    with open(path) as f:
      if f.read() == text:
        return  # unchanged: a read-only finished run needs no write
  except (OSError, UnicodeDecodeError):
    pass
  try:
    os.makedirs(workdir, exist_ok=True)
    atomic_write(path, text)
  except OSError as e:
    raise WorkdirError(
        f"cannot write {path} ({first_line(e)}); pass a --workdir in a "
        "writable folder.") from None


class TrainerLock:
  """One trainer per workdir: an exclusive ``flock`` on ``<workdir>/.lock``.

  The kernel drops the lock when its process ends, however it ends (even
  SIGKILL), so a stale lock file never blocks a rerun; the file holds the
  holder's pid and host for the refusal message.
  """

  def __init__(self, workdir: str):
    self.path = lock_path(workdir)
    self._file = None
    self.read_only = False

  def __enter__(self):
    import fcntl
    import socket
    try:
      os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
      handle = open(self.path, "a+")
    except OSError as e:
      if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
        raise WorkdirError(f"cannot create {self.path} ({first_line(e)}); "
                           "pass a --workdir in a writable folder.") from None
      # A read-only workdir: nobody can train it, so nothing to lock; the
      # trainer may only confirm that the run is finished.
      self.read_only = True
      return self
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


def first_line(error: BaseException, limit: int = 200) -> str:
  """``Type: first line`` of an error; an OS error's own words where the
  error (a TensorStore one, say) says which."""
  for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "ENOMEM"):
    words = os.strerror(getattr(errno, name))
    if words in str(error):
      return words
  text = (str(error).strip().splitlines() or [""])[0][:limit]
  return f"{type(error).__name__}: {text}" if text else type(error).__name__



def atomic_write(path: str, text: str):
  files.write_atomically(path, text)
