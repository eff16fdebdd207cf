"""Faults: SIGKILL, SIGINT, broken checkpoints, non-finite losses, bad flags."""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from conftest import CELEBA_DIR, ROOT, needs_celeba, run_main, tiny_config
from test_main import TINY
from vlae_jax import experiment, train


def popen_main(*args):
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"),
                           *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def popen_endless_run(workdir):
  """A tiny run that only a signal ends: no checkpoint, evaluation or
  image grid before its millionth step."""
  return popen_main(f"--workdir={workdir}", *TINY,
                    "--config.num_train_steps=1000000",
                    "--config.checkpoint_every=1000000",
                    "--config.eval_every=1000000",
                    "--config.image_every=1000000")


def final_params(workdir):
  _, _, state = experiment.load_experiment(str(workdir))
  return int(state.step), jax.device_get(state.params)


def assert_same_run(workdir_a, workdir_b, steps):
  """Both workdirs end at ``steps`` with bitwise equal parameters."""
  step_a, params_a = final_params(workdir_a)
  step_b, params_b = final_params(workdir_b)
  assert step_a == step_b == steps
  jax.tree_util.tree_map(np.testing.assert_array_equal, params_a, params_b)


def test_sigkill_then_rerun_equals_an_uninterrupted_run_bitwise(tmp_path):
  args = TINY + ["--config.num_train_steps=200", "--config.checkpoint_every=40",
                 "--config.log_every=20", "--config.eval_every=10000",
                 "--config.image_every=10000"]
  reference = run_main(f"--workdir={tmp_path / 'a'}", *args)
  assert reference.returncode == 0, reference.stdout[-2000:]
  proc = popen_main(f"--workdir={tmp_path / 'b'}", *args)
  first = tmp_path / "b" / "checkpoints" / "40"
  # Killed mid-run: at the first progress line (every 20 steps) after
  # checkpoint 40 is committed (Orbax saves in the background).
  for line in proc.stdout:
    if line.startswith("step ") and first.exists():
      break
  assert first.exists(), "the run ended before checkpoint 40 was committed"
  assert proc.poll() is None, "the run finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = sorted(int(s) for s in os.listdir(tmp_path / "b" / "checkpoints")
                     if s.isdigit())
  assert killed_at and killed_at[-1] < 200
  rerun = run_main(f"--workdir={tmp_path / 'b'}", *args)
  assert rerun.returncode == 0, rerun.stdout[-2000:]
  assert_same_run(tmp_path / "a", tmp_path / "b", 200)


def test_training_further_equals_training_that_long_from_the_start(tmp_path):
  """A finished run resumed with a larger num_train_steps is, bitwise, the run
  a user would get by asking for that many steps at first: nothing (rung
  entry and fade-in, warm-ups, the rate) is scheduled by num_train_steps.
  Ledger rows rely on this (the 64x64 config's 4,000 steps grew from 2,000,
  the branches candidate's 24,000 from 8,086)."""
  schedule = ["--config.rung_start_steps=(0,30,70)",
              "--config.rung_fade_steps=20", "--config.warmup_steps=40",
              "--config.model.head_branches=True",
              "--config.checkpoint_every=1000", "--config.log_every=20",
              "--config.eval_every=10000", "--config.image_every=10000"]
  longer = TINY + schedule + ["--config.num_train_steps=120"]
  reference = run_main(f"--workdir={tmp_path / 'a'}", *longer)
  assert reference.returncode == 0, reference.stdout[-2000:]
  # Stops at 50: rung 2 has not entered, the warm-up and a fade are unfinished.
  first = run_main(f"--workdir={tmp_path / 'b'}", *TINY, *schedule,
                   "--config.num_train_steps=50")
  assert first.returncode == 0, first.stdout[-2000:]
  assert final_params(tmp_path / "b")[0] == 50
  further = run_main(f"--workdir={tmp_path / 'b'}", *longer)
  assert further.returncode == 0, further.stdout[-2000:]
  assert "resuming from step 50" in further.stdout
  assert_same_run(tmp_path / "a", tmp_path / "b", 120)


