"""Input pipelines: a decoded split (``vlae_jax.datasets``) -> NumPy batches.

The training stream is a pure function of ``(seed, step)``: element
``g = step * batch + i`` of the stream is image
``index_shuffle(g mod N; key = (seed, g div N, 0))``, TensorFlow's
``random_index_shuffle`` permutation (a Simon block cipher with cycle walking,
4 rounds) computed in NumPy and bitwise equal to
``tf.raw_ops.RandomIndexShuffle`` (except for splits of ``2**k + 1`` images,
``k >= 16``, where that op repeats an image), so runs trained by the earlier
tf.data stream see the same batches. A resumed run therefore sees exactly the batches
an uninterrupted run would, with no iterator state to save, and training
needs no TensorFlow (only ``tfds:`` sources do).

Batches are dicts of NumPy arrays: ``{"image": float32 [B, H, W, C] in [0, 1],
"label": int32 [B]}`` (digits, MNIST) or ``{"image": ..., "attributes":
int32 [B, 40] in {0, 1}}`` (CelebA).
"""

from __future__ import annotations

import queue
import threading
from typing import Dict, Iterator, Optional

import numpy as np

from vlae_jax.datasets import DataError, Split

SHUFFLE_ROUNDS = 4  # what the stream has always used; changing it reorders
_MIN_BLOCK_BITS = 16  # TensorFlow's floor on the cipher's block size


def _rotate_left(x: np.ndarray, r: int, bits: int, mask: np.uint64):
  return ((x << np.uint64(r)) | (x >> np.uint64(bits - r))) & mask


def _rotate_right(x: np.ndarray, r: int, bits: int, mask: np.uint64):
  return ((x >> np.uint64(r)) | (x << np.uint64(bits - r))) & mask


def _simon_f(x, bits, mask):
  return (_rotate_left(x, 1, bits, mask) & _rotate_left(x, 8, bits, mask)
          ) ^ _rotate_left(x, 2, bits, mask)


def index_shuffle(index, key, max_index: int,
                  rounds: int = SHUFFLE_ROUNDS) -> np.ndarray:
  """Position of each ``index`` in a random permutation of ``[0, max_index]``.

  Args:
    index: int array [n], values in ``[0, max_index]``.
    key: int array [n, 3] (or [3] for all): the permutation's key; each value
      is taken modulo 2**32, as TensorFlow casts it.
    max_index: the permutation's largest value (>= 0).
    rounds: even, >= 4.

  Returns:
    int64 [n]: for a fixed key a bijection of ``[0, max_index]``, bitwise
    equal to ``tf.raw_ops.RandomIndexShuffle(index, key, max_index,
    rounds)`` wherever that op is one (every ``max_index`` but ``2**k``,
    ``k >= 16``).
  """
  index = np.asarray(index, np.int64).astype(np.uint64)
  if max_index == 0:
    return np.zeros(index.shape, np.int64)
  if rounds < 4 or rounds % 2:
    raise ValueError(f"rounds={rounds}: must be even and at least 4.")
  key = np.broadcast_to(np.asarray(key, np.int64), index.shape + (3,))
  key = (key & 0xFFFFFFFF).astype(np.uint64)
  # The block holds max_index's bits, rounded up to even, at least 16.
  # TensorFlow takes ceil(log2(max_index)) bits, the same number except at
  # max_index = 2**k (k >= 16), where its block is one bit short and the map
  # is no permutation (an image repeated, another never drawn, each epoch).
  block = int(max_index).bit_length()
  block = max(block + block % 2, _MIN_BLOCK_BITS)
  bits = block // 2
  mask = np.uint64((1 << bits) - 1)
  constant = np.uint64(0xFFFFFFFC & ((1 << bits) - 1))
  z = 0x7369F885192C0EF5 & ((1 << bits) - 1)
  round_keys = [key[:, 0] & mask, key[:, 1] & mask, key[:, 2] & mask]
  for i in range(3, rounds):
    previous = round_keys[i - 1]
    round_keys.append(constant ^ np.uint64(z & 1) ^ round_keys[i - 3]
                      ^ _rotate_right(previous, 3, bits, mask)
                      ^ _rotate_right(previous, 4, bits, mask))
    z >>= 1

  def encrypt(value, rows):
    left = (value >> np.uint64(bits)) & mask
    right = value & mask
    for i in range(0, rounds, 2):
      left = left ^ _simon_f(right, bits, mask) ^ round_keys[i][rows]
      right = right ^ _simon_f(left, bits, mask) ^ round_keys[i + 1][rows]
    return (left << np.uint64(bits)) | right

  # Cycle walking: re-encrypt the values that fall outside [0, max_index].
  result = encrypt(index, np.arange(index.shape[0]))
  outside = np.nonzero(result > np.uint64(max_index))[0]
  while outside.size:
    result[outside] = encrypt(result[outside], outside)
    outside = outside[result[outside] > np.uint64(max_index)]
  return result.astype(np.int64)


