"""The ladder's 4x4 stride-2 convolutions, in the forms that run fastest.

Each function computes one function with one set of parameters (a kernel
``[4, 4, in, out]`` as ``nn.Conv`` / ``nn.ConvTranspose`` store it), in a
few ways that differ only in speed and float rounding order:

``conv(x, kernel, form)``, ``nn.Conv(out, (4, 4), strides=2, padding="SAME")``:
- "native": ``lax.conv_general_dilated`` (cuDNN's conv on a GPU).
- "gemm": on an input of even height and width, every product of the
  forward and backward pass one matrix product of exactly the useful FLOPs:
  patches ``[B*Ho*Wo, 16 in]`` times the kernel, the kernel gradient
  patches^T times the output gradient, the input gradient the output
  gradient times kernel^T scattered back by ``col2im``.
- "gemm_blas": "gemm" with its matrix products run by an optimised BLAS
  inside the compiled step (``vlae_jax.blas``; float32 on the CPU),
  transposed operands passed as BLAS flags, not copied.

``conv_transpose(x, kernel, form)``, ``nn.ConvTranspose(out, (4, 4),
strides=2, padding="SAME")``:
- "native": ``lax.conv_transpose`` (a conv over the 2x-dilated input; on
  XLA:CPU its gradient is very slow).
- "gemm": the transposed conv as it is defined, each input pixel times the
  ``[in, 16 out]`` kernel (one matrix product of exactly the useful FLOPs)
  and the 16 products added into the output by ``col2im``; its input and
  kernel gradients are one matrix product each with the output gradient's
  conv patches.
- "gemm_blas": "gemm" with BLAS products.

"auto" (``choose_form``) takes "gemm" on the CPU ("gemm_blas" where BLAS
products run, models._with_matmul) and "native" elsewhere. Eleven other
forms (space-to-depth, patches, sub-pixel, phase convs, per-phase col2im,
...) were measured slower on the CPU and deleted; docs/PERFORMANCE.md keeps
their table and git their code.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from vlae_jax import blas

FORMS = ("native", "gemm", "gemm_blas")
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def choose_form(input_shape, transposed: bool = False, backend=None) -> str:
  """The fastest exact form measured for a backend and input shape.

  CPU (bench/conv_forms.py, docs/PERFORMANCE.md): "gemm", whose three matrix
  products run at XLA:CPU's matrix-product rate with exactly the useful
  FLOPs (the celeba step 1.3x faster than with XLA's convs, same run), for
  every transposed conv and every conv of an even-sized input (the 'SAME'
  padding of an odd size is uneven: XLA's conv there). Other backends:
  their conv library (native), as nothing was measured there.
  """
  backend = backend or jax.default_backend()
  if backend != "cpu":
    return "native"
  if transposed or (input_shape[1] % 2 == 0 and input_shape[2] % 2 == 0):
    return "gemm"
  return "native"


def _check_even(x):
  if x.shape[1] % 2 or x.shape[2] % 2:
    raise ValueError(f"a 4x4 stride-2 'SAME' conv in a gemm form needs an "
                     f"even height and width, got {x.shape[1]}x{x.shape[2]}; "
                     "use form='native'.")


def _check_form(form):
  if form not in FORMS:
    raise ValueError(f"unknown conv form {form!r}; choose one of "
                     f"{list(FORMS)}.")


def conv(x: jax.Array, kernel: jax.Array, form: str = "native",
         precision=None) -> jax.Array:
  """``[B, H, W, in]`` -> ``[B, H/2, W/2, out]``; ``kernel [4, 4, in, out]``."""
  _check_form(form)
  if form == "native":
    return jax.lax.conv_general_dilated(
        x, kernel, (2, 2), "SAME", dimension_numbers=_DIMENSIONS,
        precision=precision)
  _check_even(x)
  return _conv_gemm(x, kernel, precision, form == "gemm_blas")


def conv_transpose(x: jax.Array, kernel: jax.Array, form: str = "native",
                   precision=None) -> jax.Array:
  """``[B, H, W, in]`` -> ``[B, 2H, 2W, out]``; ``kernel [4, 4, in, out]``."""
  _check_form(form)
  if form == "native":
    return jax.lax.conv_transpose(x, kernel, (2, 2), "SAME",
                                  dimension_numbers=_DIMENSIONS,
                                  precision=precision)
  return _conv_transpose_gemm(x, kernel, precision, form == "gemm_blas")


def _conv_patches(x):
  """``[B, H, W, C]`` -> ``[B, H/2, W/2, 16 C]``: the 16 taps (ky, kx, c) of
  each output of the 4x4 stride-2 'SAME' conv, row-major taps."""
  _, height, width, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.concatenate([padded[:, ky:ky + height:2, kx:kx + width:2, :]
                          for ky in range(4) for kx in range(4)], axis=-1)


def _shifted(x, offset, axis):
  """``x`` moved by ``offset`` in {-1, 0, 1} along ``axis``, zero-filled:
  ``out[i] = x[i + offset]``. The slice and its one-pixel pad fuse into the
  consumer (no padded copy)."""
  if offset == 0:
    return x
  size = x.shape[axis]
  x = jax.lax.slice_in_dim(x, max(offset, 0), size + min(offset, 0),
                           axis=axis)
  pad = [(0, 0)] * x.ndim
  pad[axis] = (max(-offset, 0), max(offset, 0))
  return jnp.pad(x, pad)


def _col2im(patches, channels):
  """``[B, Ho, Wo, 16 C]`` -> ``[B, 2 Ho, 2 Wo, C]``: the transpose of
  ``_conv_patches``, each tap added back onto the pixel it was read from.

  Computed per output phase: pixel ``(2m + p, 2n + q)`` was read by the 2x2
  taps ``ky = 3 - p - 2a``, ``kx = 3 - q - 2b`` of outputs ``(m + p + a - 1,
  n + q + b - 1)``, a and b in {0, 1}; every read is a contiguous channel
  block (far faster on XLA:CPU than the generic transpose of the strided
  gather).
  """
  batch, height, width, _ = patches.shape

  def tap(p, q, a, b):
    block = (3 - p - 2 * a) * 4 + (3 - q - 2 * b)
    x = patches[..., block * channels:(block + 1) * channels]
    return _shifted(_shifted(x, p + a - 1, 1), q + b - 1, 2)

  rows = []
  for p in range(2):
    phases = [tap(p, q, 0, 0) + tap(p, q, 0, 1) + tap(p, q, 1, 0)
              + tap(p, q, 1, 1) for q in range(2)]
    rows.append(jnp.stack(phases, axis=3))  # [B, Ho, Wo, 2(q), C]
  y = jnp.stack(rows, axis=2)  # [B, Ho, 2(p), Wo, 2(q), C]
  return y.reshape(batch, 2 * height, 2 * width, channels)


def _product(a, matrix, precision, use_blas: bool, transpose_matrix=False):
  """``a [..., K] @ op(matrix)`` -> ``[..., N]``, ``op(matrix) [K, N]``:
  ``blas.product`` where asked, else XLA's product."""
  if use_blas:
    flat = blas.product(a.reshape(-1, a.shape[-1]), matrix, False,
                        transpose_matrix, precision)
    return flat.reshape(a.shape[:-1] + flat.shape[-1:])
  return jnp.dot(a, matrix.T if transpose_matrix else matrix,
                 precision=precision)


def _gram(a, b, precision, use_blas: bool):
  """``a [..., m]``, ``b [..., n]`` -> ``a^T b [m, n]`` over all leading axes.

  XLA:CPU's matrix product takes its left operand row-major, so one operand
  is copied transposed: the product is oriented so that it is the smaller.
  BLAS reads the transposed operand in place.
  """
  a = a.reshape(-1, a.shape[-1])
  b = b.reshape(-1, b.shape[-1]).astype(a.dtype)
  if use_blas and a.dtype == jnp.float32:
    return blas.product(a, b, True, False, precision)
  if a.size <= b.size:
    return jnp.dot(a.T, b, precision=precision)
  return jnp.dot(b.T, a, precision=precision).T


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_gemm(x, kernel, precision, use_blas):
  return _conv_gemm_fwd(x, kernel, precision, use_blas)[0]


def _conv_gemm_fwd(x, kernel, precision, use_blas):
  patches = _conv_patches(x)
  y = _product(patches, kernel.reshape(-1, kernel.shape[-1]), precision,
               use_blas)
  return y, (patches, kernel)


def _conv_gemm_bwd(precision, use_blas, residuals, dy):
  patches, kernel = residuals
  in_channels, out = kernel.shape[2], kernel.shape[3]
  dkernel = _gram(patches, dy, precision, use_blas).reshape(kernel.shape)
  dpatches = _product(dy, kernel.reshape(16 * in_channels, out).astype(
      dy.dtype), precision, use_blas, transpose_matrix=True)
  dx = _col2im(dpatches, in_channels)
  return dx.astype(patches.dtype), dkernel.astype(kernel.dtype)


_conv_gemm.defvjp(_conv_gemm_fwd, _conv_gemm_bwd)


def _transpose_kernel_matrix(kernel):
  """``[4, 4, in, out]`` -> ``[in, (tap, out)]`` of the spatially flipped
  kernel, taps row-major: ``nn.ConvTranspose`` adds ``x[r] kernel[ky]``
  onto output ``2r + 2 - ky``, which is where ``_col2im`` puts tap
  ``3 - ky``."""
  in_channels, out = kernel.shape[2], kernel.shape[3]
  return kernel[::-1, ::-1].transpose(2, 0, 1, 3).reshape(in_channels,
                                                          16 * out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_transpose_gemm(x, kernel, precision, use_blas):
  products = _product(x, _transpose_kernel_matrix(kernel), precision,
                      use_blas)
  return _col2im(products, kernel.shape[-1])


def _conv_transpose_gemm_fwd(x, kernel, precision, use_blas):
  return _conv_transpose_gemm(x, kernel, precision, use_blas), (x, kernel)


def _conv_transpose_gemm_bwd(precision, use_blas, residuals, dy):
  x, kernel = residuals
  in_channels, out = kernel.shape[2], kernel.shape[3]
  dproducts = _conv_patches(dy)  # [B, H, W, (tap, out)]
  matrix = _transpose_kernel_matrix(kernel)
  dx = _product(dproducts, matrix.astype(dproducts.dtype), precision,
                use_blas, transpose_matrix=True)
  dmatrix = _gram(x, dproducts, precision, use_blas).reshape(in_channels, 4,
                                                              4, out)
  dkernel = dmatrix.transpose(1, 2, 0, 3)[::-1, ::-1]
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


_conv_transpose_gemm.defvjp(_conv_transpose_gemm_fwd,
                            _conv_transpose_gemm_bwd)
