"""Process set-up that must happen before JAX or TensorFlow start.

Everything here reads or writes the process environment, never arrays, and
imports nothing from the rest of vlae_jax, so ``main.py`` (and any script)
can call it first:

- ``configure_jax(deterministic, preallocate)``: XLA's GPU determinism flag,
  full-precision float32 matrix products, and whether this process may grab
  most of the GPU's memory up front. Only effective before JAX's first
  computation.
- ``enable_compilation_cache()``: JAX's persistent compilation cache.
- ``initialize_distributed(setting)``: ``jax.distributed.initialize()`` only
  for an explicit request or a complete multi-process launch (never for a
  SLURM job id alone: an ``salloc`` shell is one process).
- ``import_tensorflow()`` / ``import_tfds()``: the only way vlae_jax imports
  TensorFlow, which feeds data and must never take the GPU from JAX.
- ``record_interrupts()`` / ``raise_if_interrupted()``: Ctrl-C and SIGTERM
  during start-up recorded and acted on at safe points.
- ``retain_freed_host_memory()``: glibc keeps freed memory for reuse instead
  of handing it back to the kernel, so XLA:CPU's per-step temporary buffer
  is not faulted in page by page on every step.
"""

from __future__ import annotations

import contextlib
import os
import sys
import shlex
from typing import Dict, MutableMapping, Optional

# XLA:GPU picks deterministic algorithms (no atomics in scatter / convolution
# backward passes, no autotuning races) under this flag. Ignored on the CPU,
# whose programs are deterministic already.
GPU_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"
DISTRIBUTED_SETTINGS = ("auto", "on", "off")


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
SYSTEM_MALLOC_ENV = "VLAE_JAX_SYSTEM_MALLOC"


def retain_freed_host_memory(environ: Optional[MutableMapping[str, str]] = None
                             ) -> bool:
  """Makes glibc's malloc keep freed memory in the process for reuse.

  XLA:CPU allocates one temporary buffer per execution of a compiled program
  (812 MB for the celeba train step) and frees it at the end; glibc serves
  such a size with a fresh ``mmap`` and unmaps it on free, so every step
  faults the whole buffer in again, 4 KiB at a time: 215,000 page faults and
  about 0.5 s of kernel time per celeba step on the development machine.
  With one malloc arena, no ``mmap`` for large blocks and no trimming, the
  buffer is reused and the faults drop to none (docs/PERFORMANCE.md: the
  celeba step 12-15% faster). Resident memory stays at its peak, which a
  training process reaches anyway.

  Call it before JAX starts its threads (``main.py`` does, first thing). It
  changes the whole process's allocator, so the library never calls it on
  import. Returns False, changing nothing, where the C library is not glibc
  or ``VLAE_JAX_SYSTEM_MALLOC=1`` is set.
  """
  environ = os.environ if environ is None else environ
  if environ.get(SYSTEM_MALLOC_ENV, "") not in ("", "0"):
    return False
  if not sys.platform.startswith("linux"):
    return False
  import ctypes  # pylint: disable=g-import-not-at-top
  try:
    libc = ctypes.CDLL(None)
    mallopt = libc.mallopt
    libc.gnu_get_libc_version  # glibc only: musl has no such symbol
  except (OSError, AttributeError):
    return False
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  return all(mallopt(param, value) == 1 for param, value in (
      (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1)))


class RuntimeSetupError(ValueError):
  """A process set-up request that cannot work; the message says the fix."""


def _append_xla_flag(environ: MutableMapping[str, str], flag: str):
  flags = shlex.split(environ.get("XLA_FLAGS", ""))
  name = flag.split("=")[0]
  if not any(f.split("=")[0] == name for f in flags):  # the user's value wins
    flags.append(flag)
  environ["XLA_FLAGS"] = " ".join(flags)


