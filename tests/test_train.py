"""Loss, train step, determinism, checkpoints and resume."""

import functools
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from vlae_jax import checkpoints, datasets, experiment, objective, train
from vlae_jax import workdir as workdirs


def setup(config):
  model = experiment.create_model(config)
  state = experiment.create_train_state(config, model)
  step = jax.jit(functools.partial(train.train_step, model=model,
                                   config=config))
  return model, state, step


def fixed_batch(config, size=None):
  data = datasets.load_split(config, "train")
  return data.batch(np.arange(size or config.batch_size))


def steps_on_fixed_batch(config, steps, metric="loss"):
  """``(final state, [metric of each step])``: ``steps`` train steps of a
  fresh state on the config's fixed batch."""
  _, state, step = setup(config)
  batch = fixed_batch(config)
  values = []
  for _ in range(steps):
    state, metrics = step(state, batch)
    values.append(float(metrics[metric]))
  return state, values


def assert_resume_is_bitwise(tmp_path, **overrides):
  """20 steps uninterrupted against 10, saved, then resumed to 20."""
  config = tiny_config(tmp_path, num_train_steps=20, checkpoint_every=10,
                       **overrides)
  uninterrupted = train.train_and_evaluate(config, str(tmp_path / "a"))
  first = tiny_config(tmp_path, num_train_steps=10, checkpoint_every=10,
                      **overrides)
  train.train_and_evaluate(first, str(tmp_path / "b"))
  resumed = train.train_and_evaluate(config, str(tmp_path / "b"))
  assert int(resumed.step) == 20
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         jax.device_get(uninterrupted.params),
                         jax.device_get(resumed.params))


@pytest.mark.parametrize("kind", ["l1", "l2", "bernoulli"])
def test_reconstruction_losses_match_their_formulas(kind):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
  images = rng.uniform(size=(3, 4, 4, 1)).astype(np.float32)
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  expected = {
      "l1": np.abs(images - p),
      "l2": (images - p) ** 2,
      "bernoulli": -(images * np.log(p) + (1 - images) * np.log(1 - p)),
  }[kind].mean(axis=(1, 2, 3))
  got = objective.reconstruction_loss(kind, jnp.asarray(logits),
                                  jnp.asarray(images))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_loss_is_weighted_reconstruction_plus_per_rung_mmd():
  config = tiny_config()
  model, state, _ = setup(config)
  batch = fixed_batch(config)
  key = jax.random.PRNGKey(3)
  loss, (metrics, _) = objective.loss_fn(state.params, state.batch_stats, batch,
                                     key, model=model, config=config)
  assert metrics["mmd"].shape == (3,)
  np.testing.assert_allclose(
      float(loss), 100 * float(metrics["reconstruction"])
      + 100 * float(jnp.sum(metrics["mmd"])), rtol=1e-5)
  # Per-rung weights replace mmd_weight term by term (same batch, same key:
  # the same reconstruction and MMD values).
  config.loss.rung_mmd_weights = (1.0, 20.0, 300.0)
  weighted, (again, _) = objective.loss_fn(state.params, state.batch_stats, batch,
                                       key, model=model, config=config)
  np.testing.assert_allclose(np.asarray(again["mmd"]),
                             np.asarray(metrics["mmd"]), rtol=1e-6)
  np.testing.assert_allclose(
      float(weighted), 100 * float(metrics["reconstruction"])
      + float(np.dot([1.0, 20.0, 300.0], np.asarray(metrics["mmd"]))),
      rtol=1e-5)
  # Each rung gets its own prior draw: rung draws differ.
  prior_key = jax.random.split(key)[1]
  draws = [jax.random.normal(jax.random.fold_in(prior_key, l), (4, 2))
           for l in range(3)]
  assert not np.allclose(draws[0], draws[1])


def test_loss_on_one_fixed_batch_falls_under_training():
  _, losses = steps_on_fixed_batch(tiny_config(learning_rate=3e-3), 60,
                                   metric="reconstruction")
  assert losses[-1] < 0.6 * losses[0], losses[::10]


def test_train_step_is_deterministic_for_a_fixed_seed():
  config = tiny_config()
  batch = fixed_batch(config)
  runs = []
  for _ in range(2):
    _, state, step = setup(config)
    for _ in range(3):
      state, _ = step(state, batch)
    runs.append(jax.device_get(state.params))
  jax.tree_util.tree_map(np.testing.assert_array_equal, runs[0], runs[1])
  _, other, step = setup(tiny_config(seed=1))
  other, _ = step(other, batch)
  assert not np.array_equal(
      jax.tree_util.tree_leaves(runs[0])[0],
      jax.tree_util.tree_leaves(jax.device_get(other.params))[0])


