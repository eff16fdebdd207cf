"""Data parallelism across two real processes (jax.distributed, CPU gloo)."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np

from conftest import ROOT, SUITE_XLA_FLAGS, tiny_config
from vlae_jax import datasets, experiment, input_pipeline, parallel, train

WORKER = os.path.join(ROOT, "tests", "distributed_worker.py")


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def before_batch_norm(name):
  """The bias of a layer whose output goes straight into batch norm."""
  layer = name.split("']['")[1]
  return (name.endswith("['bias']") and layer.startswith(
      ("conv", "dense", "deconv", "top"))
          and name != "['generative_rungs_0']['deconv0']['bias']")


def test_two_processes_train_like_one(tmp_path):
  out = tmp_path / "two.npz"
  port = free_port()
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROC",
                              "JAX_PROCESS", "XLA_FLAGS"))}
  env["XLA_FLAGS"] = SUITE_XLA_FLAGS
  workers = [subprocess.Popen(
      [sys.executable, WORKER, str(i), "2", str(port), str(out)], env=env,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
  logs = [w.communicate(timeout=240)[0] for w in workers]
  assert [w.returncode for w in workers] == [0, 0], "\n".join(
      l[-2000:] for l in logs)
  # The same three steps in this single process, on the whole global batch.
  config = tiny_config()
  model = experiment.create_model(config)
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = experiment.create_train_state(config, model)
  step = train.make_train_step(config, model, mesh)
  stream = input_pipeline.train_stream(datasets.read_digits("train"),
                                       config.batch_size, config.seed)
  losses = []
  for _ in range(3):
    state, metrics = step(state, parallel.global_batch(next(stream), mesh))
    losses.append(float(metrics["loss"]))
  saved = np.load(out)
  np.testing.assert_allclose(saved["losses"], losses, rtol=1e-5)
  params = jax.tree_util.tree_flatten_with_path(jax.device_get(state.params))[0]
  assert len(saved.files) == len(params) + 1
  for path, value in params:
    name = jax.tree_util.keystr(path)
    if before_batch_norm(name):
      # A bias right before batch norm has a true gradient of 0; Adam turns
      # the rounding noise of two summation orders into steps of up to the
      # learning rate each: after 3 steps each copy is within 3 lr of where
      # it started, so within 6 lr of the other.
      assert np.max(np.abs(saved[name] - value)) <= 6 * config.learning_rate
    else:
      np.testing.assert_allclose(saved[name], value, rtol=1e-4, atol=1e-6,
                                 err_msg=name)