def configure_jax(deterministic: bool = True, preallocate: bool = True,
                  environ: Optional[MutableMapping[str, str]] = None
                  ) -> Dict[str, str]:
  """Sets the environment variables JAX reads when it starts.

  Args:
    deterministic: XLA's GPU determinism flag and ``highest`` default matmul
      precision (float32 products in full float32, not TF32 on NVIDIA GPUs),
      so that two runs, or a run and its resumption, are bitwise equal. Costs
      speed on a GPU (see docs/PERFORMANCE.md); no effect on a CPU.
    preallocate: False sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false``: the
      process takes GPU memory as it needs it instead of 75% of the card at
      start-up, so an analysis mode (or a test) can run beside a trainer.
    environ: the mapping to edit (default ``os.environ``).

  Values the user set explicitly are kept. Returns the variables it set.
  """
  environ = os.environ if environ is None else environ
  before = dict(environ)
  if deterministic:
    _append_xla_flag(environ, GPU_DETERMINISM_FLAG)
    environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
    _sync_loaded_jax_precision(environ)
  if not preallocate:
    environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  return {k: v for k, v in environ.items() if before.get(k) != v}


def _sync_loaded_jax_precision(environ):
  """JAX reads JAX_DEFAULT_MATMUL_PRECISION at import; if it is already
  imported (a script, a test), set the same value through its config."""
  import sys
  if "jax" in sys.modules and environ is os.environ:
    sys.modules["jax"].config.update(
        "jax_default_matmul_precision",
        environ["JAX_DEFAULT_MATMUL_PRECISION"])


