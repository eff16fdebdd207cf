"""Jit-compiled train/eval steps and the train loop (the objective they
minimise is ``vlae_jax.objective``).

Every random draw of step s comes from ``fold_in(state.rng, s)``, and the data
stream is a pure function of ``(seed, s)``, so a resumed run is bitwise the same
as an uninterrupted one.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vlae_jax import (blas, checkpoints, configuration, datasets,
                      input_pipeline, interrupts, parallel, reporting)
from vlae_jax import experiment
from vlae_jax import workdir as workdirs
from vlae_jax.experiment import (TrainState, create_model, create_train_state,
                                 make_optimizer)
from vlae_jax import objective
from vlae_jax.objective import (aggregate_mmd, loss_fn, model_variables,
                                reconstruction_loss, rung_scales)


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
  return jnp.all(jnp.stack(leaves))


def train_step(state: TrainState, batch, *, model, config
               ) -> Tuple[TrainState, Dict[str, jax.Array]]:
  """One Adam step on one batch. Pure; jit it with the state donated."""
  key = jax.random.fold_in(state.rng, state.step)
  grad_fn = jax.value_and_grad(
      functools.partial(loss_fn, model=model, config=config, step=state.step),
      has_aux=True)
  (_, (metrics, batch_stats)), grads = grad_fn(
      state.params, state.batch_stats, batch, key)
  updates, opt_state = make_optimizer(config).update(grads, state.opt_state,
                                                     state.params)
  params = optax.apply_updates(state.params, updates)
  # The update itself must be finite, not only the loss and gradients: a
  # finite gradient can still overflow the parameters or Adam's moments,
  # and such a state must never be kept, logged as trained or saved.
  finite = _all_finite((metrics["loss"], grads, params, opt_state,
                        batch_stats))
  new = state.replace(step=state.step + 1, params=params,
                      batch_stats=batch_stats, opt_state=opt_state)
  if config.get("skip_nonfinite", False):
    # Keep the old params/moments/stats where the update is not finite.
    keep = lambda a, b: jax.tree_util.tree_map(
        lambda x, y: jnp.where(finite, x, y), a, b)
    new = new.replace(
        params=keep(params, state.params),
        batch_stats=keep(batch_stats, state.batch_stats),
        opt_state=keep(opt_state, state.opt_state),
        skipped_updates=state.skipped_updates + (1 - finite.astype(jnp.int32)))
  metrics["finite"] = finite
  return new, metrics


def make_train_step(config, model, mesh):
  """``train_step`` jitted over ``mesh``: state replicated and donated, batch
  sharded on its leading axis."""
  rep, shard = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  return jax.jit(functools.partial(train_step, model=model, config=config),
                 in_shardings=(rep, shard), out_shardings=(rep, rep),
                 donate_argnums=0)


def eval_step(state: TrainState, batch, num_valid, key, *, model, config):
  """Sums over the valid rows of one test batch, batch norm in eval mode.

  Returns ``{"reconstruction": sum of per-image errors, "count": rows,
  "codes": per-rung posterior samples [num_rungs] of [batch, dim]}``.
  """
  variables = model_variables(state.params, state.batch_stats)
  logits, _, _, codes = model.apply(
      variables, batch["image"], train=False, sample=True,
      rung_scales=rung_scales(config, state.step), rngs={"noise": key})
  per_image = reconstruction_loss(config.loss.reconstruction, logits,
                                  batch["image"])
  valid = jnp.arange(per_image.shape[0]) < num_valid
  return {"reconstruction": jnp.sum(jnp.where(valid, per_image, 0.0)),
          "count": jnp.sum(valid), "codes": codes}


def evaluate_loss(state, eval_fn, test_data, config, key) -> Dict[str, Any]:
  """Test reconstruction error of decoded posterior samples (as in the loss)
  and per-rung MMD^2 of those samples against the prior."""
  totals, counts, batches = [], 0, []
  for i, (batch, valid) in enumerate(input_pipeline.eval_batches(
      test_data, config.batch_size, config.num_eval_batches or None)):
    out = eval_fn(state, batch, valid, jax.random.fold_in(key, i))
    totals.append(out["reconstruction"])
    batches.append([z[:valid] for z in out["codes"]])
    counts += valid
  # One fetch and one concatenation per split, not one per batch.
  codes = [jnp.concatenate(rung) for rung in zip(*batches)]
  mmds = aggregate_mmd(codes, config.loss.kernel,
                       jax.random.fold_in(key, 10**6))
  total, mmds = jax.device_get((jnp.sum(jnp.stack(totals)), mmds))
  return {"reconstruction": float(total) / counts,
          "mmd": [float(v) for v in mmds], "count": counts}


class _write_errors_stop:  # pylint: disable=invalid-name
  """Turns a failed TensorBoard write (a full disk) into the one-line
  checkpoint-aware stop that a failed save gives."""

  def __init__(self, manager, current_step):
    self._manager, self._current_step = manager, current_step

  def __enter__(self):
    return self

  def __exit__(self, kind, error, tb):
    if isinstance(error, reporting.ReportingError):
      raise checkpoints.stopped_by_write_error(
          self._manager, self._current_step(), error.strerror) from None
    return False


class NonFiniteError(RuntimeError):
  """Training produced a non-finite loss or gradient."""


class OutOfMemoryError(RuntimeError):
  """The train step did not fit in the device's memory."""


