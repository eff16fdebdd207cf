"""Multi-process start-up: ``jax.distributed.initialize()`` only for an
explicit request or a complete multi-process launch (never for a SLURM job
id alone: an ``salloc`` shell is one process). Reads the environment,
imports JAX only when it starts it, so ``main.py`` calls it before JAX's
first computation; ``parallel`` then lays batches over the devices.
"""

from __future__ import annotations

import os
from typing import MutableMapping, Optional

SETTINGS = ("auto", "on", "off")


class SetupError(ValueError):
  """A multi-process start-up request that cannot work; the message says the fix."""


def _int(environ, name) -> int:
  try:
    return int(environ.get(name, ""))
  except ValueError:
    return 0


def multi_process_launch(environ: Optional[MutableMapping[str, str]] = None
                         ) -> Optional[str]:
  """Which launcher started this process as one of several, or None.

  - ``jax``: ``JAX_COORDINATOR_ADDRESS`` with ``JAX_NUM_PROCESSES`` > 1.
  - ``slurm``: a job step started by ``srun`` with more than one task
    (``SLURM_STEP_ID`` and ``SLURM_PROCID`` set, ``SLURM_STEP_NUM_TASKS`` or
    ``SLURM_NTASKS`` > 1). A bare ``SLURM_JOB_ID`` (an ``salloc`` or
    ``sbatch`` shell) is one process, not a launch.
  - ``mpi``: Open MPI's ``OMPI_COMM_WORLD_SIZE`` > 1.
  """
  environ = os.environ if environ is None else environ
  if environ.get("JAX_COORDINATOR_ADDRESS") and _int(
      environ, "JAX_NUM_PROCESSES") > 1:
    return "jax"
  tasks = _int(environ, "SLURM_STEP_NUM_TASKS") or _int(environ,
                                                         "SLURM_NTASKS")
  if ("SLURM_STEP_ID" in environ and "SLURM_PROCID" in environ
      and tasks > 1):
    return "slurm"
  if _int(environ, "OMPI_COMM_WORLD_SIZE") > 1:
    return "mpi"
  return None


def initialize_distributed(setting: str = "auto",
                           environ: Optional[MutableMapping[str, str]] = None
                           ) -> bool:
  """``jax.distributed.initialize()`` when asked for; True if it ran.

  ``setting``: "auto" (only for a complete multi-process launch, see
  ``multi_process_launch``), "on" (always; JAX detects the cluster), "off".
  With ``JAX_COORDINATOR_ADDRESS`` the process count and id come from
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``.
  """
  environ = os.environ if environ is None else environ
  if setting not in SETTINGS:
    raise SetupError(
        f"unknown --distributed={setting!r}; choose one of "
        f"{list(SETTINGS)}.")
  launch = multi_process_launch(environ)
  if setting == "off" or (setting == "auto" and launch is None):
    return False
  import jax
  kwargs = {}
  if environ.get("JAX_COORDINATOR_ADDRESS"):
    missing = [n for n in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
               if not environ.get(n, "").isdigit()]
    if missing:
      raise SetupError(
          f"JAX_COORDINATOR_ADDRESS is set but {', '.join(missing)} is not an "
          "integer; set JAX_NUM_PROCESSES and JAX_PROCESS_ID on every process.")
    kwargs = dict(coordinator_address=environ["JAX_COORDINATOR_ADDRESS"],
                  num_processes=int(environ["JAX_NUM_PROCESSES"]),
                  process_id=int(environ["JAX_PROCESS_ID"]))
  # CPU processes need a collectives library (GPUs use NCCL regardless).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(**kwargs)
  except (ValueError, RuntimeError) as e:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise SetupError(
        f"jax.distributed.initialize() failed: {first}; set "
        "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, or "
        "run with --distributed=off for one process.") from None
  return True
