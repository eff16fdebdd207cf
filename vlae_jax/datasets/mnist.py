"""``mnist``: ``config.data_dir`` holding the four IDX .gz files, else
TFDS's ``mnist`` builder (downloads on first use)."""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from vlae_jax.datasets import tfds_source
from vlae_jax.datasets.base import DataError, Source, Split

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASS_NAMES = [str(i) for i in range(10)]


def _read_idx(path: str) -> np.ndarray:
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError, zlib.error) as e:  # zlib: a corrupt deflate stream
    raise DataError(f"cannot read IDX file {path}: {e}; re-download it.") from e
  if len(data) < 4 or data[:2] != b"\x00\x00":
    raise DataError(f"{path} is not an IDX file (bad magic number).")
  dtype_code, ndim = data[2], data[3]
  if dtype_code != 0x08:
    raise DataError(f"{path}: expected unsigned-byte IDX data, got type "
                    f"0x{dtype_code:02x}.")
  if len(data) < 4 + 4 * ndim:
    raise DataError(f"{path} is truncated inside its header ({len(data)} "
                    f"bytes); re-download it.")
  dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
  payload = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if payload.size != int(np.prod(dims)):
    raise DataError(f"{path} is truncated: header says {dims}, found "
                    f"{payload.size} values; re-download it.")
  return payload.reshape(dims)


def read_mnist_idx(data_dir: str, split: str) -> Split:
  image_file, label_file = FILES[split]
  for name in (image_file, label_file):
    if not os.path.exists(os.path.join(data_dir, name)):
      raise DataError(
          f"MNIST file {os.path.join(data_dir, name)} is missing; data_dir "
          f"must hold {sorted(sum(FILES.values(), ()))}.")
  images = _read_idx(os.path.join(data_dir, image_file))[..., None]
  labels = _read_idx(os.path.join(data_dir, label_file)).astype(np.int32)
  if len(images) != len(labels):
    raise DataError(f"MNIST {split}: {len(images)} images but {len(labels)} "
                    "labels; re-download the files.")
  return Split(images, labels, "label", CLASS_NAMES)


def read_tfds_mnist(config, split: str) -> Split:
  """TFDS's ``mnist`` (downloaded and prepared on first use)."""
  tfds = tfds_source.import_tfds("mnist")
  builder = tfds_source.prepare_tfds(config, "mnist")
  images, labels = [], []
  for batch in tfds.as_numpy(builder.as_dataset(split=split).batch(10000)):
    images.append(batch["image"])
    labels.append(batch["label"])
  return Split(np.concatenate(images).astype(np.uint8),
               np.concatenate(labels).astype(np.int32), "label", CLASS_NAMES)


class Mnist(Source):
  name = "mnist"
  domain = "digits"
  channels = 1

  def image_shape(self, config):
    return (28, 28, 1)

  def read(self, config, split):
    if config.get("data_dir"):
      return read_mnist_idx(config.data_dir, split)
    return read_tfds_mnist(config, split)


SOURCE = Mnist()
