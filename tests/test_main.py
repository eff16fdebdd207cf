"""main.py end to end: its parser, checks and modes run in process (exit
code and printed lines), --help in a process of its own."""

import os

import numpy as np
import pytest
from PIL import Image

from conftest import TRAINED_ARGS, run_main, run_main_process

TINY = ["--config.model.rung_widths=((8, 16), (32,), (32,))",
        "--config.batch_size=16", "--config.num_train_steps=12",
        "--config.log_every=4", "--config.eval_every=6",
        "--config.num_eval_batches=2", "--config.image_every=6",
        "--config.checkpoint_every=6"]


@pytest.fixture
def trained(trained_run):
  return trained_run.workdir, trained_run.result


def test_train_writes_config_checkpoints_events_and_progress(trained):
  workdir, result = trained
  assert (workdir / "config.json").exists()
  # The two Orbax steps, and their checksum manifests.
  assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "5",
                                                         "manifests"]
  assert sorted(os.listdir(workdir / "checkpoints" / "manifests")) == [
      "10.json", "5.json"]
  assert any(n.startswith("events") for n in os.listdir(workdir / "tb"))
  assert "step 10/10" in result.stdout and "steps/s" in result.stdout
  assert "ETA" in result.stdout and "test reconstruction" in result.stdout


def test_traverse_writes_a_grid_per_rung(trained):
  workdir, _ = trained
  result = run_main("--mode=traverse", f"--workdir={workdir}", "--steps=5",
                    "--gif")
  assert result.returncode == 0, result.stderr[-3000:]
  printed = result.stdout.split()
  for rung in range(3):
    for kind in ("traverse", "conditional", "dims"):
      path = workdir / "figures" / f"{kind}_rung{rung}.png"
      assert str(path) in printed
    # 2-D rung: a 5x5 grid of 8x8 digits enlarged 4x to 32 px, 1 px borders.
    with Image.open(workdir / "figures" / f"traverse_rung{rung}.png") as im:
      assert im.size == (5 * 33 + 1, 5 * 33 + 1)
      pixels = np.asarray(im)
      assert pixels.std() > 5  # not a blank picture
    assert (workdir / "figures" / f"traverse_rung{rung}.gif").exists()


def test_sample_and_reconstruct_modes(trained):
  workdir, _ = trained
  result = run_main("--mode=sample", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  with Image.open(workdir / "figures" / "samples.png") as im:
    assert im.size == (8 * 33 + 1, 8 * 33 + 1)
  result = run_main("--mode=reconstruct", f"--workdir={workdir}",
                    "--count=5", "--start=3")
  assert result.returncode == 0, result.stderr[-3000:]
  with Image.open(workdir / "figures" / "reconstructions.png") as im:
    assert im.size == (5 * 33 + 1, 2 * 33 + 1)
  result = run_main("--mode=reconstruct", f"--workdir={workdir}",
                    "--start=290", "--count=16")
  assert result.returncode == 2
  assert "outside the test split (0..296)" in result.stderr


def test_rerun_resumes_and_finishes_at_once(trained_run):
  workdir = trained_run.workdir
  result = run_main(f"--workdir={workdir}", *TRAINED_ARGS,
                    f"--config.cache_dir={trained_run.config.cache_dir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "already trained for 10 steps (num_train_steps=10); nothing to do" \
      in result.stdout
  # nothing left to train: no progress line
  assert not any(l.startswith("step ") for l in result.stdout.splitlines())


@pytest.mark.parametrize("args,message", [
    (["--mode=sing"], "unknown mode 'sing'"),
    (["--config.dataset=cifar"], "unknown dataset 'cifar'"),
    (["--config.learning_rate=-1"], "learning_rate must be a positive"),
    (["--config.loss.kernel=laplace"], "unknown loss.kernel 'laplace'"),
    (["--config.model.rung_kinds=('conv', 'dense')"],
     "model.rung_kinds has 2 entries but model.latent_dims has 3 rungs"),
    (["--config.model.rung_widths=((8, 8, 8, 8), (4,), (4,))"],
     "cannot halve"),
    (["--config.loss.estimator=unbiased", "--config.batch_size=1"],
     "needs at least 2 samples"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args,
                                                         message):
  workdir = tmp_path / "w"
  result = run_main(f"--workdir={workdir}", *args)
  assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
  assert message in result.stderr
  assert "Traceback" not in result.stderr
  assert not workdir.exists()


def test_analysis_without_a_checkpoint_fails_cleanly(tmp_path):
  result = run_main("--mode=traverse", f"--workdir={tmp_path / 'none'}")
  assert result.returncode == 2
  assert "has no config.json" in result.stderr
  assert "Traceback" not in result.stderr


def test_help_documents_the_modes_and_exits_0():
  result = run_main_process("--help")
  assert result.returncode == 0, result.stderr[-2000:]
  for word in ("train", "traverse", "--workdir", "--config"):
    assert word in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--mode=arithmetic", "--images=999999,0,1"],
     "image index 999999 is outside the test split"),
    (["--mode=evaluate", "--decoder_draws=1"],
     "--decoder_draws must be >= 2, got 1"),
])
def test_bad_analysis_flags_leave_no_output_folder(trained, tmp_path, args,
                                                    message):
  workdir, _ = trained
  out = tmp_path / "figures" / "here"
  result = run_main(f"--workdir={workdir}", f"--output_dir={out}", *args)
  assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], lines
  assert not (tmp_path / "figures").exists()
