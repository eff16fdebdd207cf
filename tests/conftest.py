"""Shared fixtures: tiny configs and the real data in ../shared/data."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Before any test imports JAX. The suite's tolerances assume full float32
# matrix products and convolutions (no TF32 on a GPU) and bitwise-repeatable
# runs, so it runs deterministic; and neither it nor the main.py processes it
# starts (which inherit this environment) takes 75% of a GPU's memory.
from vlae_jax import runtime  # noqa: E402  (imports no JAX)
runtime.configure_jax(deterministic=True, preallocate=False)
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
MNIST_DIR = os.path.join(SHARED_DATA, "mnist")
CELEBA_DIR = os.path.join(SHARED_DATA, "celeba")

needs_mnist = pytest.mark.skipif(not os.path.isdir(MNIST_DIR),
                                 reason="../shared/data/mnist not present")
needs_celeba = pytest.mark.skipif(not os.path.isdir(CELEBA_DIR),
                                  reason="../shared/data/celeba not present")


def tiny_config(tmp_path=None, **overrides):
  """The default (digits) config, shrunk so a step takes milliseconds."""
  from configs import default
  config = default.get_config()
  config.model.rung_widths = ((8, 16), (32,), (32,))
  config.batch_size = 16
  config.num_train_steps = 20
  config.log_every = 5
  config.eval_every = 10
  config.num_eval_batches = 2
  config.image_every = 10
  config.checkpoint_every = 10
  if tmp_path is not None:
    config.cache_dir = str(tmp_path / "cache")
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


@pytest.fixture
def tiny():
  return tiny_config
