"""Workdir layout, saved config and Orbax checkpoints.

A workdir holds::

    config.json        the resolved config of the run (every other mode reads it)
    checkpoints/<step> Orbax checkpoints of the whole TrainState
    tb/                TensorBoard event files
    figures/, eval/    outputs of the analysis modes
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from typing import Any, Dict, List, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

CONFIG_FILE = "config.json"


class WorkdirError(ValueError):
  """A workdir that cannot be used as asked; the message says why and the fix."""


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG_FILE)


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


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
              "image_every", "checkpoint_every", "keep_checkpoints", "name",
              "data_dir", "tfds_data_dir", "cache_dir", "skip_nonfinite",
              "deterministic", "decode_workers", "max_train_minutes")


# How a layer is computed, not what it computes: every form, and either
# matrix-product backend, is the same function of the same parameters (a
# workdir saved before model.matmul existed resumes too).
COMPUTATION_FIELDS = ("model.upsample", "model.downsample", "model.matmul")


def config_differences(saved: dict, new: dict, prefix: str = ""):
  """Dotted names of model-relevant fields whose values differ."""
  diffs = []
  for key in sorted(set(saved) | set(new)):
    name = f"{prefix}{key}"
    if (not prefix and key in RUN_FIELDS) or name in COMPUTATION_FIELDS:
      continue
    a, b = saved.get(key), new.get(key)
    if (key not in saved and not b) or (key not in new and not a):
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
    _atomic_write(path, text)
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
    self.path = os.path.join(workdir, ".lock")
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


# ----------------------------------------------------------------------------
# Checkpoints: Orbax folders checked by a checksum manifest.
#
# Before each (asynchronous) save, a manifest of the state is written to
# ``checkpoints/manifests/<step>.json``: per array its tree path, shape, dtype
# and the SHA-256 of its bytes. Restoring compares the restored arrays with it,
# so a flipped byte anywhere in the saved values is caught, whatever Orbax's
# file layout. The manifest is written first (atomically), so every finalised
# checkpoint of this version has one; Orbax ignores the folder.

MANIFEST_DIR = "manifests"


class IncompatibleCheckpointError(WorkdirError):
  """The checkpoint holds a model of another structure or shape."""


class CheckpointAccessError(WorkdirError):
  """Reading or writing a checkpoint failed for a reason that is not damage to
  it (memory, permissions, a full disk, I/O): nothing is set aside."""


# Errors that say nothing about the checkpoint's integrity.
_TRANSIENT_ERRNOS = {errno.ENOMEM, errno.ENOSPC, errno.EACCES, errno.EPERM,
                     errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.EINTR,
                     errno.EIO, errno.EROFS, errno.EDQUOT, errno.ETIMEDOUT,
                     errno.ESTALE}
_TRANSIENT_TEXT = ("RESOURCE_EXHAUSTED", "PERMISSION_DENIED", "Out of memory",
                   "out of memory", "No space left", "UNAVAILABLE",
                   "DEADLINE_EXCEEDED", "Read-only file system",
                   "Permission denied")


def is_transient(error: BaseException) -> bool:
  """Whether ``error`` (or an error it was raised from) is a resource or
  access problem rather than damage to the files read."""
  seen = 0
  while error is not None and seen < 10:
    if isinstance(error, MemoryError):
      return True
    if isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS:
      return True
    if any(t in str(error) for t in _TRANSIENT_TEXT):
      return True
    error = error.__cause__ or error.__context__
    seen += 1
  return False


def first_line(error: BaseException, limit: int = 200) -> str:
  """``Type: first line`` of an error; an OS error's own words where the
  error (a TensorStore one, say) says which."""
  for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "ENOMEM"):
    words = os.strerror(getattr(errno, name))
    if words in str(error):
      return words
  text = (str(error).strip().splitlines() or [""])[0][:limit]
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _key_name(entry) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _leaves_by_path(tree) -> Dict[str, Any]:
  """``{"params/rung_0/...": leaf}`` for any pytree (dicts, dataclasses)."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {"/".join(_key_name(k) for k in path): leaf for path, leaf in flat}


def state_manifest(state) -> Dict[str, Dict[str, Any]]:
  """Per array of ``state``: shape, dtype and SHA-256 of its bytes."""
  manifest = {}
  for name, leaf in _leaves_by_path(jax.device_get(state)).items():
    array = np.ascontiguousarray(np.asarray(leaf))
    manifest[name] = {"shape": list(array.shape), "dtype": str(array.dtype),
                      "sha256": hashlib.sha256(array.tobytes()).hexdigest()}
  return manifest