def test_sigint_saves_the_current_step_and_exits_0(tmp_path):
  workdir = tmp_path / "w"
  proc = popen_endless_run(workdir)
  for line in proc.stdout:
    if line.startswith("step "):
      break
  proc.send_signal(signal.SIGINT)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out[-2000:]
  assert "SIGINT: saved step" in out and "run the same command" in out
  assert "trained into" not in out  # it stopped early
  saved = int(out.split("SIGINT: saved step ")[1].split()[0])
  assert (workdir / "checkpoints" / str(saved)).is_dir()
  step, _ = final_params(workdir)
  assert step == saved


def truncate_files(folder):
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      size = os.path.getsize(path)
      with open(path, "r+b") as f:
        f.truncate(size // 2)


def delete_files(folder):
  for root, _, files in os.walk(folder):
    for name in files:
      if not name.startswith("_CHECKPOINT_METADATA"):
        os.remove(os.path.join(root, name))


def test_broken_newest_checkpoint_is_skipped_and_kept(trained_run, tmp_path,
                                                     capsys):
  config = trained_run.config
  for damage in (truncate_files, delete_files):
    workdir = tmp_path / damage.__name__
    shutil.copytree(trained_run.workdir, workdir)
    newest = workdir / "checkpoints" / "10"
    damage(newest)
    leftover = workdir / "checkpoints" / "15.orbax-checkpoint-tmp-1234"
    leftover.mkdir()
    (leftover / "partial").write_text("half")
    capsys.readouterr()
    resumed = train.train_and_evaluate(config, str(workdir))
    out = capsys.readouterr().out
    assert f"skipping damaged checkpoint {newest}" in out
    assert int(resumed.step) == 10
    # Resumed from step 5 and retrained to 10: the same parameters.
    jax.tree_util.tree_map(np.testing.assert_array_equal, trained_run.params,
                           jax.device_get(resumed.params))
    assert (workdir / "checkpoints" / "10.unreadable-0").is_dir()
    assert (leftover / "partial").read_text() == "half"


def test_non_finite_loss_stops_with_the_step_and_terms(tmp_path):
  workdir = tmp_path / "w"
  result = run_main(f"--workdir={workdir}", *TINY,
                    "--config.learning_rate=1e30")
  assert result.returncode == 3, result.stdout[-2000:]
  message = result.stderr.strip().splitlines()[-1]
  assert "non-finite loss, gradient or updated parameters at step" in message
  assert "reconstruction=" in message and "mmd=" in message
  assert "newest checkpoint (checksummed when saved)" in message
  # No checkpoint holds a non-finite state.
  for step in os.listdir(workdir / "checkpoints") if (
      workdir / "checkpoints").exists() else []:
    assert not step.isdigit(), f"checkpoint {step} was saved"


def _decodes_finite(workdir, step, scratch):
  """Whether checkpoint ``step`` of ``workdir`` decodes digits to finite
  images, restored as the analysis modes restore a workdir (a copy holding
  that checkpoint alone)."""
  import jax.numpy as jnp
  from vlae_jax import datasets, input_pipeline
  from vlae_jax.objective import model_variables
  copy = scratch / f"only_{step}"
  shutil.copytree(workdir, copy)
  for entry in os.listdir(copy / "checkpoints"):
    if entry.isdigit() and int(entry) != step:
      shutil.rmtree(copy / "checkpoints" / entry)
  _, model, state = experiment.load_experiment(str(copy))
  assert int(state.step) == step
  batch, _ = next(input_pipeline.eval_batches(datasets.read_digits("test"),
                                              16, 1))
  logits = model.apply(model_variables(state.params, state.batch_stats),
                       batch["image"], train=False, sample=False)[0]
  return bool(jnp.all(jnp.isfinite(logits)))


@pytest.mark.parametrize("checkpoint_every", [5, 10])
def test_a_diverging_run_with_skip_nonfinite_stops_and_saves_nothing_bad(
    tmp_path, checkpoint_every):
  """A real divergence (learning rate 1e30): the first update leaves huge
  but finite parameters, every later update is non-finite and skipped. The
  run stops with one line (exit 3) instead of training to the end on NaN,
  and every checkpoint it leaves decodes to finite images."""
  workdir = tmp_path / "w"
  args = [a for a in TINY if not a.startswith("--config.checkpoint_every")]
  result = run_main(f"--workdir={workdir}", *args,
                    "--config.learning_rate=1e30",
                    "--config.skip_nonfinite=True",
                    f"--config.checkpoint_every={checkpoint_every}")
  assert result.returncode == 3, (result.stdout[-2000:], result.stderr[-2000:])
  message = result.stderr.strip().splitlines()[-1]
  assert ("was non-finite and skipped" in message
          or "decode test images to non-finite values; not saved" in message)
  assert "lower the learning rate" in message.lower()
  assert "loss nan" not in result.stdout
  saved = [int(s) for s in os.listdir(workdir / "checkpoints")
           if s.isdigit()] if (workdir / "checkpoints").exists() else []
  for step in saved:
    assert _decodes_finite(workdir, step, tmp_path), (
        f"checkpoint {step} decodes to NaN")


def test_skipped_updates_are_counted_on_the_progress_line(tmp_path,
                                                          monkeypatch, capsys):
  """A NaN pixel in one batch of a real run: that update is skipped,
  counted on its progress line, and training goes on to the end."""
  from vlae_jax import input_pipeline
  original = input_pipeline.train_stream

  def stream_with_one_nan_pixel(*args, **kwargs):
    for i, batch in enumerate(original(*args, **kwargs)):
      if i == 2:
        batch = dict(batch, image=batch["image"].copy())
        batch["image"][0, 0, 0, 0] = np.nan
      yield batch

  monkeypatch.setattr(input_pipeline, "train_stream",
                      stream_with_one_nan_pixel)
  config = tiny_config(tmp_path, skip_nonfinite=True, num_train_steps=10,
                       log_every=5, checkpoint_every=5)
  state = train.train_and_evaluate(config, str(tmp_path / "w"))
  out = capsys.readouterr().out
  assert "skipped 1 non-finite update" in out and "loss nan" not in out
  assert int(jax.device_get(state.skipped_updates)) == 1
  assert int(state.step) == 10


def test_bad_flags_and_fields_are_one_line_exit_2(tmp_path):
  for args, text in ((["--config.no_such_field=1"], "no_such_field"),
                     (["--no_such_flag"], "no_such_flag"),
                     (["--config.dataset=mnist",
                       f"--config.data_dir={tmp_path / 'missing'}"],
                      "does not exist")):
    result = run_main(f"--workdir={tmp_path / 'w'}", *args)
    assert result.returncode == 2, (args, result.stderr[-2000:])
    assert text in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "w").exists()


