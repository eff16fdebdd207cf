"""One process of a two-process data-parallel train step (tests/test_distributed.py).

    python tests/distributed_worker.py PROCESS_ID NUM_PROCESSES PORT OUT.npz

Starts ``jax.distributed`` through ``vlae_jax.distributed`` (JAX_COORDINATOR_ADDRESS
etc.), builds the tiny digits model, feeds this process's slice of the global
batch through ``parallel.global_batch`` and runs ``steps`` train steps of the
same jitted function ``train.py`` uses. Process 0 writes the loss and the
parameters.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
  process_id, num_processes, port, out = sys.argv[1:5]
  os.environ.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                    JAX_NUM_PROCESSES=num_processes, JAX_PROCESS_ID=process_id,
                    JAX_PLATFORMS="cpu")
  from vlae_jax import distributed, runtime
  runtime.configure_jax(deterministic=True, preallocate=False)
  import jax
  assert distributed.initialize_distributed("auto") is True
  import numpy as np
  from conftest import tiny_config
  from vlae_jax import datasets, experiment, input_pipeline, parallel, train
  config = tiny_config()
  model = experiment.create_model(config)
  mesh = parallel.make_mesh()
  assert mesh.devices.size == int(num_processes) == jax.process_count()
  state = jax.device_put(experiment.create_train_state(config, model),
                         parallel.replicated(mesh))
  step = train.make_train_step(config, model, mesh)
  stream = input_pipeline.train_stream(
      datasets.read_digits("train"), config.batch_size, config.seed,
      shard_index=jax.process_index(), num_shards=jax.process_count())
  losses = []
  for _ in range(3):
    state, metrics = step(state, parallel.global_batch(next(stream), mesh))
    losses.append(float(metrics["loss"]))
  params = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in
            jax.tree_util.tree_flatten_with_path(
                jax.device_get(state.params))[0]}
  if jax.process_index() == 0:
    np.savez(out, losses=np.array(losses), **params)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