def _atomic_write(path: str, text: str):
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def manifest_path(directory: str, step: int) -> str:
  return os.path.join(str(directory), MANIFEST_DIR, f"{step}.json")


def write_manifest(directory: str, step: int, state):
  os.makedirs(os.path.join(str(directory), MANIFEST_DIR), exist_ok=True)
  _atomic_write(manifest_path(directory, step),
                json.dumps({"step": step, "arrays": state_manifest(state)}))


def read_manifest(directory: str, step: int) -> Optional[Dict[str, Any]]:
  """The step's manifest, None when there is none; ValueError if unreadable."""
  path = manifest_path(directory, step)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    data = json.load(f)  # JSONDecodeError is a ValueError
  if not isinstance(data, dict) or not isinstance(data.get("arrays"), dict):
    raise ValueError(f"{path} is not a checkpoint manifest")
  return data["arrays"]


def manifest_mismatches(state, manifest) -> List[str]:
  """Arrays of ``state`` whose bytes, shape or dtype differ from the
  manifest, and arrays missing on either side."""
  actual = state_manifest(state)
  bad = [f"{name} (not in the manifest)" for name in actual
         if name not in manifest]
  bad += [f"{name} (missing)" for name in manifest if name not in actual]
  bad += [f"{name} (checksum)" for name in actual
          if name in manifest and actual[name] != manifest[name]]
  return bad


def structure_differences(saved_tree, abstract_state) -> List[str]:
  """Arrays whose presence, shape or dtype differ between a checkpoint's
  metadata tree and the state the current config builds."""
  def spec(leaf):
    shape = getattr(leaf, "shape", None)
    dtype = getattr(leaf, "dtype", None)
    return (tuple(shape) if shape is not None else None,
            str(np.dtype(dtype)) if dtype is not None else None)
  saved = {k: spec(v) for k, v in _leaves_by_path(saved_tree).items()}
  wanted = {k: spec(v) for k, v in _leaves_by_path(abstract_state).items()}
  order = lambda names: sorted(names, key=lambda k: (
      not k.startswith("params"), k))  # parameters first: the clearest
  diffs = [f"{k}: saved {saved[k][0]}, now {wanted[k][0]}"
           for k in order(set(saved) & set(wanted)) if saved[k] != wanted[k]]
  diffs += [f"{k}: only in the checkpoint" for k in order(set(saved) - set(wanted))]
  diffs += [f"{k}: not in the checkpoint" for k in order(set(wanted) - set(saved))]
  return diffs