def _is_out_of_memory(error: BaseException) -> bool:
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text


def out_of_memory_message(error: BaseException, batch_size: int) -> str:
  """One line: the batch size, the allocation that failed (when XLA names
  it) and a batch that needs proportionally less."""
  import re
  found = re.search(r"Out of memory allocating (\d+) bytes", str(error))
  need = (f" (one buffer of {int(found.group(1)) / 2**30:.1f} GiB did not "
          "fit)" if found else "")
  half = max(batch_size // 2, 1)
  return (f"out of memory in the train step at --config.batch_size="
          f"{batch_size}{need}; the workdir is intact: run the same command "
          f"with a smaller batch, e.g. --config.batch_size={half} (memory "
          "grows in proportion to the batch).")


def _format_eta(seconds: float) -> str:
  seconds = int(max(0, seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class _ProgressLog:
  """Per-step metrics kept on the device and fetched every ``log_every``
  steps (no host sync per step): a console line and TensorBoard scalars.

  ``flush`` raises ``NonFiniteError`` naming the first non-finite step
  unless ``config.skip_nonfinite``.
  """

  def __init__(self, config, writer, start: int,
               deadline: Optional[float] = None):
    self._config, self._writer = config, writer
    self._deadline = deadline  # time.time() of the wall-clock limit, if any
    self._pending: List[Dict[str, jax.Array]] = []
    self._timer_step, self._timer = start, time.perf_counter()
    self._learning_rate = experiment.learning_rate_schedule(config)

  def add(self, metrics: Dict[str, jax.Array]):
    self._pending.append(metrics)

  def flush(self, step: int, last_saved: Optional[int]):
    if not self._pending:
      return
    config = self._config
    fetched = jax.device_get(self._pending)
    self._pending.clear()
    newest = ("newest checkpoint (checksummed when saved): "
              + (f"step {last_saved}, finite" if last_saved else "none yet"))
    skipping = config.get("skip_nonfinite", False)
    term = objective.regularizer(config)  # "mmd" or "kl": what is logged
    for offset, m in enumerate(fetched):
      if not m["finite"] and not skipping:
        bad = step - len(fetched) + offset + 1
        raise NonFiniteError(
            f"non-finite loss, gradient or updated parameters at step {bad} "
            f"(loss={float(m['loss'])}, "
            f"reconstruction={float(m['reconstruction'])}, "
            f"{term}={[float(v) for v in np.atleast_1d(m[term])]}); "
            f"{newest}. "
            "Lower the learning "
            "rate or set --config.skip_nonfinite=True to skip such updates.")
    kept = [m for m in fetched if m["finite"]]
    skipped = len(fetched) - len(kept)
    if not kept and len(fetched) < config.log_every:
      # A short window (the run is stopping): nothing to average.
      print(f"step {step}/{config.num_train_steps}  skipped {skipped} "
            "non-finite update(s), none kept since the last line", flush=True)
      return
    if not kept:  # skip_nonfinite, and a whole logging window skipped
      raise NonFiniteError(
          f"every update of steps {step - len(fetched) + 1}-{step} was "
          "non-finite and skipped (--config.skip_nonfinite=True): the run "
          f"has diverged and is not training; {newest}. Lower the "
          "learning rate and resume.")
    mean = {k: np.mean([m[k] for m in kept], axis=0) for k in kept[0]}
    mean["skipped_updates"] = float(skipped)
    now = time.perf_counter()
    rate = (step - self._timer_step) / max(now - self._timer, 1e-9)
    self._timer_step, self._timer = step, now
    mean["steps_per_second"] = rate
    # The rate of the step just taken (the schedule at its state.step).
    mean["learning_rate"] = float(self._learning_rate(step - 1)
                                  if callable(self._learning_rate)
                                  else self._learning_rate)
    self._writer.scalars(step, mean)
    term_text = " ".join(f"{v:.4f}" for v in np.atleast_1d(mean[term]))
    print(f"step {step}/{config.num_train_steps}  loss {mean['loss']:.4f}  "
          f"rec {mean['reconstruction']:.4f}  {term} [{term_text}]  "
          f"{rate:.2f} steps/s  ETA {_format_eta(self.eta(step, rate))}"
          + (f"  skipped {skipped} non-finite update"
             f"{'s' if skipped > 1 else ''}" if skipped else ""),
          flush=True)

  def eta(self, step: int, rate: float) -> float:
    """Seconds until the run stops: the step budget's end, or the
    wall-clock limit's if that comes first."""
    seconds = (self._config.num_train_steps - step) / max(rate, 1e-9)
    if self._deadline is not None:
      seconds = min(seconds, max(self._deadline - time.time(), 0.0))
    return seconds


def refuse_nonfinite_save(state, eval_fn, probe, key, step: int,
                          last_saved: Optional[int]):
  """``NonFiniteError`` unless ``state`` decodes the probe batch to finite
  images and codes: parameters can be finite yet so large that the model
  they define outputs NaN (a diverged run whose updates are skipped keeps
  such a state), and no such state may be saved or rotate a good
  checkpoint out."""
  batch, valid = probe
  out = eval_fn(state, batch, valid, key)
  finite = jnp.isfinite(out["reconstruction"])
  for codes in out["codes"]:
    finite = finite & jnp.all(jnp.isfinite(codes))
  if not bool(finite):
    raise NonFiniteError(
        f"the parameters at step {step} decode test images to non-finite "
        "values; not saved (newest checkpoint: "
        f"{'step %d' % last_saved if last_saved else 'none yet'}, finite). "
        "The run has diverged: lower the learning rate and resume.")


class _Checkpointer:
  """Asynchronous checkpoints whose failure stops training at once: every
  step polls the save in flight (cheap) until it has finished."""

  def __init__(self, manager, last_saved: Optional[int], on_saved=None):
    self.manager, self.last_saved = manager, last_saved
    self._in_flight: Optional[int] = None
    self._on_saved = on_saved  # called once, when the first save completes

  def save(self, step: int, state: TrainState):
    checkpoints.save_checkpoint(self.manager, step, state)
    self.last_saved = self._in_flight = step

  def _completed(self):
    self._in_flight = None
    if self._on_saved is not None:
      on_saved, self._on_saved = self._on_saved, None
      on_saved()

  def poll(self, step: int):
    if self._in_flight is not None and checkpoints.check_saves(
        self.manager, self._in_flight, step):
      self._completed()

  def finish(self, step: int):
    checkpoints.finish_saves(self.manager, step)
    if self._in_flight is not None:
      self._completed()


def _restore(config, workdir: str, model, lock, changed_fields):
  """``(state, manager, restored)``: the newest verified checkpoint's state,
  or a fresh one. Refuses (``WorkdirError``) a read-only workdir that has
  steps left to train."""
  state = create_train_state(config, model)
  if not workdirs.has_checkpoint(workdir) and lock.read_only:
    raise workdirs.WorkdirError(
        f"workdir {workdir!r} is read-only; pass a --workdir in a writable "
        "folder.")
  manager = checkpoints.make_manager(
      workdir, config.keep_checkpoints, read_only=lock.read_only,
      keep_every=config.get("keep_checkpoint_every", 0))
  # Restored before config.json is rewritten: an incompatible checkpoint is
  # refused with the workdir untouched.
  had_checkpoints = bool(manager.all_steps())
  restored = checkpoints.restore_verified(manager, state,
                                          set_aside=not lock.read_only,
                                          changed_fields=changed_fields)
  if restored is None and had_checkpoints and not lock.read_only:
    print(f"warning: no verified checkpoint is left in "
          f"{manager.directory}; training starts over from step 0 (the "
          "damaged ones are kept, renamed *.unreadable-N).", flush=True)
  state = restored if restored is not None else state
  start = int(state.step)
  if lock.read_only and start < config.num_train_steps:
    manager.close()
    raise workdirs.WorkdirError(
        f"workdir {workdir!r} is read-only and its run is at step {start} "
        f"of {config.num_train_steps}; copy it to a writable folder and "
        "train that --workdir.")
  return state, manager, restored is not None


def train_and_evaluate(config, workdir: str, allow_config_change: bool = False
                       ) -> TrainState:
  """Trains into ``workdir``, resuming from its newest valid checkpoint.

  Writes ``config.json``, Orbax checkpoints, TensorBoard events (``tb/``) and a
  progress line every ``config.log_every`` steps. Returns the final state.
  """
  # Every check and the data load come before the first write to workdir.
  configuration.validate(config)
  changed_fields = workdirs.check_config(workdir, config,
                                            allow_config_change)
  fingerprint = experiment.check_data_folder(workdir, config,
                                             allow_config_change)
  train_data = datasets.load_split(config, "train")
  # The periodic held-out loss reads the validation split where there is
  # one: the test split is for reported results only.
  eval_split, test_data = "test", None
  if config.get("validation_size", 0):
    eval_split = "validation"
    test_data = datasets.load_split(config, eval_split)
  elif datasets.has_official_validation(config):
    try:
      test_data = datasets.load_split(config, "validation")
      eval_split = "validation"
    except datasets.DataError as e:  # a layout with no validation rows
      print(f"note: {str(e).rstrip('.')}; the periodic held-out loss reads "
            "the test split.", flush=True)
  if test_data is None:
    test_data = datasets.load_split(config, "test")
  if config.batch_size > len(train_data):
    raise configuration.ConfigError(
        f"--config.batch_size={config.batch_size} is larger than the train "
        f"split ({len(train_data)} images); use at most {len(train_data)}.")
  interrupts.raise_if_interrupted()  # Ctrl-C before anything is written
  # One trainer per workdir; the lock goes with the process, however it ends.
  with workdirs.TrainerLock(workdir) as lock:
    model = create_model(config, train_data.images.shape[1:])
    state, manager, resumed = _restore(config, workdir, model, lock,
                                       changed_fields)
    start = int(state.step)
    if start >= config.num_train_steps:
      print(f"already trained for {start} steps (num_train_steps="
            f"{config.num_train_steps}); nothing to do.", flush=True)
      manager.close()
      return state
    # config.json describes the checkpoints: a resumed run's changed model
    # fields are recorded once a checkpoint trained under them is saved, so
    # a resume that stops first (non-finite, Ctrl-C) leaves the record and
    # the original command as they were.
    def write_config():
      workdirs.write_config(workdir, config)
      if fingerprint is not None:  # the data this config trains on
        workdirs.write_data_record(workdir, config.data_dir, fingerprint)

    if not (resumed and changed_fields):
      write_config()
      write_config = None
    print("matrix products: " + blas.describe(
        config.model.get("matmul", "auto"), config.dtype), flush=True)
    if resumed:
      print(f"resuming from step {start} "
            f"({workdirs.checkpoint_dir(workdir)})", flush=True)
    try:
      return _train_loop(config, workdir, model, state, manager, resumed,
                         train_data, test_data, write_config, eval_split)
    except Exception as e:  # pylint: disable=broad-except
      if not _is_out_of_memory(e):
        raise
      raise OutOfMemoryError(out_of_memory_message(e, config.batch_size)
                             ) from None


def _train_loop(config, workdir, model, state, manager, resumed, train_data,
                test_data, on_first_save=None, eval_split="test"
                ) -> TrainState:
  """Steps from ``state.step`` to ``config.num_train_steps``, with logging,
  test evaluation, image grids and checkpoints at their intervals; stops
  early (saving first) on SIGINT / SIGTERM or ``config.max_train_minutes``."""
  start = int(state.step)
  mesh = parallel.make_mesh()
  state = jax.device_put(state, parallel.replicated(mesh))
  step_fn = make_train_step(config, model, mesh)
  eval_fn = jax.jit(functools.partial(eval_step, model=model, config=config))
  writer = reporting.Writer(workdir)
  host_stream = input_pipeline.train_stream(
      train_data, config.batch_size, config.seed, start_step=start,
      shard_index=jax.process_index(), num_shards=jax.process_count())
  stream = parallel.prefetch_to_device(host_stream, mesh)
  eval_key = jax.random.PRNGKey(config.seed + 1)
  # The batch every state is decoded on before it is saved.
  probe = next(input_pipeline.eval_batches(test_data, config.batch_size, 1))
  # A wall-clock budget for this invocation (compilation included).
  deadline = (time.time() + 60.0 * config.max_train_minutes
              if config.get("max_train_minutes", 0) else None)
  log = _ProgressLog(config, writer, start, deadline)
  saver = _Checkpointer(manager, start if resumed else None, on_first_save)
  step = start
  try:
    with interrupts.recording(), _write_errors_stop(manager,
                                                          lambda: step):
      for step in range(start + 1, config.num_train_steps + 1):
        state, metrics = step_fn(state, next(stream))
        log.add(metrics)
        saver.poll(step)  # a failed save stops the run right here
        if step % config.log_every == 0:
          log.flush(step, saver.last_saved)
        if step % config.eval_every == 0 or step == config.num_train_steps:
          result = evaluate_loss(state, eval_fn, test_data, config, eval_key)
          # Decoded posterior samples (what the loss sees); `evaluate`
          # reports the posterior means' error.
          writer.scalars(step, {
              f"{eval_split}_reconstruction_of_samples":
                  result["reconstruction"],
              f"{eval_split}_mmd": np.array(result["mmd"])})
          print(f"step {step}: {eval_split} reconstruction (sampled codes) "
                f"{result['reconstruction']:.4f}  {eval_split} mmd "
                f"{[round(v, 5) for v in result['mmd']]}", flush=True)
        if step % config.image_every == 0:
          writer.images(step, reporting.sample_and_reconstruction_grids(
              model, state, test_data, jax.random.fold_in(eval_key, step)))
        signal_name = interrupts.stop_requested()
        stopping = signal_name or (deadline and time.time() >= deadline)
        if (step % config.checkpoint_every == 0
            or step == config.num_train_steps
            or (stopping and saver.last_saved != step)):
          log.flush(step, saver.last_saved)  # never save a non-finite state
          refuse_nonfinite_save(state, eval_fn, probe, eval_key, step,
                                saver.last_saved)
          saver.save(step, state)
        if stopping:
          reason = signal_name or (
              f"time limit ({config.max_train_minutes:g} min)")
          print(f"{reason}: saved step {step} to "
                f"{workdirs.checkpoint_dir(workdir)}; run the same command "
                "again to resume.", flush=True)
          break
      log.flush(step, saver.last_saved)
      saver.finish(step)
  finally:
    host_stream.close()
    try:
      manager.wait_until_finished()
      manager.close()
    except Exception:  # pylint: disable=broad-except
      pass  # reported by finish_saves, or an earlier error is on its way
    writer.close()
  return state
