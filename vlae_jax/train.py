"""The MMD-VLAE loss, jit-compiled train/eval steps, the train loop.

loss = rec_weight * reconstruction
       + sum_l mmd_weight * MMD^2(posterior samples of rung l, N(0, I) draws)

Every random draw of step s comes from ``fold_in(state.rng, s)``, and the data
stream is a pure function of ``(seed, s)``, so a resumed run is bitwise the same
as an uninterrupted one.
"""

from __future__ import annotations

import functools
import signal
import time
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from vlae_jax import checkpoints, input_pipeline, parallel, runtime
from vlae_jax.discrepancy import mmd
# The state and model builders live below both this loop and the analysis
# modes (no import circle); re-exported here for existing callers.
from vlae_jax.experiment import (TrainState, create_model,  # noqa: F401
                                 create_train_state, make_optimizer)

RECONSTRUCTIONS = ("l1", "l2", "bernoulli")


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
    count = config.loss.num_prior_samples or z.shape[0]
    prior = jax.random.normal(jax.random.fold_in(key, l), (count, z.shape[1]),
                              jnp.float32)
    values.append(mmd(z.astype(jnp.float32), prior, kernel=config.loss.kernel,
                      estimator=config.loss.estimator))
  return jnp.stack(values)


def loss_fn(params, batch_stats, batch, key, *, model, config):
  noise_key, prior_key = jax.random.split(key)
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  (logits, _, stds, codes), updates = model.apply(
      variables, batch["image"], train=True, sample=True,
      rngs={"noise": noise_key}, mutable=["batch_stats"])
  rec = jnp.mean(reconstruction_loss(config.loss.reconstruction, logits,
                                     batch["image"]))
  mmds = rung_mmds(config, codes, prior_key)
  loss = config.loss.rec_weight * rec + config.loss.mmd_weight * jnp.sum(mmds)
  metrics = {"loss": loss, "reconstruction": rec, "mmd": mmds,
             "posterior_std": jnp.stack([jnp.mean(s) for s in stds])}
  return loss, (metrics, updates.get("batch_stats", {}))


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
  return jnp.all(jnp.stack(leaves))