def test_skip_nonfinite_keeps_the_previous_state_and_counts():
  config = tiny_config(skip_nonfinite=True)
  _, state, step = setup(config)
  batch = fixed_batch(config)
  bad = dict(batch, image=batch["image"].copy())
  bad["image"][0, 0, 0, 0] = np.nan
  before = jax.device_get(state.params)
  state, metrics = step(state, bad)
  assert not bool(metrics["finite"])
  assert int(state.skipped_updates) == 1 and int(state.step) == 1
  jax.tree_util.tree_map(np.testing.assert_array_equal, before,
                         jax.device_get(state.params))


def test_checkpoint_round_trips_the_whole_state(tmp_path):
  config = tiny_config()
  _, state, step = setup(config)
  state, _ = step(state, fixed_batch(config))
  manager = checkpoints.make_manager(str(tmp_path), 2)
  checkpoints.save_checkpoint(manager, 1, state)  # manifest, then arrays
  manager.wait_until_finished()
  fresh = experiment.create_train_state(config, experiment.create_model(config))
  restored = checkpoints.restore_verified(manager, fresh)
  manager.close()
  expected, got = jax.device_get(state), jax.device_get(restored)
  assert jax.tree_util.tree_structure(expected) == \
      jax.tree_util.tree_structure(got)
  jax.tree_util.tree_map(np.testing.assert_array_equal, expected, got)


def test_a_second_run_resumes_at_the_saved_step_bitwise(tmp_path):
  assert_resume_is_bitwise(tmp_path)


def largest_change(after, before) -> float:
  """The largest absolute change of any parameter between two pytrees."""
  return max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree_util.tree_leaves(jax.device_get(after)),
      jax.tree_util.tree_leaves(jax.device_get(before))))


def test_the_warmup_raises_the_rate_linearly_from_zero():
  """Step 0 at rate 0 moves no weight; step 1 at a quarter of the rate
  moves each by at most about a quarter of Adam's unit step."""
  config = tiny_config(learning_rate=1e-2, warmup_steps=4)
  _, state, step = setup(config)
  batch = fixed_batch(config)
  before = jax.device_get(state.params)
  state, _ = step(state, batch)
  first = jax.device_get(state.params)
  jax.tree_util.tree_map(np.testing.assert_array_equal, before, first)
  state, _ = step(state, batch)
  moved = largest_change(state.params, first)
  assert 0.1 * 1e-2 / 4 < moved < 1.5 * 1e-2 / 4, moved
  # Without a warm-up, Adam's first step moves weights by the full rate.
  _, plain, plain_step = setup(tiny_config(learning_rate=1e-2))
  plain_before = jax.device_get(plain.params)
  plain, _ = plain_step(plain, batch)
  moved = largest_change(plain.params, plain_before)
  assert 0.9 * 1e-2 < moved < 1.1 * 1e-2, moved


def test_the_cosine_schedule_falls_from_the_rate_to_its_end_fraction():
  """Warm-up to the rate, a cosine over the rest of the budget, its end
  value after it; "constant" stays a plain float (plain Adam)."""
  rate = 1e-2
  cosine = experiment.learning_rate_schedule(tiny_config(
      learning_rate=rate, learning_rate_schedule="cosine",
      learning_rate_end_fraction=0.1, num_train_steps=100, warmup_steps=20))
  expected = {0: 0.0, 10: rate / 2, 20: rate, 60: rate * (1 + 0.1) / 2,
              100: rate * 0.1, 150: rate * 0.1}
  for step, value in expected.items():
    assert float(cosine(step)) == pytest.approx(value, rel=1e-5, abs=1e-9), step
  no_warmup = experiment.learning_rate_schedule(tiny_config(
      learning_rate=rate, learning_rate_schedule="cosine", num_train_steps=10))
  assert float(no_warmup(0)) == pytest.approx(rate)
  assert float(no_warmup(10)) == 0.0
  assert experiment.learning_rate_schedule(tiny_config(
      learning_rate=rate)) == rate