def make_manager(workdir: str, keep: int = 3, read_only: bool = False
                 ) -> ocp.CheckpointManager:
  """Orbax manager of ``<workdir>/checkpoints``; ``read_only`` for the
  analysis modes (creates, cleans and deletes nothing)."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=not read_only, read_only=read_only,
      cleanup_tmp_directories=False, enable_async_checkpointing=not read_only)
  # The handler named up front, so item_metadata works before any restore.
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


class CheckpointSaveError(WorkdirError):
  """A checkpoint could not be written (e.g. a full disk)."""


def save_checkpoint(manager: ocp.CheckpointManager, step: int, state):
  """Writes the step's manifest, then starts Orbax's asynchronous save.

  Raises ``CheckpointSaveError`` (one line naming the folder) if this or the
  previous save failed.
  """
  directory = str(manager.directory)
  try:
    manager.wait_until_finished()  # the previous save's error surfaces here
    write_manifest(directory, step, state)
    manager.save(step, args=ocp.args.StandardSave(state))
  except Exception as e:  # pylint: disable=broad-except
    raise _save_error(manager, step, e) from e
  _prune_manifests(directory, set(manager.all_steps()) | {step})


def check_saves(manager: ocp.CheckpointManager, step: int,
                current_step: Optional[int] = None) -> bool:
  """Whether the asynchronous save of ``step`` has finished; raises
  ``CheckpointSaveError`` if it failed. Cheap enough to call every step
  until it returns True."""
  if manager.is_saving_in_progress():
    return False
  try:
    manager.wait_until_finished()  # returns at once; raises a failed save's error
    manager.check_for_errors()
  except Exception as e:  # pylint: disable=broad-except
    raise _save_error(manager, step, e, current_step) from e
  return True


def finish_saves(manager: ocp.CheckpointManager, step: int):
  try:
    manager.wait_until_finished()
    manager.check_for_errors()
  except Exception as e:  # pylint: disable=broad-except
    raise _save_error(manager, step, e) from e


def stopped_by_write_error(manager, step: int, what: str
                          ) -> CheckpointSaveError:
  """The one-line error for a write that failed with training at ``step``
  (a full disk): what failed, and which checkpoints are intact."""
  saved = [s for s in manager.all_steps() if s < step]
  keep = (f"earlier checkpoints are intact (newest: step {max(saved)})"
          if saved else "no earlier checkpoint")
  return CheckpointSaveError(
      f"{what}; training stopped at step {step}, {keep}. Free space or fix "
      "the folder, then run the same command again.")


def _save_error(manager, step, error, current_step=None
                ) -> CheckpointSaveError:
  return stopped_by_write_error(
      manager, current_step or step,
      f"saving checkpoint {step} to {manager.directory} failed "
      f"({first_line(error)})")


def _prune_manifests(directory: str, steps):
  folder = os.path.join(directory, MANIFEST_DIR)
  for name in os.listdir(folder) if os.path.isdir(folder) else []:
    stem = name.split(".")[0]
    if name.endswith(".json") and stem.isdigit() and int(stem) not in steps:
      try:
        os.remove(os.path.join(folder, name))
      except OSError:
        pass


def _set_aside(manager, path: str) -> str:
  n = 0
  while os.path.exists(f"{path}.unreadable-{n}"):
    n += 1
  os.rename(path, f"{path}.unreadable-{n}")
  manager.reload()
  return f"{path}.unreadable-{n}"


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any,
                   set_aside: bool = False, changed_fields=()) -> Optional[Any]:
  """The newest checkpoint that restores and matches its manifest, or None.

  - damaged (unreadable files, a format error, a checksum that does not
    match): skipped with a warning naming it and why; with ``set_aside``
    (training, which will write that step again) the folder is renamed to
    ``<step>.unreadable-<n>``. Nothing is deleted.
  - incompatible (another structure or shape than ``abstract_state``):
    ``IncompatibleCheckpointError`` naming the arrays (and
    ``changed_fields``, the config edits that explain them); nothing renamed.
  - transient (memory, permissions, I/O): ``CheckpointAccessError``; nothing
    renamed.
  A checkpoint without a manifest cannot be verified and is damaged too
  (every save writes its manifest before Orbax writes the arrays, so a
  finalised checkpoint without one has lost it).
  """
  directory = str(manager.directory)
  for step in sorted(manager.all_steps(), reverse=True):
    path = os.path.join(directory, str(step))
    problem = None
    try:
      saved_tree = manager.item_metadata(step)
      saved_tree = getattr(saved_tree, "tree", saved_tree)
      if saved_tree is None:
        raise ValueError("no array metadata")
    except Exception as e:  # pylint: disable=broad-except
      if is_transient(e):
        raise CheckpointAccessError(
            f"cannot read checkpoint {path} ({first_line(e)}); nothing was "
            "changed. Fix the cause and run the same command again.") from e
      problem, saved_tree = first_line(e), None
    if problem is None and saved_tree is not None:
      diffs = structure_differences(saved_tree, abstract_state)
      if diffs:
        because = (f" (the config changed: {'; '.join(changed_fields)})"
                   if changed_fields else "")
        shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more"
                                        if len(diffs) > 3 else "")
        raise IncompatibleCheckpointError(
            f"checkpoint {path} holds a model of another shape than the "
            f"config builds{because}: {shown}. Nothing was changed; train the "
            "new model in a new --workdir, or drop the changed fields to "
            "resume this one.")
    if problem is None:
      try:
        manifest = read_manifest(directory, step)
      except (OSError, ValueError) as e:
        problem = f"unreadable manifest: {first_line(e)}"
      else:
        if manifest is None:
          problem = (f"no checksum manifest {manifest_path(directory, step)}, "
                     "so it cannot be verified")
    if problem is None:
      try:
        restored = manager.restore(step, args=ocp.args.StandardRestore(
            abstract_state))
      except Exception as e:  # pylint: disable=broad-except
        if is_transient(e):
          raise CheckpointAccessError(
              f"cannot read checkpoint {path} ({first_line(e)}); nothing was "
              "changed. Fix the cause and run the same command again.") from e
        problem = first_line(e)
    if problem is None:
      bad = manifest_mismatches(restored, manifest)
      if not bad:
        return restored
      problem = (f"{len(bad)} array(s) differ from the manifest written "
                 f"when it was saved: {', '.join(bad[:3])}")
    if set_aside:
      kept = _set_aside(manager, path)
      print(f"warning: skipping damaged checkpoint {path} ({problem}); kept "
            f"as {kept}", flush=True)
    else:
      print(f"warning: skipping damaged checkpoint {path} ({problem})",
            flush=True)
  return None