def train_step(state: TrainState, batch, *, model, config
               ) -> Tuple[TrainState, Dict[str, jax.Array]]:
  """One Adam step on one batch. Pure; jit it with the state donated."""
  key = jax.random.fold_in(state.rng, state.step)
  grad_fn = jax.value_and_grad(
      functools.partial(loss_fn, model=model, config=config), has_aux=True)
  (_, (metrics, batch_stats)), grads = grad_fn(
      state.params, state.batch_stats, batch, key)
  updates, opt_state = make_optimizer(config).update(grads, state.opt_state,
                                                     state.params)
  params = optax.apply_updates(state.params, updates)
  finite = _all_finite((metrics["loss"], grads))
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
  variables = {"params": state.params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  logits, _, _, codes = model.apply(variables, batch["image"], train=False,
                                    sample=True, rngs={"noise": key})
  per_image = reconstruction_loss(config.loss.reconstruction, logits,
                                  batch["image"])
  valid = jnp.arange(per_image.shape[0]) < num_valid
  return {"reconstruction": jnp.sum(jnp.where(valid, per_image, 0.0)),
          "count": jnp.sum(valid), "codes": codes}


@functools.partial(jax.jit, static_argnames=("kernel", "block_size"))
def aggregate_mmd(codes: List[jax.Array], kernel: str, key: jax.Array,
                  block_size: int = 1024) -> jax.Array:
  """``[num_rungs]`` MMD^2 of a whole split's codes (per rung ``[n, dim]``)
  against as many N(0, I) draws (one key per rung), in row tiles so any split
  size fits. One compiled program for all rungs: no host sync per rung."""
  return jnp.stack([
      mmd(z, jax.random.normal(jax.random.fold_in(key, l), z.shape, z.dtype),
          kernel=kernel, block_size=block_size)
      for l, z in enumerate(codes)])


def evaluate_loss(state, eval_fn, test_data, config, key) -> Dict[str, Any]:
  """Test reconstruction error and per-rung MMD^2 of the posterior samples."""
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


class _StopRequest:
  """Turns SIGINT/SIGTERM into a flag the loop checks between steps."""

  def __init__(self):
    self.signal_name: Optional[str] = None
    self._previous = {}

  def __enter__(self):
    if runtime.interrupted():  # Ctrl-C during start-up: stop at the first check
      self.signal_name = "SIGINT"
    for sig in (signal.SIGINT, signal.SIGTERM):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.signal_name = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class _write_errors_stop:  # pylint: disable=invalid-name
  """Turns a failed TensorBoard write (a full disk) into the one-line
  checkpoint-aware stop that a failed save gives."""

  def __init__(self, manager, current_step):
    self._manager, self._current_step = manager, current_step

  def __enter__(self):
    return self

  def __exit__(self, kind, error, tb):
    from vlae_jax import reporting
    if isinstance(error, reporting.ReportingError):
      raise checkpoints.stopped_by_write_error(
          self._manager, self._current_step(), error.strerror) from None
    return False


class NonFiniteError(RuntimeError):
  """Training produced a non-finite loss or gradient."""


def _format_eta(seconds: float) -> str:
  seconds = int(max(0, seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def train_and_evaluate(config, workdir: str, allow_config_change: bool = False
                       ) -> TrainState:
  """Trains into ``workdir``, resuming from its newest valid checkpoint.

  Writes ``config.json``, Orbax checkpoints, TensorBoard events (``tb/``) and a
  progress line every ``config.log_every`` steps. Returns the final state.
  """
  from vlae_jax import reporting  # TensorFlow import kept out of the hot path
  # Every check and the data load come before the first write to workdir.
  changed_fields = checkpoints.check_config(workdir, config,
                                            allow_config_change)
  train_data = input_pipeline.load_split(config, "train")
  test_data = input_pipeline.load_split(config, "test")
  runtime.raise_if_interrupted()  # Ctrl-C before anything is written
  # One trainer per workdir; the lock goes with the process, however it ends.
  with checkpoints.TrainerLock(workdir) as lock:
    model = create_model(config, train_data.images.shape[1:])
    state = create_train_state(config, model)
    if not checkpoints.has_checkpoint(workdir) and lock.read_only:
      raise checkpoints.WorkdirError(
          f"workdir {workdir!r} is read-only; pass a --workdir in a writable "
          "folder.")
    manager = checkpoints.make_manager(workdir, config.keep_checkpoints,
                                       read_only=lock.read_only)
    # Restored before config.json is rewritten: an incompatible checkpoint
    # is refused with the workdir untouched.
    restored = checkpoints.restore_latest(manager, state,
                                          set_aside=not lock.read_only,
                                          changed_fields=changed_fields)
    if restored is not None:
      state = restored
    start = int(state.step)
    if start >= config.num_train_steps:
      print(f"already trained for {start} steps (num_train_steps="
            f"{config.num_train_steps}); nothing to do.", flush=True)
      manager.close()
      return state
    if lock.read_only:
      raise checkpoints.WorkdirError(
          f"workdir {workdir!r} is read-only and its run is at step {start} "
          f"of {config.num_train_steps}; copy it to a writable folder and "
          "train that --workdir.")
    checkpoints.write_config(workdir, config, allow_config_change)
    if restored is not None:
      print(f"resuming from step {start} "
            f"({checkpoints.checkpoint_dir(workdir)})", flush=True)

    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.batch_size, mesh)
    state = jax.device_put(state, parallel.replicated(mesh))
    step_fn = make_train_step(config, model, mesh)
    eval_fn = jax.jit(functools.partial(eval_step, model=model, config=config))
    writer = reporting.Writer(workdir)
    stream = parallel.prefetch_to_device(input_pipeline.train_stream(
        train_data, config.batch_size, config.seed, start_step=start,
        shard_index=jax.process_index(), num_shards=jax.process_count()), mesh)
    eval_key = jax.random.PRNGKey(config.seed + 1)
    pending: List[Dict[str, jax.Array]] = []
    last_saved = start if restored is not None else None
    timer_step, timer = start, time.perf_counter()

    def flush_metrics(step):
      nonlocal timer_step, timer
      if not pending:
        return
      fetched = jax.device_get(pending)
      pending.clear()
      for offset, m in enumerate(fetched):
        if not m["finite"] and not config.get("skip_nonfinite", False):
          bad = step - len(fetched) + offset + 1
          raise NonFiniteError(
              f"non-finite loss or gradient at step {bad} "
              f"(loss={float(m['loss'])}, "
              f"reconstruction={float(m['reconstruction'])}, "
              f"mmd={[float(v) for v in np.atleast_1d(m['mmd'])]}); "
              f"newest checkpoint (checksummed when saved): "
              f"{'step %d' % last_saved if last_saved else 'none yet'}. "
              "Lower the learning "
              "rate or set --config.skip_nonfinite=True to skip such updates.")
      mean = {k: np.mean([m[k] for m in fetched], axis=0) for k in fetched[0]}
      now = time.perf_counter()
      rate = (step - timer_step) / max(now - timer, 1e-9)
      timer_step, timer = step, now
      mean["steps_per_second"] = rate
      writer.scalars(step, mean)
      mmd_text = " ".join(f"{v:.4f}" for v in np.atleast_1d(mean["mmd"]))
      print(f"step {step}/{config.num_train_steps}  loss {mean['loss']:.4f}  "
            f"rec {mean['reconstruction']:.4f}  mmd [{mmd_text}]  "
            f"{rate:.2f} steps/s  ETA "
            f"{_format_eta((config.num_train_steps - step) / max(rate, 1e-9))}",
            flush=True)

    unchecked_save = None

    def save(step):
      nonlocal last_saved, unchecked_save
      flush_metrics(step)  # never save a state whose steps were not finite
      checkpoints.save_checkpoint(manager, step, state)
      last_saved = unchecked_save = step

    step = start
    # A wall-clock budget for this invocation (compilation included).
    deadline = (time.time() + 60.0 * config.max_train_minutes
                if config.get("max_train_minutes", 0) else None)
    try:
      with _StopRequest() as stop, _write_errors_stop(manager, lambda: step):
        for step in range(start + 1, config.num_train_steps + 1):
          batch = next(stream)
          state, metrics = step_fn(state, batch)
          pending.append(metrics)
          if unchecked_save is not None and checkpoints.check_saves(
              manager, unchecked_save, step):
            unchecked_save = None  # a failed save stops the run right here
          if step % config.log_every == 0:
            flush_metrics(step)
          if step % config.eval_every == 0 or step == config.num_train_steps:
            result = evaluate_loss(state, eval_fn, test_data, config, eval_key)
            writer.scalars(step, {"test_reconstruction": result["reconstruction"],
                                  "test_mmd": np.array(result["mmd"])})
            print(f"step {step}: test reconstruction "
                  f"{result['reconstruction']:.4f}  test mmd "
                  f"{[round(v, 5) for v in result['mmd']]}", flush=True)
          if step % config.image_every == 0:
            writer.images(step, reporting.sample_and_reconstruction_grids(
                model, state, test_data, jax.random.fold_in(eval_key, step)))
          if step % config.checkpoint_every == 0 or step == config.num_train_steps:
            save(step)
          if stop.signal_name or (deadline and time.time() >= deadline):
            if last_saved != step:
              save(step)
            reason = stop.signal_name or (
                f"time limit ({config.max_train_minutes:g} min)")
            print(f"{reason}: saved step {step} to "
                  f"{checkpoints.checkpoint_dir(workdir)}; run the same command "
                  "again to resume.", flush=True)
            break
        flush_metrics(step)
        checkpoints.finish_saves(manager, step)
    finally:
      try:
        manager.wait_until_finished()
        manager.close()
      except Exception:  # pylint: disable=broad-except
        pass  # reported by finish_saves, or an earlier error is on its way
      writer.close()
    return state
