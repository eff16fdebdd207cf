"""Analysing an earlier step: `config.keep_checkpoint_every` keeps a training
curve's checkpoints, `--checkpoint_step` reads one of them."""

import json
import os
import shutil

import numpy as np

from conftest import run_main, TRAINED_ARGS


def test_keep_checkpoint_every_keeps_the_curve_beside_the_newest(tmp_path):
  workdir = tmp_path / "w"
  result = run_main(f"--workdir={workdir}", *TRAINED_ARGS,
                    "--config.num_train_steps=12",
                    "--config.checkpoint_every=2", "--config.keep_checkpoints=1",
                    "--config.keep_checkpoint_every=4",
                    "--config.validation_size=300",
                    f"--config.cache_dir={tmp_path / 'cache'}")
  assert result.returncode == 0, result.stderr[-2000:]
  saved = sorted(int(n) for n in os.listdir(workdir / "checkpoints")
                 if n.isdigit())
  assert saved == [4, 8, 12]  # multiples of 4, and the newest one
  manifests = sorted(os.listdir(workdir / "checkpoints" / "manifests"))
  assert manifests == ["12.json", "4.json", "8.json"]  # verifiable, each
  # A curve point on the validation split: beside, never over, the test's.
  measured = run_main("--mode=evaluate", f"--workdir={workdir}",
                      "--checkpoint_step=4", "--split=validation",
                      "--probe_train_size=100", "--classifier_steps=0",
                      "--decoder_images=6", "--decoder_draws=2")
  assert measured.returncode == 0, measured.stderr[-2000:]
  metrics = json.loads((workdir / "eval" / "step_4" / "validation" /
                        "metrics.json").read_text())
  assert (metrics["step"], metrics["split"]) == (4, "validation")


def test_keep_checkpoint_every_must_be_a_multiple(tmp_path):
  result = run_main(f"--workdir={tmp_path / 'w'}", *TRAINED_ARGS,
                    "--config.keep_checkpoint_every=7")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      "error: --config.keep_checkpoint_every=7 is not a multiple of "
      "checkpoint_every=5, so no checkpoint would be kept by it; use a "
      "multiple.")
  assert not (tmp_path / "w").exists()


def test_analysis_of_an_earlier_step(trained_run, tmp_path):
  from vlae_jax import experiment
  workdir = tmp_path / "w"
  shutil.copytree(trained_run.workdir, workdir)
  _, _, early = experiment.load_experiment(str(workdir), 5)
  _, _, newest = experiment.load_experiment(str(workdir))
  assert (int(early.step), int(newest.step)) == (5, 10)
  assert not np.array_equal(early.params["inference_rungs_0"]["mean"]["kernel"],
                            newest.params["inference_rungs_0"]["mean"]["kernel"])

  newest_figure = workdir / "figures" / "samples.png"
  # The shared run may carry the newest step's figure from another test.
  before = (newest_figure.read_bytes() if newest_figure.exists() else None)
  drawn = run_main("--mode=sample", f"--workdir={workdir}",
                   "--checkpoint_step=5")
  assert drawn.returncode == 0, drawn.stderr[-2000:]
  assert (workdir / "figures" / "step_5" / "samples.png").exists()
  assert (newest_figure.read_bytes() if newest_figure.exists()
          else None) == before  # beside the newest's figure, never over it

  measured = run_main("--mode=evaluate", f"--workdir={workdir}",
                      "--checkpoint_step=5", "--probe_train_size=100",
                      "--classifier_steps=0", "--decoder_images=6",
                      "--decoder_draws=2")
  assert measured.returncode == 0, measured.stderr[-2000:]
  metrics = json.loads((workdir / "eval" / "step_5" / "metrics.json"
                        ).read_text())
  assert metrics["step"] == 5 and metrics["split"] == "test"


def test_a_step_not_kept_is_one_line_naming_those_kept(trained_run, tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(trained_run.workdir, workdir)
  before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
  result = run_main("--mode=traverse", f"--workdir={workdir}",
                    "--checkpoint_step=7")
  assert result.returncode == 2
  line = result.stderr.strip().splitlines()[-1]
  assert "no checkpoint at step 7" in line and "steps 5, 10" in line
  assert "--checkpoint_step" in line
  assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before
  for bad, why in ((["--mode=evaluate", "--checkpoint_step=-1"], ">= 0"),
                   (["--checkpoint_step=5"], "training always resumes")):
    result = run_main(f"--workdir={workdir}", *bad)
    assert result.returncode == 2 and why in result.stderr, result.stderr