def write_bad_celeba(root, problem):
  """A small official-layout folder with one kind of damage."""
  from test_analysis import write_celeba_folder
  write_celeba_folder(root, count=8, size=(89, 109))
  if problem == "empty image folder":
    for f in (root / "img_align_celeba").iterdir():
      f.unlink()
  elif problem == "partition file missing":
    (root / "list_eval_partition.txt").unlink()
  elif problem == "attribute file missing":
    (root / "list_attr_celeba.txt").unlink()
  elif problem == "wrong column count":
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    lines[3] = lines[3] + " 1"
    (root / "list_attr_celeba.txt").write_text("\n".join(lines))
  elif problem == "non +-1 values":
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0] + " 0"
    (root / "list_attr_celeba.txt").write_text("\n".join(lines))


CELEBA_PROBLEMS = {
    "empty image folder": "holds no .jpg files",
    "partition file missing": "list_eval_partition.txt is missing",
    "attribute file missing": "list_attr_celeba.txt is missing",
    "wrong column count": "has 42 columns, expected 41",
    "non +-1 values": "values other than +-1",
}


def test_bad_celeba_folders_are_one_line_exit_2(tmp_path):
  for problem, message in CELEBA_PROBLEMS.items():
    folder = tmp_path / problem.replace(" ", "_")
    write_bad_celeba(folder, problem)
    before = sorted(p.name for p in folder.rglob("*"))
    workdir = tmp_path / "w"
    result = run_main(f"--workdir={workdir}", *TINY,
                      "--config.dataset=celeba", "--config.image_size=16",
                      f"--config.data_dir={folder}",
                      f"--config.cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 2, (problem, result.stderr[-2000:])
    assert message in result.stderr, (problem, result.stderr[-500:])
    assert "Traceback" not in result.stderr
    assert not workdir.exists()
    assert sorted(p.name for p in folder.rglob("*")) == before


def test_unreadable_jpegs_are_skipped_with_their_names(tmp_path, capsys):
  from vlae_jax import datasets
  write_bad_celeba(tmp_path / "c", "none")
  bad = tmp_path / "c" / "img_align_celeba" / "000002.jpg"
  bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
  split = datasets.read_celeba_folder(str(tmp_path / "c"), "train", 64)
  assert len(split) == 3  # 4 train images, one unreadable
  out = capsys.readouterr().out
  assert "skipping unreadable image" in out and "000002.jpg" in out
  assert "were enlarged" in out  # 89-wide images: 54-px crops -> 64


def test_bad_config_values_are_one_line_exit_2(tmp_path):
  cases = [
      (["--config.loss.estimator=quadratic"], "unknown loss.estimator"),
      (["--config.loss.reconstruction=huber"], "unknown loss.reconstruction"),
      (["--config.batch_size=0"], "batch_size must be a positive integer"),
      (["--config.num_train_steps=-5"], "num_train_steps must be a positive"),
      (["--config.model.rung_widths=((8, 0), (4,), (4,))"],
       "rung_widths[0] must be a positive integer"),
      (["--config.model.latent_dims=(2, -1, 2)"],
       "latent_dims[1] must be a positive integer"),
      # 0 below the top is a rung without a code; the top needs one.
      (["--config.model.latent_dims=(2, 2, 0)"],
       "latent_dims[2] must be a positive integer"),
      (["--config.rung_start_steps=(100, 0)"],
       "rung_start_steps has 2 entries but the model has 3 rungs"),
      (["--config.rung_start_steps=(100, 50, 10)"],
       "start at least one rung (the top) at 0"),
  ]
  for args, message in cases:
    result = run_main(f"--workdir={tmp_path / 'w'}", *args)
    assert result.returncode == 2, (args, result.stderr[-2000:])
    assert message in result.stderr, (args, result.stderr[-500:])
    assert not (tmp_path / "w").exists()


def test_a_different_model_in_the_workdir_is_refused_on_the_cli(tmp_path):
  workdir = tmp_path / "w"
  assert run_main(f"--workdir={workdir}", *TINY,
                  "--config.num_train_steps=2").returncode == 0
  before = {p: p.stat().st_mtime for p in workdir.rglob("*")}
  result = run_main(f"--workdir={workdir}", *TINY,
                    "--config.model.latent_dims=(3, 2, 2)")
  assert result.returncode == 2
  assert "different config (model.latent_dims: [2, 2, 2] -> [3, 2, 2])" in \
      result.stderr
  assert {p: p.stat().st_mtime for p in workdir.rglob("*")} == before


def test_a_second_trainer_on_one_workdir_is_refused(tmp_path):
  workdir = tmp_path / "w"
  first = popen_main(f"--workdir={workdir}", *TINY,
                     "--config.num_train_steps=1000000",
                     "--config.checkpoint_every=1000000",
                     "--config.eval_every=1000000",
                     "--config.image_every=1000000")
  for line in first.stdout:
    if line.startswith("step "):
      break
  second = run_main(f"--workdir={workdir}", *TINY,
                    "--config.num_train_steps=1000000",
                    "--config.checkpoint_every=1000000",
                    "--config.eval_every=1000000",
                    "--config.image_every=1000000")
  assert second.returncode == 2, second.stderr[-2000:]
  assert "Traceback" not in second.stderr
  assert f"is being trained by pid {first.pid} on" in second.stderr
  assert len(second.stderr.strip().splitlines()) == 1
  # A lock left by a killed trainer never blocks the rerun.
  first.send_signal(signal.SIGKILL)
  first.wait()
  assert (workdir / ".lock").exists()
  rerun = run_main(f"--workdir={workdir}", *TINY)
  assert rerun.returncode == 0, rerun.stderr[-2000:]


def test_a_failed_first_run_does_not_poison_the_workdir(tmp_path):
  workdir = tmp_path / "w"
  # Non-finite numbers are refused before anything is written.
  bad = run_main(f"--workdir={workdir}", *TINY, "--config.learning_rate=nan")
  assert bad.returncode == 2 and "learning_rate must be a positive finite " \
      "number, got nan" in bad.stderr
  assert not workdir.exists()
  # A first run that wrote config.json but no checkpoint (e.g. killed at
  # start-up) leaves nothing to protect: the corrected rerun takes its config.
  workdir.mkdir()
  (workdir / "config.json").write_text('{"batch_size": 5000, "seed": 3}')
  rerun = run_main(f"--workdir={workdir}", *TINY)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert '"batch_size": 16' in (workdir / "config.json").read_text()


def test_next_command_is_shell_quoted(tmp_path):
  workdir = tmp_path / "my run"
  result = run_main(f"--workdir={workdir}", *TINY, "--config.num_train_steps=4",
                    "--config.checkpoint_every=4")
  assert result.returncode == 0, result.stderr[-2000:]
  assert f"--workdir='{workdir}'" in result.stdout


# CPython's own start-up (Modules/main.c, pymain_get_importer) runs
# PyErr_Print() on any exception while it checks whether the script's path is
# an import path entry, prints this line, and goes on to run the script: a
# Ctrl-C that lands there is reported and dropped by the interpreter, before
# main.py's first line. Seen once in about 400 signals sent 15-95 ms after the
# start (and once in a full suite run): the process then trains on.
CPYTHON_DROPPED_INTERRUPT = "Failed checking if argv[0] is an import path entry"


@pytest.mark.parametrize("moment", ["at once", "first line", "in the loop"])
def test_ctrl_c_at_any_moment_stops_promptly_and_cleanly(tmp_path, moment):
  """Ctrl-C at an event of each phase (vlae_jax/interrupts.py): as soon as
  the process exists (start-up: recorded), after its first line (start-up
  done, data and compile), after its first progress line (the loop)."""
  workdir = tmp_path / "w"
  proc = popen_endless_run(workdir)
  watchdog = threading.Timer(120, proc.kill)  # a hang fails, never blocks
  watchdog.start()
  try:
    head = []
    if moment != "at once":
      for line in proc.stdout:
        head.append(line)
        if moment == "first line" or line.startswith("step "):
          break
    proc.send_signal(signal.SIGINT)
    dropped = False
    if moment == "at once":
      for line in proc.stdout:
        head.append(line)
        dropped = dropped or line.startswith(CPYTHON_DROPPED_INTERRUPT)
        if dropped and line.startswith("step "):
          # The interpreter dropped the first one: a second Ctrl-C, now in
          # the loop, must stop the run as any Ctrl-C there does.
          proc.send_signal(signal.SIGINT)
          break
    out = "".join(head) + proc.communicate()[0]
  finally:
    watchdog.cancel()
  assert proc.returncode != -signal.SIGKILL, (moment, "hung", out[-2000:])
  if dropped:
    assert re.search(r"^KeyboardInterrupt$", out, re.M), out[-2000:]
    moment = "in the loop"
    dropped_at = re.search(r"^KeyboardInterrupt$", out, re.M).end()
    out = out[dropped_at:].lstrip("\n")  # main.py's own output
  elif moment == "at once" and "Traceback" in out:
    # The signal landed in the interpreter's own start-up, before main.py's
    # first statement replaced Python's handler (a window of about 0.1 s
    # that a loaded machine can reach): Python's KeyboardInterrupt, which no
    # line of main.py after that statement may raise, and nothing written.
    with open(os.path.join(ROOT, "main.py")) as f:
      record_line = next(n for n, line in enumerate(f, 1)
                         if line.startswith("interrupts.record()"))
    lines = [int(n) for n in re.findall(r'main\.py", line (\d+)', out)]
    assert out.rstrip().endswith("KeyboardInterrupt"), out[-2000:]
    assert all(n <= record_line for n in lines), (record_line, out[-2000:])
    assert proc.returncode != 0 and not workdir.exists()
    return
  assert "Traceback" not in out, (moment, out[-2000:])
  if moment == "in the loop":  # saved and said so
    assert proc.returncode == 0, out[-2000:]
    assert "SIGINT: saved step" in out, out[-2000:]
  elif proc.returncode == 0:
    assert "SIGINT: saved step" in out, (moment, out[-2000:])
  elif proc.returncode == -signal.SIGINT:
    # Before main.py's first line the interpreter's own handler is in
    # place: the process ends at once, silent, having written nothing.
    assert moment == "at once" and out == "" and not workdir.exists()
  else:
    assert proc.returncode == 130, (moment, proc.returncode, out[-2000:])
    assert "interrupted (Ctrl-C)" in out


def _children(pid):
  """Every live descendant pid of ``pid`` (from /proc)."""
  found, frontier = set(), [pid]
  while frontier:
    parent = frontier.pop()
    try:
      tasks = os.listdir(f"/proc/{parent}/task")
    except OSError:
      continue
    for task in tasks:
      try:
        with open(f"/proc/{parent}/task/{task}/children") as f:
          kids = [int(k) for k in f.read().split()]
      except OSError:
        continue
      for kid in kids:
        if kid not in found:
          found.add(kid)
          frontier.append(kid)
  return found


def _alive(pid):
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split(")")[-1].split()[0] != "Z"
  except OSError:
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
@needs_celeba
@pytest.mark.parametrize("sig,code,words", [
    (signal.SIGTERM, 143, "stopped by SIGTERM"),
    (signal.SIGINT, 130, "interrupted (Ctrl-C)")])
def test_a_signal_during_the_first_celeba_decode_stops_every_worker(
    tmp_path, sig, code, words):
  """Real JPEG decode workers (2 processes and multiprocessing's resource
  tracker) are alive when the signal comes; afterwards none is left, the
  exit is one line, and nothing was written to the workdir."""
  workdir = tmp_path / "w"
  proc = popen_main(f"--workdir={workdir}", "--config=configs/celeba_small.py",
                    f"--config.data_dir={CELEBA_DIR}",
                    f"--config.cache_dir={tmp_path / 'cache'}",
                    "--config.decode_workers=2")
  deadline = time.time() + 120
  kids = set()
  while time.time() < deadline and len(kids) < 3 and proc.poll() is None:
    kids = _children(proc.pid)
    time.sleep(0.05)
  assert len(kids) >= 3, "the decode workers never started"
  proc.send_signal(sig)
  out, _ = proc.communicate(timeout=60)
  assert proc.returncode == code, (proc.returncode, out[-2000:])
  errors = [l for l in out.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and words in errors[0], out[-2000:]
  assert "Traceback" not in out
  # The workers are terminated and joined before main exits; a zombie's
  # last moments (reaped by init) are waited for, not slept through.
  deadline = time.time() + 30
  while any(_alive(k) for k in kids) and time.time() < deadline:
    time.sleep(0.05)
  assert [k for k in kids if _alive(k)] == []
  assert not workdir.exists()


def test_an_unwritable_home_is_one_warning_per_cache(trained_run, tmp_path):
  """HOME inside a regular file (unwritable even for root): a mode that
  compiles (sample, on a copy of a trained run) works, each cache that
  falls back says so in one line, and JAX's own UserWarning (two lines per
  compile) never appears."""
  blocker = tmp_path / "file"
  blocker.write_text("")
  workdir = tmp_path / "w"
  shutil.copytree(trained_run.workdir, workdir)
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3",
             HOME=str(blocker / "home"))
  env.pop("VLAE_JAX_COMPILATION_CACHE", None)
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "main.py"), "--mode=sample",
       f"--workdir={workdir}"], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert (workdir / "figures" / "samples.png").exists()
  both = result.stdout + result.stderr
  assert "UserWarning" not in both and "Traceback" not in both
  assert both.count("compilation cache is off") == 1