def test_a_train_step_past_a_cosine_to_zero_moves_no_weight():
  """The schedule reaches the train step: at step num_train_steps a cosine
  to 0 leaves every weight where it was, and half-way Adam moves each by
  about half the rate."""
  config = tiny_config(learning_rate=1e-2, learning_rate_schedule="cosine",
                       num_train_steps=4)
  _, state, step = setup(config)
  batch = fixed_batch(config)
  state, _ = step(state, batch)
  state, _ = step(state, batch)
  before = jax.device_get(state.params)
  state, _ = step(state, batch)          # step 2 of 4: rate 1e-2 / 2
  moved = largest_change(state.params, before)
  assert 0.1 * 1e-2 / 2 < moved < 1.5 * 1e-2 / 2, moved
  state, _ = step(state, batch)          # step 3
  at_end = jax.device_get(state.params)
  state, _ = step(state, batch)          # step 4 = num_train_steps: rate 0
  jax.tree_util.tree_map(np.testing.assert_array_equal, at_end,
                         jax.device_get(state.params))


def test_a_cosine_run_resumes_only_with_its_budget_and_then_bitwise(tmp_path):
  """A warm-up then a cosine: the schedule's place lives in the checkpoint,
  so resumed from step 10 of 20 (after the warm-up's 5 steps) the run ends
  as the uninterrupted one. num_train_steps may change on a resume, but not
  under a cosine (the new length would bend the rate mid-run); TensorBoard
  gets the rate each logged step was taken at."""
  warmup = 5
  config = tiny_config(tmp_path, num_train_steps=20, checkpoint_every=10,
                       eval_every=1000, image_every=1000, warmup_steps=warmup,
                       learning_rate_schedule="cosine")
  uninterrupted = train.train_and_evaluate(config, str(tmp_path / "a"))
  from tensorboard.backend.event_processing import event_accumulator
  events = event_accumulator.EventAccumulator(
      workdirs.events_dir(str(tmp_path / "a")), size_guidance={"scalars": 0})
  events.Reload()
  logged = {e.step: e.value for e in events.Scalars("learning_rate")}
  assert sorted(logged) == [5, 10, 15, 20]
  for step, value in logged.items():
    taken = step - 1  # the logged step's update was taken at count step - 1
    expected = config.learning_rate * (
        taken / warmup if taken < warmup else
        0.5 * (1 + np.cos(np.pi * (taken - warmup) / (20 - warmup))))
    assert value == pytest.approx(expected, rel=1e-5), step
  longer = tiny_config(tmp_path, num_train_steps=30, checkpoint_every=10,
                       eval_every=1000, image_every=1000, warmup_steps=warmup,
                       learning_rate_schedule="cosine")
  with pytest.raises(workdirs.WorkdirError, match=re.escape(
      "num_train_steps: 20 -> 30 (the length of the cosine learning-rate "
      "schedule)")):
    train.train_and_evaluate(longer, str(tmp_path / "a"))
  train.train_and_evaluate(config, str(tmp_path / "b"))
  last = os.path.join(workdirs.checkpoint_dir(str(tmp_path / "b")), "20")
  shutil.rmtree(last)  # as if it had stopped after saving step 10
  resumed = train.train_and_evaluate(config, str(tmp_path / "b"))
  assert int(resumed.step) == 20
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         jax.device_get(uninterrupted.params),
                         jax.device_get(resumed.params))


def test_a_workdir_of_a_different_model_is_refused(tmp_path):
  config = tiny_config(tmp_path, num_train_steps=2, checkpoint_every=2)
  train.train_and_evaluate(config, str(tmp_path / "w"))
  other = tiny_config(tmp_path, **{"model.latent_dims": (3, 2, 2)})
  with pytest.raises(workdirs.WorkdirError,
                     match=r"model.latent_dims: \[2, 2, 2\] -> \[3, 2, 2\]"):
    train.train_and_evaluate(other, str(tmp_path / "w"))


def test_bfloat16_compute_keeps_float32_params_and_loss():
  config = tiny_config(dtype="bfloat16")
  model, state, step = setup(config)
  assert model.dtype == jnp.bfloat16
  batch = fixed_batch(config)
  state, metrics = step(state, batch)
  assert metrics["loss"].dtype == jnp.float32
  assert np.isfinite(float(metrics["loss"]))
  assert all(p.dtype == jnp.float32
             for p in jax.tree_util.tree_leaves(state.params))
  # The convolutions really ran in bfloat16: the jaxpr holds bf16 conv (or,
  # in the CPU's patch forms, matrix) products.
  jaxpr = str(jax.make_jaxpr(lambda s, b: train.train_step(
      s, b, model=model, config=config))(state, batch))
  assert re.search(r"bf16\[[0-9,]*\] = (conv_general_dilated|dot_general)",
                   jaxpr)


