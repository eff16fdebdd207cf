"""bench/gpu_pack.py and bench/gpu_run.sh --smoke on this machine: the lent
GPU machine's one command, run stage by stage on the CPU with tiny settings,
on a pack made from real CelebA files (bench/gpu_report.py's CPU report
among them)."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from conftest import CELEBA_DIR, ROOT, needs_celeba, suite_folder, tiny_config
from vlae_jax import datasets, flops


def _small_celeba(folder, per_split=12):
  """A CelebA layout of the first ``per_split`` real images of each split
  (linked) and the full official list files (linked)."""
  images = folder / "img_align_celeba"
  images.mkdir(parents=True)
  for split in ("train", "validation", "test"):
    names, _, _ = datasets.celeba_index(CELEBA_DIR, split)
    for name in names[:per_split]:
      os.symlink(os.path.join(CELEBA_DIR, "img_align_celeba", name),
                 images / name)
  for name in ("list_attr_celeba.txt", "list_eval_partition.txt",
               "identity_CelebA.txt"):
    os.symlink(os.path.join(CELEBA_DIR, name), folder / name)
  return folder


def _pack(folder):
  source = _small_celeba(folder / "celeba")
  pack = folder / "pack"
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "bench", "gpu_pack.py"),
       f"--celeba_dir={source}", f"--out={pack}"], cwd=ROOT,
      capture_output=True, text=True, timeout=300)
  return source, pack, result


@pytest.fixture(scope="session")
def packed(tmp_path_factory, worker_id):
  """One pack for the suite (made once for all xdist workers, under a file
  lock, as conftest's trained_run): (source folder, pack folder, what
  gpu_pack.py returned). Read it only; a test that writes copies it."""
  from filelock import FileLock
  shared = suite_folder(tmp_path_factory, worker_id)
  base = shared / "gpu_pack"
  with FileLock(str(shared / "gpu_pack.lock")):
    if not (base / "result.json").exists():
      base.mkdir(exist_ok=True)
      _, _, result = _pack(base)
      (base / "result.json").write_text(json.dumps(
          [result.returncode, result.stdout, result.stderr]))
  returncode, stdout, stderr = json.loads((base / "result.json").read_text())
  assert returncode == 0, stderr[-3000:]
  return base / "celeba", base / "pack", stdout


@needs_celeba
def test_pack_keeps_the_layout_the_loader_reads_at_half_scale(packed):
  from PIL import Image
  source, pack, stdout = packed
  assert "a device call carries" in stdout
  manifest = json.loads((pack / "MANIFEST.json").read_text())
  assert manifest["celeba"]["images"] == 36
  assert manifest["wheels"]["wheels"][0].startswith("ml_collections-")
  for split in ("train", "validation", "test"):
    ours = datasets.celeba_index(str(pack / "celeba"), split)
    theirs = datasets.celeba_index(str(source), split)
    assert ours[0] == theirs[0] and ours[2] == theirs[2]
    np.testing.assert_array_equal(ours[1], theirs[1])
  # The attribute file holds the subset's rows and says how many.
  lines = (pack / "celeba" / "list_attr_celeba.txt").read_bytes().split(
      b"\r\n")
  assert lines[0] == b"36" and len([l for l in lines[2:] if l]) == 36
  identities = datasets.celeba_identities(str(pack / "celeba"), "test", 12)
  np.testing.assert_array_equal(
      identities, datasets.celeba_identities(str(source), "test", 12))
  # Every image at half scale; the loader's 64x64 crop stays close.
  for name in sorted(os.listdir(pack / "celeba" / "img_align_celeba"))[:8]:
    with Image.open(pack / "celeba" / "img_align_celeba" / name) as image:
      assert image.size == (89, 109)
      a = datasets.celeba_crop_and_resize(image, 64).astype(float)
    with Image.open(source / "img_align_celeba" / name) as original:
      b = datasets.celeba_crop_and_resize(original, 64).astype(float)
    assert np.abs(a - b).mean() < 12


@needs_celeba
def test_pack_over_its_size_limit_is_one_line_and_keeps_the_old_pack(
    tmp_path, packed):
  source, shared_pack, _ = packed
  pack = tmp_path / "pack"
  shutil.copytree(shared_pack, pack)
  before = (pack / "MANIFEST.json").read_text()
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "bench", "gpu_pack.py"),
       f"--celeba_dir={source}", f"--out={pack}", "--max_mb=0.01"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      "gpu_pack: the packed CelebA is")
  assert "--quality" in result.stderr
  assert (pack / "MANIFEST.json").read_text() == before
  assert not [p for p in os.listdir(tmp_path) if ".staging" in p]


@needs_celeba
def test_gpu_run_smoke_runs_every_stage_and_returns_at_most_8_files(
    tmp_path, packed):
  pack = tmp_path / "pack"
  shutil.copytree(packed[1], pack)
  out = tmp_path / "out"
  env = dict(os.environ, PYTHON=sys.executable)
  env.pop("OUT", None)
  result = subprocess.run(
      ["bash", os.path.join(ROOT, "bench", "gpu_run.sh"), "--smoke",
       "--pack", str(pack), "--out", str(out)], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
  summary = (out / "summary.txt").read_text()
  status = dict(line.split(": ", 1) for line in summary.splitlines())
  for stage in ("wheels", "devices", "digits", "gpu_report", "celeba_train",
                "celeba_evaluate", "celeba_traverse"):
    assert status[stage].startswith("ok"), summary
  # PyTorch is a bench-only install: where it is missing that stage fails
  # alone, and every later stage still runs.
  if importlib.util.find_spec("torch") is not None:
    assert status["torch_reference"].startswith("ok"), summary
  else:
    assert status["torch_reference"].startswith("failed"), summary
  files = sorted(os.listdir(out))
  assert len(files) <= 8
  assert {"summary.txt", "gpu_report.json", "metrics.json", "figures.tar",
          "logs.tar.gz"} <= set(files)
  report = json.loads((out / "gpu_report.json").read_text())
  assert report["determinism"]["bitwise_equal"]
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["dataset"] == "celeba" and "claims" in metrics
  with tarfile.open(out / "figures.tar") as tar:
    names = tar.getnames()
  assert "figures/traverse_rung0.png" in names
  with tarfile.open(out / "logs.tar.gz") as tar:
    assert "logs/celeba_train.log" in tar.getnames()
    report_log = tar.extractfile("logs/gpu_report.log").read().decode()
  # The gpu_report stage is bench/gpu_report.py as a user runs it on the
  # CPU (--quick --dtypes=float32 --skip_resume): its throughput and
  # determinism sections. Its SIGKILL-resume section drives main.py as
  # tests/test_reliability.py's SIGKILL test does, so it is skipped (one
  # bitwise-resume test in the suite).
  for heading in ("## Device", "## Train step throughput", "## Determinism"):
    assert heading in report_log
  assert "## SIGKILL and resume" not in report_log
  assert "| default | float32 | 100 |" in report_log
  assert report_log.count("-> PASS") == 1
  assert report["platform"] == "cpu" and report["deterministic"] is True
  row = report["throughput"][0]
  config = tiny_config()
  config.batch_size = 100
  config.model.rung_widths = ((32, 64), (256,), (256,))  # the default config
  assert row["useful_flops_per_step"] == flops.train_step_flops(config)
  assert row["images_per_second"] > 0 and 0 < row["useful_mfu"] < 1
  assert "resume" not in report


def test_gpu_run_without_its_pack_is_one_line(tmp_path):
  result = subprocess.run(
      ["bash", os.path.join(ROOT, "bench", "gpu_run.sh"), "--smoke",
       "--pack", str(tmp_path / "nope"), "--out", str(tmp_path / "out")],
      cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      f"gpu_run.sh: pack folder {tmp_path / 'nope'} does not exist; run "
      "python bench/gpu_pack.py first and carry it (or pass --pack DIR)."]
  assert not (tmp_path / "out").exists()