def enable_compilation_cache():
  """JAX's persistent compilation cache, shared by all workdirs.

  ``VLAE_JAX_COMPILATION_CACHE`` names the folder (default
  ``~/.cache/vlae_jax/jax_compilation_cache``); set it empty to disable. A
  folder that cannot be written turns the cache off with one warning line.
  """
  import jax
  folder = os.environ.get(
      "VLAE_JAX_COMPILATION_CACHE",
      os.path.join(os.path.expanduser("~"), ".cache", "vlae_jax",
                   "jax_compilation_cache"))
  if not folder:
    return
  probe = os.path.join(folder, f".write-test-{os.getpid()}")
  try:  # JAX would warn on every compile (two lines each) instead
    os.makedirs(folder, exist_ok=True)
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    print(f"warning: JAX's compilation cache is off: cannot write {folder} "
          f"({e.strerror or type(e).__name__}); set "
          "VLAE_JAX_COMPILATION_CACHE to a writable folder (or empty).",
          flush=True)
    return
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


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
  if setting not in DISTRIBUTED_SETTINGS:
    raise RuntimeSetupError(
        f"unknown --distributed={setting!r}; choose one of "
        f"{list(DISTRIBUTED_SETTINGS)}.")
  launch = multi_process_launch(environ)
  if setting == "off" or (setting == "auto" and launch is None):
    return False
  import jax
  kwargs = {}
  if environ.get("JAX_COORDINATOR_ADDRESS"):
    missing = [n for n in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
               if not environ.get(n, "").isdigit()]
    if missing:
      raise RuntimeSetupError(
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
    raise RuntimeSetupError(
        f"jax.distributed.initialize() failed: {first}; set "
        "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, or "
        "run with --distributed=off for one process.") from None
  return True


_INTERRUPTS = []


def _record_interrupt(signum, frame):
  del frame
  _INTERRUPTS.append(signum)


def _raise_interrupt(signum, frame):
  del frame
  _INTERRUPTS.append(signum)
  raise KeyboardInterrupt


def record_interrupts():
  """SIGINT (Ctrl-C) and SIGTERM set a flag instead of raising or killing
  the process, until ``interrupts_raise``: raised inside JAX's C++
  start-up, KeyboardInterrupt aborts the process, some library imports
  swallow it, and SIGTERM's default would leave child processes (JPEG
  decode workers) behind. Code polls ``raise_if_interrupted`` at safe
  points."""
  import signal
  signal.signal(signal.SIGINT, _record_interrupt)
  signal.signal(signal.SIGTERM, _record_interrupt)


@contextlib.contextmanager
def recorded_interrupts():
  """Within the block SIGINT and SIGTERM are recorded (``interrupted``),
  whatever was installed before, which is restored after: the training
  loop polls between steps, saves, and stops. Outside the main thread
  (where handlers cannot be installed) signals are left alone."""
  import signal
  previous = {}
  try:
    for sig in (signal.SIGINT, signal.SIGTERM):
      previous[sig] = signal.signal(sig, _record_interrupt)
  except ValueError:  # not the main thread
    pass
  try:
    yield
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


def interrupted() -> bool:
  """Whether a Ctrl-C or SIGTERM was recorded."""
  return bool(_INTERRUPTS)


def interrupt_name() -> str:
  """The name of the newest recorded signal ("SIGINT" when none)."""
  import signal
  return signal.Signals(_INTERRUPTS[-1]).name if _INTERRUPTS else "SIGINT"


def raise_if_interrupted():
  """KeyboardInterrupt if a signal was recorded (a safe point)."""
  if _INTERRUPTS:
    raise KeyboardInterrupt


def interrupts_raise():
  """SIGINT and SIGTERM raise KeyboardInterrupt at once (recorded, so the
  exit message can name the signal)."""
  import signal
  signal.signal(signal.SIGINT, _raise_interrupt)
  signal.signal(signal.SIGTERM, _raise_interrupt)


def import_tensorflow():
  """``tensorflow``, with every GPU hidden from it (JAX owns the GPU).

  The hiding happens before TensorFlow creates any device; every TensorFlow
  or TFDS import in vlae_jax goes through here. TensorFlow's C++ info and
  warning lines (oneDNN notices) are silenced unless the user set
  ``TF_CPP_MIN_LOG_LEVEL`` themselves.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # TensorFlow only gathers batches and writes summaries here: its oneDNN
  # kernels buy nothing, and their notice escapes the redirect below once
  # JAX has started absl's C++ logging.
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  if "tensorflow" not in sys.modules and \
      os.environ["TF_CPP_MIN_LOG_LEVEL"] not in ("0", "1"):
    # TensorFlow >= 2.20 logs its start-up notices through C++ absl, which
    # ignores TF_CPP_MIN_LOG_LEVEL: keep them off stderr during the import
    # (errors still raise as Python exceptions).
    stderr_fd = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
      sys.stderr.flush()
      os.dup2(devnull, 2)
      import tensorflow as tf
    finally:
      os.dup2(stderr_fd, 2)
      os.close(stderr_fd)
      os.close(devnull)
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # devices already initialised by the caller's own TF
    if tf.config.get_visible_devices("GPU"):
      raise
  return tf


def import_tfds():
  """``tensorflow_datasets``, imported after ``import_tensorflow``."""
  import_tensorflow()
  import tensorflow_datasets as tfds
  # TFDS logs a warning for every unprepared version folder it looks at.
  import logging as std_logging
  std_logging.getLogger("absl").addFilter(_quiet_tfds_lookup)
  return tfds


def quiet_library_warnings():
  """Drops Orbax's log lines and TFDS's warnings from the console: they
  narrate internals (a read-only manager's options, a handler it had to
  guess, an unprepared version folder, the traceback of a background save
  that vlae_jax re-raises and reports in one line)."""
  import logging as std_logging

  def keep(record) -> bool:
    path = record.pathname.replace(os.sep, "/")
    if "/orbax/" in path:  # its save errors are re-raised to vlae_jax
      return record.levelno >= std_logging.CRITICAL
    if "/tensorflow_datasets/" in path:
      return record.levelno >= std_logging.ERROR
    return True

  std_logging.getLogger("absl").addFilter(keep)


def quiet_closed_loop_callbacks():
  """Drops the "Event loop is closed" RuntimeErrors that TensorStore's
  callbacks raise into Orbax's finished asyncio loops when a save fails
  (e.g. a full disk): Python prints each as an unraisable traceback, while
  the failure itself reaches vlae_jax and is reported in one line."""
  previous = sys.unraisablehook

  def hook(unraisable):
    if isinstance(unraisable.exc_value, RuntimeError) and \
        "Event loop is closed" in str(unraisable.exc_value):
      return
    previous(unraisable)

  sys.unraisablehook = hook


def _quiet_tfds_lookup(record) -> bool:
  return "has no dataset_info.json" not in record.getMessage()