def test_progressive_rung_scales_follow_the_linear_fade():
  config = tiny_config(rung_start_steps=(10, 5, 0), rung_fade_steps=4)
  for step, expected in [(0, [0, 0, 0.25]), (4, [0, 0, 1]),
                         (5, [0, 0.25, 1]), (9, [0, 1, 1]),
                         (11, [0.5, 1, 1]), (13, [1, 1, 1]),
                         (1000, [1, 1, 1])]:
    np.testing.assert_allclose(objective.rung_scales(config, step), expected,
                               err_msg=f"step {step}")
  assert objective.schedule_end(config) == 13
  switch = tiny_config(rung_start_steps=(10, 5, 0))  # no fade: a switch
  np.testing.assert_array_equal(objective.rung_scales(switch, 9), [0, 1, 1])
  np.testing.assert_array_equal(objective.rung_scales(switch, 10), [1, 1, 1])
  assert objective.rung_scales(tiny_config(), 0) is None


def test_a_rung_outside_the_schedule_neither_reaches_nor_learns_to_decode():
  config = tiny_config(rung_start_steps=(1000, 0, 0))
  model, state, step = setup(config)
  batch = fixed_batch(config)
  variables = objective.model_variables(state.params, state.batch_stats)
  means, _, _ = model.apply(variables, batch["image"], method=model.encode,
                            sample=False)
  scales = objective.rung_scales(config, 0)
  moved = [means[0] + 5.0] + list(means[1:])
  decode = lambda codes, s: model.apply(variables, codes, rung_scales=s,
                                        method=model.decode)
  # The bottom rung's code does not reach the decoder; without the
  # schedule it does.
  np.testing.assert_array_equal(decode(means, scales), decode(moved, scales))
  assert not np.allclose(decode(means, None), decode(moved, None))
  before = jax.device_get(state.params)
  for _ in range(3):
    state, _ = step(state, batch)
  after = jax.device_get(state.params)
  # Its decoder projection gets zero gradients (Adam leaves it bitwise
  # unchanged); the active rungs' projections and its encoder head learn.
  bottom = "generative_rungs_0"
  np.testing.assert_array_equal(after[bottom]["z_proj"]["kernel"],
                                before[bottom]["z_proj"]["kernel"])
  assert not np.array_equal(after["generative_rungs_1"]["z_proj"]["kernel"],
                            before["generative_rungs_1"]["z_proj"]["kernel"])
  heads = lambda p: jax.tree_util.tree_leaves(p["inference_rungs_0"])
  assert any(not np.array_equal(a, b)
             for a, b in zip(heads(after), heads(before)))


def test_with_every_rung_in_the_schedule_changes_nothing():
  plain = tiny_config()
  scheduled = tiny_config(rung_start_steps=(2, 1, 0), rung_fade_steps=2)
  model, state, _ = setup(plain)
  batch = fixed_batch(plain)
  key = jax.random.PRNGKey(0)
  args = (state.params, state.batch_stats, batch, key)
  loss_plain, _ = objective.loss_fn(*args, model=model, config=plain, step=7)
  loss_in, _ = objective.loss_fn(*args, model=model, config=scheduled, step=7)
  loss_out, _ = objective.loss_fn(*args, model=model, config=scheduled, step=0)
  np.testing.assert_array_equal(loss_in, loss_plain)
  assert float(loss_out) != float(loss_plain)


def test_eta_is_that_of_the_run_that_will_happen():
  import time
  from vlae_jax.train import _ProgressLog
  config = tiny_config(num_train_steps=10_000_000)
  unlimited = _ProgressLog(config, None, 0)
  assert unlimited.eta(0, rate=10.0) == pytest.approx(1e6)
  limited = _ProgressLog(config, None, 0, deadline=time.time() + 60.0)
  assert 59.0 < limited.eta(0, rate=10.0) <= 60.0
  # A step budget that ends first wins.
  assert limited.eta(config.num_train_steps - 20, rate=10.0) == \
      pytest.approx(2.0)


@pytest.mark.parametrize("weights,ok", [((10.0, 100.0, 100.0), True),
                                        ((1.0, 2.0), False),
                                        ((1.0, -1.0, 1.0), False),
                                        ((1.0, float("nan"), 1.0), False)])
