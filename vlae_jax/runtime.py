"""Process set-up that must happen before JAX or TensorFlow start.

Everything here reads or writes the process environment, never arrays, and
imports nothing from the rest of vlae_jax, so ``main.py`` (and any script)
can call it first (the other start-up concerns have their own modules:
``interrupts`` for Ctrl-C and SIGTERM, ``distributed`` for
``jax.distributed``, ``tf_gate`` for TensorFlow):

- ``configure_jax(deterministic, preallocate)``: XLA's GPU determinism flag,
  full-precision float32 matrix products, and whether this process may grab
  most of the GPU's memory up front. Only effective before JAX's first
  computation.
- ``enable_compilation_cache()``: JAX's persistent compilation cache.
- ``retain_freed_host_memory()``: glibc keeps freed memory for reuse instead
  of handing it back to the kernel, so XLA:CPU's per-step temporary buffer
  is not faulted in page by page on every step.
"""

from __future__ import annotations

import os
import sys
import shlex
from typing import Dict, MutableMapping, Optional

# XLA:GPU picks deterministic algorithms (no atomics in scatter / convolution
# backward passes, no autotuning races) under this flag. Ignored on the CPU,
# whose programs are deterministic already.
GPU_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"


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
