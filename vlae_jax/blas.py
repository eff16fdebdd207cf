"""Float32 matrix products through an optimised BLAS, inside jitted code.

XLA:CPU's own float32 GEMM is slower than an optimised BLAS on most of the
train step's product shapes, by up to 2.5x where the inner dimension is short
and the output wide (docs/PERFORMANCE.md, "Matrix products through BLAS").
This module runs such a product as an XLA FFI custom call into OpenBLAS
(`scipy-openblas32`, the build NumPy and SciPy ship), so it stays inside the
compiled step: no host round trip, no copy of the operands, transposes passed
to the BLAS as flags instead of materialised.

The custom call's handler (``native/blas_ffi.cc``) is compiled on first use
with the system C++ compiler against jaxlib's FFI headers, into the user cache
(``~/.cache/vlae_jax/native``, or ``$VLAE_JAX_NATIVE_CACHE``), once per
source, jaxlib version and compiler. Where that is impossible (no compiler, no
OpenBLAS wheel, not a CPU backend) ``available()`` is False with the reason in
``unavailable_reason()``, and callers keep XLA's product: the choice changes
speed, never the function computed.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib

TARGET_NAME = "vlae_sgemm"
_SOURCE = Path(__file__).with_name("native") / "blas_ffi.cc"
_lock = threading.Lock()
_state: dict = {}


def cache_dir() -> Path:
  """Where the compiled handler lives (``$VLAE_JAX_NATIVE_CACHE`` wins)."""
  override = os.environ.get("VLAE_JAX_NATIVE_CACHE")
  if override:
    return Path(override)
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return Path(base) / "vlae_jax" / "native"


def _compiler() -> str | None:
  for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
    if name and shutil.which(name):
      return shutil.which(name)
  return None


def _digest(path: Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def _build(compiler: str) -> Path:
  """The handler compiled once per (source, jaxlib, compiler): a cached
  library whose bytes still match the checksum written beside it, else a new
  build (a truncated or altered file in the cache is rebuilt, not loaded)."""
  include = jax.ffi.include_dir()
  key = hashlib.sha256()
  key.update(_SOURCE.read_bytes())
  key.update(jaxlib.__version__.encode())
  key.update(include.encode())
  key.update(compiler.encode())
  # A shared home directory may serve machines of other kinds.
  key.update(f"{sys.platform} {platform.machine()}".encode())
  directory = cache_dir()
  library = directory / f"blas_ffi-{key.hexdigest()[:16]}.so"
  checksum = library.with_suffix(".sha256")
  try:
    if checksum.read_text().strip() == _digest(library):
      return library
  except OSError:
    pass
  directory.mkdir(parents=True, exist_ok=True)
  # Built under a unique name then renamed: two processes building at once
  # each get a whole library, and the rename is atomic. The checksum comes
  # from the bytes built here.
  fd, partial = tempfile.mkstemp(dir=directory, suffix=".so.partial")
  os.close(fd)
  try:
    command = [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-w",
               f"-I{include}", str(_SOURCE), "-o", partial]
    result = subprocess.run(command, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
      raise RuntimeError(f"{' '.join(command)} failed: "
                         f"{result.stderr.strip()[-2000:]}")
    digest = _digest(Path(partial))
    fd, partial_sum = tempfile.mkstemp(dir=directory, suffix=".sha256.partial")
    with os.fdopen(fd, "w") as f:
      f.write(digest + "\n")
    os.replace(partial, library)
    os.replace(partial_sum, checksum)
  finally:
    for leftover in (partial, locals().get("partial_sum")):
      if leftover and os.path.exists(leftover):
        os.unlink(leftover)
  return library


def _openblas_sgemm():
  """(address of cblas_sgemm, library handle) of the scipy-openblas32 wheel."""
  import scipy_openblas32  # pylint: disable=import-outside-toplevel
  path = os.path.join(scipy_openblas32.get_lib_dir(),
                      "lib" + scipy_openblas32.get_library() +
                      (".dylib" if sys.platform == "darwin" else ".so"))
  handle = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
  prefix = "scipy_" if scipy_openblas32.get_library().startswith("scipy") else ""
  function = getattr(handle, prefix + "cblas_sgemm")
  # One BLAS thread: the handler splits each product over XLA's own threads.
  getattr(handle, prefix + "openblas_set_num_threads")(1)
  return ctypes.cast(function, ctypes.c_void_p).value, handle


def _load() -> None:
  """Builds, loads and registers the handler; records why if it cannot."""
  if _state:
    return
  with _lock:
    if _state:
      return
    if os.environ.get("VLAE_JAX_BLAS", "1") == "0":
      _state["reason"] = "turned off by VLAE_JAX_BLAS=0"
      return
    if not hasattr(jax, "ffi"):
      _state["reason"] = (f"jax {jax.__version__} has no jax.ffi (FFI custom "
                          "calls need jax>=0.4.31)")
      return
    compiler = _compiler()
    if compiler is None:
      _state["reason"] = "no C++ compiler (g++, c++ or clang++; or $CXX)"
      return
    try:
      sgemm, blas_handle = _openblas_sgemm()
    except Exception as error:  # pylint: disable=broad-except
      _state["reason"] = f"no OpenBLAS (pip install scipy-openblas32): {error}"
      return
    # Whatever fails from here on (build, load, registration) leaves XLA's
    # products in place, with the reason.
    try:
      library = ctypes.CDLL(str(_build(compiler)), mode=ctypes.RTLD_LOCAL)
      library.vlae_set_sgemm.argtypes = [ctypes.c_void_p]
      library.vlae_set_sgemm(sgemm)
      jax.ffi.register_ffi_target(
          TARGET_NAME, jax.ffi.pycapsule(library.VlaeSgemm), platform="cpu")
    except Exception as error:  # pylint: disable=broad-except
      first_line = (str(error).splitlines() or [type(error).__name__])[0]
      _state["reason"] = ("building or loading the FFI handler failed: "
                          f"{first_line}")
      return
    # Both handles live as long as the process: the compiled step keeps
    # calling into them.
    _state.update(library=library, blas=blas_handle, reason=None)


def available() -> bool:
  """True when BLAS products can run in this process: the CPU backend and
  the handler built and registered."""
  return unavailable_reason() is None


def unavailable_reason() -> str | None:
  """Why ``available()`` is False, in one line, or None."""
  backend = jax.default_backend()
  if backend != "cpu":
    # The custom call exists for the CPU only: inside a GPU program it
    # would not run.
    return (f"the default backend is {backend}, and BLAS custom calls run "
            "on the CPU only")
  _load()
  return _state.get("reason")


# The shortest inner dimension a product goes to BLAS with under
# ``by_shape``: below it XLA:CPU's GEMM was as fast or faster on every train
# step product measured (K = 10, 48, 64, 100; bench/blas_products.py), from
# 128 on BLAS was 1.0x-2.0x faster (docs/PERFORMANCE.md).
MIN_BLAS_INNER = 128


def _check(a, b, transpose_a, transpose_b):
  if a.ndim != 2 or b.ndim != 2:
    raise ValueError(f"blas.matmul takes 2-D operands, got shapes {a.shape} "
                     f"and {b.shape}; reshape to [rows, columns] (or vmap).")
  if a.dtype != jnp.float32 or b.dtype != jnp.float32:
    raise ValueError(f"blas.matmul takes float32 operands, got {a.dtype} and "
                     f"{b.dtype}; cast them, or use jnp.dot.")
  k_a = a.shape[0] if transpose_a else a.shape[1]
  k_b = b.shape[1] if transpose_b else b.shape[0]
  if k_a != k_b:
    raise ValueError(f"blas.matmul: op(a) {a.shape}{'^T' * transpose_a} and "
                     f"op(b) {b.shape}{'^T' * transpose_b} have inner "
                     f"dimensions {k_a} and {k_b}; they must match.")


def _product(a: jax.Array, b: jax.Array, transpose_a: bool,
             transpose_b: bool, by_shape: bool = False) -> jax.Array:
  _check(a, b, transpose_a, transpose_b)
  if by_shape and (a.shape[0] if transpose_a else a.shape[1]) < MIN_BLAS_INNER:
    return jnp.dot(a.T if transpose_a else a, b.T if transpose_b else b)
  if not available():
    raise RuntimeError(f"vlae_jax.blas.matmul cannot run here: "
                       f"{unavailable_reason()}; use jnp.dot.")
  m = a.shape[1] if transpose_a else a.shape[0]
  n = b.shape[0] if transpose_b else b.shape[1]
  call = jax.ffi.ffi_call(
      TARGET_NAME, jax.ShapeDtypeStruct((m, n), jnp.float32),
      vmap_method="sequential")
  return call(a, b, transpose_a=transpose_a, transpose_b=transpose_b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def matmul(a: jax.Array, b: jax.Array, transpose_a: bool = False,
           transpose_b: bool = False, by_shape: bool = False) -> jax.Array:
  """``op(a) @ op(b)`` through BLAS: float32 2-D operands, ``op`` = transpose
  where asked. ``[M, K] @ [K, N] -> [M, N]``. Differentiable (reverse mode;
  each gradient product is one product of the stored operands).
  ``by_shape``: products (this one and its gradients') with an inner
  dimension under ``MIN_BLAS_INNER`` go to XLA instead.
  The first BLAS call builds and registers the handler; where
  ``available()`` is False it raises RuntimeError with the reason."""
  return _product(a, b, transpose_a, transpose_b, by_shape)


def _matmul_fwd(a, b, transpose_a, transpose_b, by_shape):
  return _product(a, b, transpose_a, transpose_b, by_shape), (a, b)


def _matmul_bwd(transpose_a, transpose_b, by_shape, residuals, dc):
  a, b = residuals
  # C = A' B' with A' = op(a), B' = op(b): dA' = dC B'^T, dB' = A'^T dC,
  # each written as one product of the stored operands, no copies.
  if transpose_a:
    da = _product(b, dc, transpose_b, True, by_shape)    # B' dC^T
  else:
    da = _product(dc, b, False, not transpose_b, by_shape)  # dC B'^T
  if transpose_b:
    db = _product(dc, a, True, transpose_a, by_shape)    # dC^T A'
  else:
    db = _product(a, dc, not transpose_a, False, by_shape)  # A'^T dC
  return da, db


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def usable(dtype=jnp.float32) -> bool:
  """True where products computed in ``dtype`` may go to BLAS: float32, the
  CPU backend, one device (an opaque custom call would make the SPMD
  partitioner gather a sharded operand), and the handler available."""
  if jnp.dtype(dtype) != jnp.float32:
    return False
  if jax.default_backend() != "cpu" or jax.device_count() != 1:
    return False
  return available()


MATMULS = ("auto", "xla", "blas")


def resolve(matmul: str, dtype=jnp.float32) -> bool:
  """Whether ``config.model.matmul`` sends products of ``dtype`` to BLAS:
  "xla" never, "blas" always (float32; RuntimeError where unavailable),
  "auto" where ``usable`` (float32, one CPU device, handler available)."""
  if matmul not in MATMULS:
    raise ValueError(f"model.matmul must be one of {list(MATMULS)}, got "
                     f"{matmul!r}.")
  if matmul == "xla" or jnp.dtype(dtype) != jnp.float32:
    return False
  if matmul == "blas":
    if not available():
      raise RuntimeError(f"model.matmul='blas' cannot run here: "
                         f"{unavailable_reason()}; use 'auto' or 'xla'.")
    return True
  return usable(dtype)


def describe(matmul: str, dtype=jnp.float32) -> str:
  """One line for the training log: who runs the step's matrix products."""
  if resolve(matmul, dtype):
    return f"OpenBLAS inside the compiled step (model.matmul={matmul})"
  if matmul == "xla":
    return "XLA (model.matmul=xla)"
  if jnp.dtype(dtype) != jnp.float32:
    return f"XLA ({jnp.dtype(dtype).name} compute)"
  if jax.default_backend() != "cpu":
    return f"XLA ({jax.default_backend()} backend)"
  if jax.device_count() != 1:
    return f"XLA ({jax.device_count()} devices: data parallel)"
  return f"XLA ({unavailable_reason()})"


def product(a: jax.Array, b: jax.Array, transpose_a: bool = False,
            transpose_b: bool = False, precision=None) -> jax.Array:
  """``op(a) @ op(b)`` of 2-D operands: ``matmul`` with ``by_shape`` where
  both are float32 and BLAS is available, else XLA's product (``precision``
  applies to that one)."""
  if (a.dtype == jnp.float32 and b.dtype == jnp.float32 and available()):
    return matmul(a, b, transpose_a, transpose_b, True)
  return jnp.dot(a.T if transpose_a else a, b.T if transpose_b else b,
                 precision=precision)


def dot_general(lhs, rhs, dimension_numbers, precision=None,
                preferred_element_type=None):
  """``lax.dot_general`` with the dense-layer case (``lhs [..., K]``
  contracted with ``rhs [K, N]``, float32, no batch axes) through BLAS
  (``matmul`` with ``by_shape``); every other case goes to XLA. Pass as
  ``nn.Dense(dot_general=...)``."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  if (tuple(lhs_contract) == (lhs.ndim - 1,) and tuple(rhs_contract) == (0,)
      and not lhs_batch and not rhs_batch and rhs.ndim == 2
      and preferred_element_type in (None, jnp.float32)):
    flat = product(lhs.reshape(-1, lhs.shape[-1]), rhs, precision=precision)
    return flat.reshape(lhs.shape[:-1] + rhs.shape[1:])
  return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                             preferred_element_type=preferred_element_type)


__all__ = ["available", "unavailable_reason", "matmul", "product", "usable",
           "dot_general", "describe", "resolve", "cache_dir", "MATMULS", "TARGET_NAME"]
