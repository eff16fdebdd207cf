"""Orbax checkpoints of the TrainState, each checked by a checksum manifest.

The workdir around them (layout, config.json, trainer lock) is
``vlae_jax.workdir``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from typing import Any, Dict, List, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from vlae_jax.workdir import (MANIFESTS, WorkdirError, atomic_write,
                              checkpoint_dir, first_line)

# ----------------------------------------------------------------------------
# Checkpoints: Orbax folders checked by a checksum manifest.
#
# Before each (asynchronous) save, a manifest of the state is written to
# ``checkpoints/manifests/<step>.json``: per array its tree path, shape, dtype
# and the SHA-256 of its bytes. Restoring compares the restored arrays with it,
# so a flipped byte anywhere in the saved values is caught, whatever Orbax's
# file layout. The manifest is written first (atomically), so every finalised
# checkpoint of this version has one; Orbax ignores the folder.

MANIFEST_DIR = MANIFESTS


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


def manifest_path(directory: str, step: int) -> str:
  return os.path.join(str(directory), MANIFEST_DIR, f"{step}.json")


def write_manifest(directory: str, step: int, state):
  os.makedirs(os.path.join(str(directory), MANIFEST_DIR), exist_ok=True)
  atomic_write(manifest_path(directory, step),
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


def make_manager(workdir: str, keep: int = 3, read_only: bool = False,
                 keep_every: int = 0) -> ocp.CheckpointManager:
  """Orbax manager of ``<workdir>/checkpoints``: the newest ``keep``, and
  every step that is a multiple of ``keep_every`` (0: none); ``read_only``
  for the analysis modes (creates, cleans and deletes nothing)."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, keep_period=keep_every or None,
      create=not read_only, read_only=read_only,
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


def restore_verified(manager: ocp.CheckpointManager, abstract_state: Any,
                     set_aside: bool = False, changed_fields=(),
                     wanted_step: Optional[int] = None) -> Optional[Any]:
  """The newest checkpoint that restores and matches its manifest, or None.

  ``wanted_step``: that step's checkpoint or None (no fall-back to another
  step: an analysis asked for that step, e.g. a point of a training curve).

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
  steps = sorted(manager.all_steps(), reverse=True)
  if wanted_step is not None:
    steps = [s for s in steps if s == wanted_step]
  for step in steps:
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