def batch_indices(step: int, batch_size: int, num_images: int, seed: int,
                  shard_index: int = 0, num_shards: int = 1,
                  epoch_order=None) -> np.ndarray:
  """Rows of the split in batch ``step`` of the stream, int64 [local batch].

  Element ``g = step * batch_size + i`` is image ``index_shuffle(g mod N;
  (seed, g div N, 0))``: epoch ``e`` is one permutation of the split, and
  batches run across epoch boundaries. ``epoch_order(e)``, if given, returns
  epoch ``e``'s whole permutation (the stream caches it: one cipher pass per
  epoch instead of one per batch; the rows are the same).
  """
  local = batch_size // num_shards
  position = (np.int64(step) * batch_size + shard_index * local
              + np.arange(local, dtype=np.int64))
  epoch = position // num_images
  within = position % num_images
  if epoch_order is not None:
    rows = np.empty(local, np.int64)
    for e in np.unique(epoch):
      rows[epoch == e] = epoch_order(int(e))[within[epoch == e]]
    return rows
  key = np.stack([np.full(local, seed, np.int64), epoch,
                  np.zeros(local, np.int64)], axis=1)
  return index_shuffle(within, key, num_images - 1)


def _epoch_orders(num_images: int, seed: int, keep: int = 2):
  """``order(e)``: epoch ``e``'s permutation, the last ``keep`` cached."""
  cache: Dict[int, np.ndarray] = {}

  def order(epoch: int) -> np.ndarray:
    if epoch not in cache:
      if len(cache) >= keep:
        cache.pop(min(cache))
      cache[epoch] = index_shuffle(np.arange(num_images, dtype=np.int64),
                                   [seed, epoch, 0], num_images - 1)
    return cache[epoch]

  return order


def train_stream(data: Split, batch_size: int, seed: int,
                 start_step: int = 0, shard_index: int = 0,
                 num_shards: int = 1, prefetch: int = 4
                 ) -> Iterator[Dict[str, np.ndarray]]:
  """Infinite shuffled batches, a pure function of ``(seed, step)``.

  Epoch ``e`` is the permutation ``index_shuffle(.; key=(seed, e, 0))`` of
  the split; batches run across epoch boundaries. Starting at ``start_step``
  gives exactly the batches an uninterrupted stream gives from that step on.
  ``batch_size`` is the global batch; with ``num_shards`` processes, shard
  ``shard_index`` yields its ``batch_size // num_shards`` consecutive rows.
  A background thread keeps ``prefetch`` batches ready, so the train step
  does not wait on the host. The stream has a ``close()``.
  """
  if len(data) < 1:
    raise DataError("the training split is empty.")
  num_images = len(data)
  images = data.images  # indexed per batch: a memory map stays one
  labels = np.asarray(data.labels).astype(np.int32)
  order = _epoch_orders(num_images, seed)

  def make_batch(step: int) -> Dict[str, np.ndarray]:
    index = batch_indices(step, batch_size, num_images, seed, shard_index,
                          num_shards, epoch_order=order)
    return {"image": images[index].astype(np.float32) / np.float32(255.0),
            data.label_key: labels[index]}

  return _Prefetched(make_batch, start_step, prefetch)


class _Prefetched:
  """``make_batch(step)`` for step = start, start + 1, ... from a daemon
  thread, ``size`` ahead; an error in the thread is raised by ``next``.

  The thread holds the queue and the stop flag, never this object, so a
  stream that is dropped (or ``close``d) stops its thread.
  """

  def __init__(self, make_batch, start: int, size: int):
    self._queue: "queue.Queue" = queue.Queue(maxsize=max(size, 1))
    self._stop = threading.Event()
    self._thread = threading.Thread(
        target=_fill, args=(self._queue, self._stop, make_batch, start),
        daemon=True, name="vlae_jax-train-stream")
    self._thread.start()

  def __iter__(self):
    return self

  def __next__(self) -> Dict[str, np.ndarray]:
    batch, error = self._queue.get()
    if error is not None:
      raise error
    return batch

  def close(self):
    """Stops the thread; the stream yields nothing after this."""
    self._stop.set()

  def __del__(self):
    self._stop.set()


def _fill(batches: "queue.Queue", stop: threading.Event, make_batch,
          step: int):
  while not stop.is_set():
    try:
      item = (make_batch(step), None)
    except BaseException as e:  # pylint: disable=broad-except
      item = (None, e)
    while not stop.is_set():
      try:
        batches.put(item, timeout=0.1)
        break
      except queue.Full:
        continue
    if item[1] is not None:
      return
    step += 1


def eval_batches(data: Split, batch_size: int,
                 max_batches: Optional[int] = None):
  """The split in order as ``(batch, num_valid)``; the last batch is padded.

  Padding keeps one compiled shape; ``num_valid`` says how many rows are real.
  """
  total = len(data)
  num = -(-total // batch_size)
  if max_batches is not None and max_batches > 0:
    num = min(num, max_batches)
  for b in range(num):
    rows = np.arange(b * batch_size, (b + 1) * batch_size)
    valid = int(np.sum(rows < total))
    batch = data.batch(np.minimum(rows, total - 1))
    yield batch, valid
