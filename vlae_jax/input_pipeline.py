"""Input pipelines: a decoded split (``vlae_jax.datasets``) -> tf.data batches.

The training stream is a pure function of ``(seed, step)``: element
``g = step * batch + i`` of the stream is image
``index_shuffle(g mod N; seed, epoch = g div N)``. A resumed run therefore sees
exactly the batches an uninterrupted run would, with no iterator state to save.

Batches are dicts of NumPy arrays: ``{"image": float32 [B, H, W, C] in [0, 1],
"label": int32 [B]}`` (digits, MNIST) or ``{"image": ..., "attributes":
int32 [B, 40] in {0, 1}}`` (CelebA).
"""

from __future__ import annotations

from typing import Dict, Iterator, Optional

import numpy as np

from vlae_jax import runtime
from vlae_jax.datasets import DataError, Split


def train_stream(data: Split, batch_size: int, seed: int,
                 start_step: int = 0, shard_index: int = 0,
                 num_shards: int = 1) -> Iterator[Dict[str, np.ndarray]]:
  """Infinite shuffled batches, a pure function of ``(seed, step)``.

  Epoch ``e`` is the permutation ``index_shuffle(.; seed=(seed, e))`` of the
  split; batches run across epoch boundaries. Starting at ``start_step`` gives
  exactly the batches an uninterrupted stream gives from that step on.
  ``batch_size`` is the global batch; with ``num_shards`` processes, shard
  ``shard_index`` yields its ``batch_size // num_shards`` consecutive rows.
  """
  tf = runtime.import_tensorflow()
  if len(data) < 1:
    raise DataError("the training split is empty.")
  images = tf.constant(np.asarray(data.images))
  labels = tf.constant(np.asarray(data.labels).astype(np.int32))
  num_images = len(data)
  local = batch_size // num_shards
  offsets = shard_index * local + tf.range(local, dtype=tf.int64)

  def make_batch(step):
    position = step * batch_size + offsets
    epoch = position // num_images
    seeds = tf.stack([tf.fill([local], tf.cast(seed, tf.int64)), epoch,
                      tf.zeros([local], tf.int64)], axis=1)
    # The raw op: the public wrapper mis-pads a batch of [n, 3] seeds.
    index = tf.raw_ops.RandomIndexShuffle(
        index=position % num_images, seed=seeds,
        max_index=tf.constant(num_images - 1, tf.int64), rounds=4)
    return {"image": tf.cast(tf.gather(images, index), tf.float32) / 255.0,
            data.label_key: tf.gather(labels, index)}

  ds = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)
  ds = ds.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return ds.as_numpy_iterator()


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
