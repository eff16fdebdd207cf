"""Batched inference with a trained model: the one chunked path that the
figure modes, ``evaluate`` and the training-time image grids share.

Arrays are processed in chunks of ``batch_size`` rows. The last chunk is
padded to the full size, so one compiled program serves a whole split (a
ragged chunk would compile a second one), and the padding rows are dropped.
Batch norm runs on its running averages here, so rows never influence each
other. Images are ``[n, H, W, C]`` in [0, 1]; codes are lists over rungs
(bottom first) of ``[n, latent_dims[l]]``.
"""

from __future__ import annotations

import functools
from typing import Callable, Dict, List, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from vlae_jax import objective

BATCH_SIZE = 256


def variables_of(state) -> Dict:
  """The ``model.apply`` variables of a ``TrainState``."""
  return objective.model_variables(state.params, state.batch_stats)


def chunked(fn: Callable, arrays: Sequence, batch_size: int = BATCH_SIZE):
  """``fn(*chunks)`` over row chunks of ``arrays`` (each ``[n, ...]``),
  concatenated on the host: a pytree of numpy arrays ``[n, ...]``.

  Every call of ``fn`` sees exactly ``min(batch_size, n)`` rows (the last
  chunk is zero-padded, its extra rows dropped from the result).
  """
  count = len(arrays[0])
  size = min(batch_size, count)
  outputs = []
  for start in range(0, count, size):
    chunk = [np.asarray(a[start:start + size]) for a in arrays]
    valid = len(chunk[0])
    if valid < size:
      chunk = [np.concatenate([c, np.zeros((size - valid,) + c.shape[1:],
                                           c.dtype)]) for c in chunk]
    out = jax.device_get(fn(*[jnp.asarray(c) for c in chunk]))
    outputs.append(jax.tree_util.tree_map(lambda x: x[:valid], out))
  return jax.tree_util.tree_map(lambda *parts: np.concatenate(parts),
                                *outputs)


# Flax modules hash by their fields, so these compile once per model shape.
@functools.partial(jax.jit, static_argnums=0)
def _encode(model, variables, images):
  means, stds, _ = model.apply(variables, images, train=False, sample=False,
                               method=model.encode)
  return means, stds


@functools.partial(jax.jit, static_argnums=0)
def _decode_logits(model, variables, codes):
  return model.apply(variables, codes, train=False, method=model.decode)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _reconstruction_errors(model, variables, images, kind):
  means, _, _ = model.apply(variables, images, train=False, sample=False,
                            method=model.encode)
  logits = model.apply(variables, means, train=False, method=model.decode)
  return (objective.reconstruction_loss(kind, logits, images),
          objective.reconstruction_loss("l1", logits, images))


def encode(model, variables, images, batch_size: int = BATCH_SIZE
           ) -> Tuple[List[np.ndarray], List[np.ndarray]]:
  """Posterior ``(means, stds)``, each a list over rungs of ``[n, dim]``."""
  means, stds = chunked(
      lambda x: _encode(model, variables, x.astype(jnp.float32)), [images],
      batch_size)
  return list(means), list(stds)


def encode_means(model, variables, images, batch_size: int = BATCH_SIZE
                 ) -> List[np.ndarray]:
  """Per rung posterior means ``[n, dim]`` of images ``[n, H, W, C]``."""
  return encode(model, variables, images, batch_size)[0]


def sample_codes(model, variables, images, key,
                 batch_size: int = BATCH_SIZE) -> List[np.ndarray]:
  """Per rung posterior samples ``mean + std * eps``, ``eps`` drawn from
  ``fold_in(key, rung)`` for the whole ``[n, dim]`` at once."""
  means, stds = encode(model, variables, images, batch_size)
  return [m + s * np.asarray(jax.random.normal(jax.random.fold_in(key, l),
                                               m.shape, m.dtype))
          for l, (m, s) in enumerate(zip(means, stds))]


def decode_images(model, variables, codes: Sequence,
                  batch_size: int = BATCH_SIZE) -> np.ndarray:
  """Images ``[n, H, W, C]`` in [0, 1] from per-rung codes ``[n, dim]``."""
  return chunked(
      lambda *c: jax.nn.sigmoid(_decode_logits(model, variables, list(c))),
      list(codes), batch_size)


def reconstruct(model, variables, images) -> np.ndarray:
  """Decoded posterior means of ``images [n, H, W, C]``: ``[n, H, W, C]``."""
  return decode_images(model, variables, encode_means(model, variables, images))


def reconstruction_errors(model, variables, images, kind: str,
                          batch_size: int = BATCH_SIZE
                          ) -> Tuple[np.ndarray, np.ndarray]:
  """Per image ``[n]``: the ``kind`` reconstruction error (``objective``) and
  the L1 error of the decoded posterior means."""
  return chunked(
      lambda x: _reconstruction_errors(model, variables,
                                       x.astype(jnp.float32), kind),
      [images], batch_size)


def prior_codes(model, key, count: int) -> List[jax.Array]:
  """Per rung ``[count, dim]`` draws from N(0, I), one key per rung."""
  return [jax.random.normal(jax.random.fold_in(key, l), (count, d))
          for l, d in enumerate(model.latent_dims)]


def arithmetic_codes(z_a: Sequence, z_b: Sequence, z_c: Sequence,
                     rungs: Sequence[int]) -> List[np.ndarray]:
  """Latent arithmetic restricted to ``rungs`` (paper Fig. 4), the one
  definition the ``arithmetic`` figure and ``evaluate``'s arithmetic score
  both use: per rung ``z_c + (z_a - z_b)`` in ``rungs`` and ``z_c``
  elsewhere. ``c`` is the face being edited (a has the attribute, b lacks
  it), so the rungs left out keep what ``c`` is; with every rung it is the
  paper's ``z_a - z_b + z_c``. Each argument is per rung ``[n, d_l]``."""
  return [np.asarray(c) + (np.asarray(a) - np.asarray(b)) if l in rungs
          else np.asarray(c) for l, (a, b, c) in enumerate(zip(z_a, z_b, z_c))]
