"""Data parallelism over every device, and feeding batches to them.

The train step is one ``jax.jit`` program over a 1-D device mesh ("data"):
the state is replicated, the batch is sharded on its leading axis, and XLA
inserts the collectives. The program computes exactly the single-device
function, so the MMD of each rung and the batch-norm statistics are over the
global batch.

Several processes: once ``distributed.initialize_distributed`` has started
``jax.distributed`` (an explicit ``--distributed=on`` or a complete
multi-process launch), each process reads its own slice of every global batch
and ``global_batch`` assembles the sharded array.
"""

from __future__ import annotations

import collections
from typing import Dict, Iterator, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  devices = list(devices) if devices is not None else jax.devices()
  return Mesh(np.array(devices), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec("data"))


def global_batch(local: Dict[str, np.ndarray], mesh: Mesh
                 ) -> Dict[str, jax.Array]:
  """This process's rows -> one array sharded over the mesh (asynchronous)."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in local.items()}


def prefetch_to_device(batches: Iterator[Dict[str, np.ndarray]], mesh: Mesh,
                       size: int = 2) -> Iterator[Dict[str, jax.Array]]:
  """Keeps ``size`` batches in flight to the devices ahead of the step."""
  queue = collections.deque()
  for batch in batches:
    queue.append(global_batch(batch, mesh))
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
