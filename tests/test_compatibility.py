"""A workdir trained by the last released version (stop 32, kept small in
tests/data/workdir_v32: the tiny digits model, 10 steps) resumes, draws
and evaluates under this one: its config.json lacks the fields added since
(the KL regulariser's, data.json), and the training stream is now NumPy
instead of tf.data."""

import os
import shutil

import jax
import numpy as np
import pytest

from conftest import ROOT, SUITE_XLA_FLAGS, run_main, run_main_process
from vlae_jax import experiment

DATA = os.path.join(ROOT, "tests", "data")
ARGS = ("--config.model.rung_widths=((8, 16), (32,), (32,))",
        "--config.batch_size=16", "--config.log_every=5",
        "--config.eval_every=10", "--config.num_eval_batches=2",
        "--config.image_every=10", "--config.checkpoint_every=10",
        "--config.keep_checkpoints=1")


def _cpu_model():
  with open("/proc/cpuinfo") as f:
    return next((l.split(":", 1)[1].strip() for l in f
                 if l.startswith("model name")), "unknown")


def test_a_workdir_of_the_last_version_resumes_on_the_same_batches(tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(os.path.join(DATA, "workdir_v32"), workdir)
  old = np.load(os.path.join(DATA, "workdir_v32_step20_params.npz"))
  recorded = (str(old["__cpu__"]), str(old["__jax__"]))
  same_machine = recorded == (_cpu_model(), jax.__version__)
  resume = (f"--workdir={workdir}", *ARGS, "--config.num_train_steps=20")
  if same_machine:
    # Compiled as the old version compiled it (XLA's default optimisation
    # level, not the suite's 0), so the arithmetic is the same program's.
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                     if f != SUITE_XLA_FLAGS)
    resumed = run_main_process(*resume, env={"XLA_FLAGS": flags})
  else:  # no bitwise check here: the suite's quicker compile, in process
    resumed = run_main(*resume)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "resuming from step 10" in resumed.stdout
  _, _, state = experiment.load_experiment(str(workdir))
  assert int(state.step) == 20
  figures = run_main("--mode=traverse", f"--workdir={workdir}", "--steps=3")
  assert figures.returncode == 0, figures.stderr[-2000:]
  assert (workdir / "figures" / "traverse_rung0.png").exists()
  # The old version trained the same 20 steps uninterrupted on the CPU and
  # JAX the file records: the resumed run's parameters are bitwise those, so
  # it saw the same batches (the NumPy stream is the tf.data stream's
  # order). Another CPU's BLAS and XLA kernels round differently, and a few
  # Adam steps amplify a rounding difference as much as another batch would.
  if not same_machine:
    pytest.skip(f"parameters recorded on {recorded[0]} with JAX "
                f"{recorded[1]}, not this CPU and JAX")
  new = {jax.tree_util.keystr(p): np.asarray(l) for p, l in
         jax.tree_util.tree_flatten_with_path(
             jax.device_get(state.params))[0]}
  assert set(old.files) - {"__cpu__", "__jax__"} == set(new)
  for name in new:
    np.testing.assert_array_equal(new[name], old[name], err_msg=name)


def test_a_workdir_of_the_commit_before_the_packages_resumes_and_evaluates(
    tmp_path):
  """tests/data/workdir_9c6c542: the same tiny digits run trained by commit
  9c6c542, the last before datasets/ and evaluation/ became packages and
  interrupts a module of its own: it resumes, draws and evaluates."""
  workdir = tmp_path / "w"
  shutil.copytree(os.path.join(DATA, "workdir_9c6c542"), workdir)
  resumed = run_main(f"--workdir={workdir}", *ARGS,
                     "--config.num_train_steps=20")
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "resuming from step 10" in resumed.stdout
  figures = run_main("--mode=traverse", f"--workdir={workdir}", "--steps=3")
  assert figures.returncode == 0, figures.stderr[-2000:]
  evaluated = run_main("--mode=evaluate", f"--workdir={workdir}",
                       "--probe_train_size=200", "--classifier_steps=20",
                       "--decoder_images=20", "--decoder_draws=2")
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  assert "claim: " in evaluated.stdout
  assert (workdir / "eval" / "metrics.json").exists()
