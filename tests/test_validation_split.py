"""The validation split, on which recipes, budgets and factor definitions
are chosen (the test split is read once per reported result): CelebA's
official partition, and for every other source a fixed hold-out of the
train split (``config.validation_size``)."""

import json

import numpy as np
import pytest

from conftest import (CELEBA_DIR, MNIST_DIR, needs_celeba, needs_mnist,
                      run_main, tiny_config)
from test_main import TINY
from vlae_jax import configuration, datasets
from vlae_jax.evaluation import report


def test_a_held_out_validation_split_partitions_train_the_same_every_seed():
  whole = datasets.load_split(tiny_config(), "train")
  parts = {}
  for seed in (0, 1):
    config = tiny_config(validation_size=300, seed=seed)
    parts[seed] = (datasets.load_split(config, "train"),
                   datasets.load_split(config, "validation"))
  train, held = parts[0]
  assert len(held) == 300 and len(train) == len(whole) - 300
  for a, b in zip(parts[0], parts[1]):  # the seed does not move it
    np.testing.assert_array_equal(a.images, b.images)
  # Disjoint and together the whole train split, each image once.
  rows = lambda s: sorted(map(bytes, np.asarray(s.images).reshape(len(s),
                                                                   -1)))
  assert rows(train) + rows(held) != [] and sorted(
      rows(train) + rows(held)) == rows(whole)
  # The test split is untouched.
  np.testing.assert_array_equal(
      datasets.load_split(tiny_config(validation_size=300), "test").images,
      datasets.load_split(tiny_config(), "test").images)


@needs_mnist
def test_a_hold_out_reads_its_rows_from_the_cache_without_a_copy(tmp_path):
  config = tiny_config(tmp_path, dataset="mnist", data_dir=MNIST_DIR,
                       validation_size=5000)
  datasets.load_split(config, "train")  # decodes and caches the IDX files
  train = datasets.load_split(config, "train")
  assert isinstance(train.images, datasets.RowView)
  assert isinstance(train.images.array, np.memmap)  # the cache's, no copy
  assert train.images.shape == (55000, 28, 28, 1)
  everything = np.asarray(train.images)
  assert everything.shape == (55000, 28, 28, 1) and everything.dtype == np.uint8
  for index in (7, slice(100, 130, 3), np.array([54999, 0, 12, 12])):
    np.testing.assert_array_equal(train.images[index], everything[index])
  batch = train.batch(np.array([3, 1]))
  np.testing.assert_array_equal(batch["image"],
                                everything[[3, 1]].astype(np.float32) / 255.0)


@needs_celeba
def test_celeba_validation_is_the_official_partition(tmp_path):
  config = tiny_config(tmp_path, dataset="celeba", data_dir=CELEBA_DIR,
                       image_size=8)
  held = datasets.load_split(config, "validation")
  names, labels, _ = datasets.celeba_index(CELEBA_DIR, "validation")
  assert len(held) == len(names) == 780
  np.testing.assert_array_equal(held.labels, labels)
  config.validation_size = 100
  with pytest.raises(configuration.ConfigError,
                     match="celeba has its official validation partition"):
    configuration.validate(config)


def test_evaluate_on_validation_writes_beside_the_test_metrics(tmp_path):
  workdir = tmp_path / "w"
  trained = run_main(f"--workdir={workdir}", *TINY,
                     "--config.validation_size=200")
  assert trained.returncode == 0, trained.stderr[-2000:]
  # The periodic held-out loss of training reads validation, not test.
  assert "validation reconstruction (sampled codes)" in trained.stdout
  assert "test reconstruction" not in trained.stdout
  flags = ("--probe_train_size=100", "--decoder_images=6",
           "--decoder_draws=2", "--classifier_steps=5",
           "--arithmetic_triples=2")
  chosen = run_main("--mode=evaluate", f"--workdir={workdir}",
                    "--split=validation", *flags)
  assert chosen.returncode == 0, chosen.stderr[-2000:]
  metrics = json.loads((workdir / "eval" / "validation" /
                        "metrics.json").read_text())
  assert metrics["split"] == "validation" and metrics["test_images"] == 200
  assert "validation images: 200" in chosen.stdout
  # Every line of the report names the split it measured.
  text = (workdir / "eval" / "validation" / "metrics.txt").read_text()
  assert "KID, prior samples vs validation" in text
  assert "6 validation images x 2 draws" in text
  assert "test" not in text.replace(str(tmp_path), "")
  assert not (workdir / "eval" / "metrics.json").exists()
  reported = run_main("--mode=evaluate", f"--workdir={workdir}", *flags)
  assert reported.returncode == 0, reported.stderr[-2000:]
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert metrics["split"] == "test" and metrics["test_images"] == 297
  text = (workdir / "eval" / "metrics.txt").read_text()
  assert "KID, prior samples vs test" in text and "6 test images x" in text


@pytest.mark.parametrize("args,message", [
    (["--mode=evaluate", "--split=validation"],
     "digits has no validation split; train with --config.validation_size=N"),
    (["--mode=evaluate", "--split=train"], "--split"),
])
def test_a_validation_split_that_does_not_exist_is_one_line(
    trained_run, args, message):
  result = run_main(*args, f"--workdir={trained_run.workdir}")
  assert result.returncode in (1, 2), result.stderr[-2000:]
  lines = [l for l in result.stderr.strip().splitlines() if l]
  assert message in lines[-1] and "Traceback" not in result.stderr


def test_a_hold_out_as_large_as_train_is_one_line(tmp_path):
  result = run_main(f"--workdir={tmp_path / 'w'}", *TINY,
                    "--config.validation_size=5000")
  assert result.returncode == 2, result.stderr[-2000:]
  assert ("--config.validation_size=5000 must be between 1 and 1499 (the "
          "train split has 1500 images)") in result.stderr
  assert not (tmp_path / "w").exists()


def test_the_identity_verifiers_line_names_the_split_it_read():
  # The face-only lines, which the digits run above never writes.
  verifier = {"train_faces": 900, "train_identities": 40,
              "test_auc_real_faces": 0.91, "same_pairs": 120}
  for split in ("validation", "test"):
    lines = report.format_factors({"mmd": [0.0] * 4, "split": split,
                                   "identity_verifier": verifier})
    assert any(f"AUC on real {split} faces 0.910 over 120" in line
               for line in lines), lines