def test_rung_mmd_weights_are_checked(weights, ok):
  from vlae_jax import configuration
  config = tiny_config()
  config.loss.rung_mmd_weights = weights
  if ok:
    configuration.validate(config)
    return
  with pytest.raises(configuration.ConfigError,
                     match=r"rung_mmd_weights=.* must give one number >= 0 "
                     r"per rung \(3 rungs\)"):
    configuration.validate(config)


@pytest.mark.parametrize("field,value,message", [
    ("model.head_branches", 1, r"model.head_branches must be True or False, "
     r"got 1"),
    ("model.rung_strides", ((2,), ()), r"rung_strides has 2 entries but "
     r"model.latent_dims has 3 rungs; give one entry per rung \(or none\)"),
    ("deterministic", "yes", r"--config.deterministic must be True or False, "
     r"got 'yes'"),
    ("loss.mmd_weight", -1.0, r"loss.mmd_weight must be >= 0, got -1.0"),
    ("loss.mmd_weight", float("inf"), r"loss.mmd_weight must be >= 0"),
    ("max_train_minutes", -5, r"max_train_minutes must be >= 0 \(0: no "
     r"limit\), got -5"),
    ("model.latent_dims", (), r"latent_dims needs at least one rung"),
    ("model.rung_widths", ((8,), (), (32,)), r"model.rung_widths\[1\] is "
     r"empty; give each rung at least one layer width"),
    ("model.rung_widths", ((8,), (0,), (32,)), r"model.rung_widths\[1\] must "
     r"be a positive integer, got 0"),
    ("model.rung_kinds", ("conv", "conv"), r"model.rung_kinds has 2 entries "
     r"but model.latent_dims has 3 rungs"),
    ("model.rung_std_floors", (0.1, 0.0, 0.1), r"rung_std_floors=.* must give "
     r"one number > 0 per rung \(3 rungs\)"),
    ("rung_start_steps", (0, 10), r"rung_start_steps has 2 entries but the "
     r"model has 3 rungs"),
    ("rung_start_steps", (0, -1, 5), r"rung_start_steps=\(0, -1, 5\) must be "
     r"integers >= 0"),
    ("rung_start_steps", (5, 10, 20), r"keeps every rung out of the decoder "
     r"at step 0; start at least one rung \(the top\) at 0"),
    ("rung_fade_steps", -3, r"rung_fade_steps must be an integer >= 0, got -3"),
    ("warmup_steps", -1, r"--config.warmup_steps must be an integer >= 0 "
     r"\(0: no warm-up\), got -1"),
    ("learning_rate_schedule", "linear", r"unknown learning_rate_schedule "
     r"'linear'; set --config.learning_rate_schedule to one of \['constant', "
     r"'cosine'\]"),
    ("learning_rate_end_fraction", 1.5, r"learning_rate_end_fraction must be "
     r"in \[0, 1\] \(the cosine's last rate over learning_rate\), got 1.5"),
    ("decode_workers", 1.5, r"decode_workers must be an integer >= 0 \(0 "
     r"means every core\), got 1.5"),
    ("loss.num_prior_samples", -2, r"num_prior_samples must be an integer >= "
     r"0 \(0 means the batch size\), got -2"),
    ("learning_rate", 0.0, r"--config.learning_rate must be a positive finite "
     r"number, got 0.0"),
    ("batch_size", 2.5, r"--config.batch_size must be a positive integer, got "
     r"2.5"),
    ("loss.kernel", "rbf", r"unknown loss.kernel 'rbf'; set "
     r"--config.loss.kernel to one of"),
])
def test_each_bad_config_value_is_one_line_naming_it(field, value, message):
  import ml_collections
  from vlae_jax import configuration
  # Without type safety, as a hand-edited config file could give any type.
  config = ml_collections.ConfigDict(tiny_config().to_dict(), type_safe=False)
  configuration.validate(config)
  *parents, name = field.split(".")
  node = config
  for parent in parents:
    node = node[parent]
  node[name] = value
  with pytest.raises(configuration.ConfigError, match=message) as error:
    configuration.validate(config)
  assert "\n" not in str(error.value)


def test_a_cosine_with_no_steps_after_its_warmup_is_refused():
  from vlae_jax import configuration
  config = tiny_config(learning_rate_schedule="cosine", warmup_steps=20,
                       num_train_steps=20)
  with pytest.raises(configuration.ConfigError, match=re.escape(
      "--config.warmup_steps=20 leaves no steps of the cosine before "
      "--config.num_train_steps=20; warm up over fewer steps or train "
      "longer.")):
    configuration.validate(config)
