"""Training, figures and evaluation where TensorFlow is not installed (as on
a GPU machine whose image has JAX but no TensorFlow): a real virtual
environment whose packages are the suite's own, linked, less TensorFlow,
TensorFlow Datasets and Keras."""

import os
import subprocess
import sys
import sysconfig

import pytest

from conftest import ROOT

# Distributions a JAX-only image lacks; each name is matched as a prefix of
# a site-packages entry (package folders and their .dist-info).
WITHOUT = ("tensorflow", "tf_keras", "keras", "tensorflow_datasets",
           "tensorflow_cpu", "tensorflow_io", "tensorflow_metadata")


def _venv_without_tensorflow(folder) -> str:
  """A virtual environment linking every installed package but TensorFlow's
  family; returns its python."""
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)],
                 check=True)
  python = os.path.join(folder, "bin", "python")
  site = subprocess.run(
      [python, "-c", "import sysconfig; print(sysconfig.get_paths()"
       "['purelib'])"], check=True, capture_output=True, text=True
  ).stdout.strip()
  ours = sysconfig.get_paths()["purelib"]
  for entry in os.listdir(ours):
    if entry.lower().replace("-", "_").startswith(WITHOUT):
      continue
    os.symlink(os.path.join(ours, entry), os.path.join(site, entry))
  return python


@pytest.fixture(scope="module")
def python_without_tensorflow(tmp_path_factory):
  return _venv_without_tensorflow(tmp_path_factory.mktemp("no_tf") / "venv")


def _run(python, *args, timeout=600):
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  return subprocess.run([python, os.path.join(ROOT, "main.py"), *args],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=timeout)


def test_the_environment_really_lacks_tensorflow(python_without_tensorflow):
  out = subprocess.run(
      [python_without_tensorflow, "-c",
       "import importlib.util as u; print([u.find_spec(m) is None for m in "
       "('tensorflow', 'tensorflow_datasets', 'jax', 'flax', 'orbax', "
       "'ml_collections')])"], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[True, True, False, False, False, False]"


def test_trains_traverses_and_evaluates_without_tensorflow(
    python_without_tensorflow, tmp_path):
  workdir = tmp_path / "run"
  common = (f"--workdir={workdir}",)
  train = _run(python_without_tensorflow, *common,
               "--config.model.rung_widths=((8, 16), (32,), (32,))",
               "--config.batch_size=16", "--config.num_train_steps=20",
               "--config.log_every=10", "--config.eval_every=20",
               "--config.num_eval_batches=2", "--config.image_every=20",
               "--config.checkpoint_every=10",
               f"--config.cache_dir={tmp_path / 'cache'}")
  assert train.returncode == 0, train.stderr[-3000:]
  assert "step 20/20" in train.stdout
  assert "tensorflow" not in (train.stdout + train.stderr).lower()
  traverse = _run(python_without_tensorflow, "--mode=traverse", *common)
  assert traverse.returncode == 0, traverse.stderr[-3000:]
  assert (workdir / "figures" / "traverse_rung0.png").exists()
  evaluate = _run(python_without_tensorflow, "--mode=evaluate", *common,
                  "--probe_train_size=200", "--decoder_images=20",
                  "--decoder_draws=2", "--classifier_steps=20",
                  "--arithmetic_triples=2")
  assert evaluate.returncode == 0, evaluate.stderr[-3000:]
  assert (workdir / "eval" / "metrics.json").exists()


def test_a_tfds_source_without_tensorflow_is_one_line(
    python_without_tensorflow, tmp_path):
  result = _run(python_without_tensorflow, f"--workdir={tmp_path / 'run'}",
                "--config.dataset=tfds:cifar10",
                f"--config.cache_dir={tmp_path / 'cache'}")
  assert result.returncode == 2, result.stderr[-3000:]
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, result.stderr
  assert "reading TFDS cifar10 needs TensorFlow" in lines[0]
  assert "pip install tensorflow-cpu tensorflow-datasets" in lines[0]
  assert not (tmp_path / "run").exists()
