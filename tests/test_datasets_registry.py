"""A data source is one module and one registry line: a source defined here
trains, traverses and evaluates through main.py like the built-in ones."""

import json

import numpy as np
import pytest

from conftest import TRAINED_ARGS, run_main
from vlae_jax import datasets

BANDS = ("top", "upper", "lower", "bottom")


class Bands(datasets.Source):
  """8x8 grayscale images of one bright horizontal band (its position is
  the class) over noise: everything a source must say, and no more."""

  name = "bands"
  domain = "images"
  channels = 1

  def image_shape(self, config):
    return (8, 8, 1)

  def read(self, config, split):
    count = {"train": 200, "test": 60}[split]
    rng = np.random.default_rng({"train": 0, "test": 1}[split])
    labels = rng.integers(0, len(BANDS), count).astype(np.int32)
    images = rng.integers(0, 60, (count, 8, 8, 1)).astype(np.uint8)
    for i, band in enumerate(labels):
      images[i, 2 * band:2 * band + 2] = 200 + rng.integers(0, 55)
    return datasets.Split(images, labels, "label", list(BANDS))

  def fingerprint(self, config):
    return "bands-v1"  # generated: nothing on disk can change it


@pytest.fixture
def bands_source():
  source = datasets.register(Bands())
  yield source
  datasets.unregister(source.name)


def test_a_registered_source_trains_traverses_and_evaluates(bands_source,
                                                             tmp_path):
  workdir = tmp_path / "run"
  args = [f"--workdir={workdir}", f"--config.cache_dir={tmp_path / 'cache'}"]
  result = run_main(*args, "--config.dataset=bands", *TRAINED_ARGS)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "step 10/10" in result.stdout
  # Decoded once, then read from the decode cache.
  assert len(list((tmp_path / "cache").glob("bands-train-*"))) == 1
  result = run_main("--mode=traverse", f"--workdir={workdir}", "--steps=3")
  assert result.returncode == 0, result.stderr[-2000:]
  assert list((workdir / "figures").rglob("traverse*.png"))
  result = run_main("--mode=evaluate", f"--workdir={workdir}",
                    "--probe_train_size=100", "--decoder_images=6",
                    "--decoder_draws=2", "--classifier_steps=20")
  assert result.returncode == 0, result.stderr[-2000:]
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert metrics["dataset"] == "bands" and metrics["test_images"] == 60
  # Its domain ("images") decides what is measured: the pixel factors and
  # its class, and no paper claims.
  assert list(metrics["probe"]) == ["class accuracy"]
  assert "class" in metrics["factors"] and metrics["claims"] == []
  assert "skipped: the paper's claims" in result.stdout


def test_an_unregistered_name_is_one_line_listing_the_sources(tmp_path):
  result = run_main(f"--workdir={tmp_path / 'w'}", "--config.dataset=bands")
  assert result.returncode == 2
  line = result.stderr.strip().splitlines()[-1]
  assert "unknown dataset 'bands'" in line and "'folder'" in line
  assert not (tmp_path / "w").exists()


def test_a_taken_name_or_an_unknown_domain_is_refused():
  with pytest.raises(ValueError, match="already registered"):
    datasets.register(datasets.source_for("mnist"))

  class Odd(Bands):
    name, domain = "odd", "sounds"

  with pytest.raises(ValueError, match="domain 'sounds'"):
    datasets.register(Odd())
