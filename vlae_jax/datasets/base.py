"""What every data source shares: the split in memory, the one error type,
and the interface a source implements (``Source``)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

NO_LABELS = "none"  # Split.label_key of a data set without labels
SPLITS = ("train", "validation", "test")
DOMAINS = ("digits", "faces", "images")


class DataError(ValueError):
  """A data source that cannot be read; the message names the file and fix."""


class RowView:
  """Rows ``rows`` of an image array, read when indexed: a split held out of
  the train split (``config.validation_size``) without copying the train
  images out of the cache's memory map. Indexing (an int, slice or index
  array) returns an ndarray; ``np.asarray`` reads every row."""

  def __init__(self, array, rows: np.ndarray):
    self.array, self._rows = array, np.asarray(rows)
    self.shape = (len(self._rows),) + tuple(array.shape[1:])
    self.dtype = array.dtype
    self.ndim = len(self.shape)

  def __len__(self):
    return len(self._rows)

  def __getitem__(self, index):
    return np.asarray(self.array[self._rows[index]])

  def __array__(self, dtype=None, copy=None):
    rows = np.asarray(self.array[self._rows])
    return rows if dtype is None else rows.astype(dtype)


@dataclasses.dataclass
class Split:
  """One split: uint8 images ``[N, H, W, C]`` (an ndarray, the cache's
  memory map, or a ``RowView`` of one) and int labels."""

  images: np.ndarray
  # [N] class index ("label"; zeros for "none") or [N, num_attributes] in
  # {0, 1} ("attributes").
  labels: np.ndarray
  label_key: str  # "label", "attributes" or "none" (NO_LABELS)
  label_names: List[str]

  def __len__(self):
    return len(self.images)

  def batch(self, indices) -> Dict[str, np.ndarray]:
    """The batch dict of the given rows (images scaled to [0, 1])."""
    return {"image": self.images[indices].astype(np.float32) / 255.0,
            self.label_key: self.labels[indices].astype(np.int32)}


def display_name(name: str) -> str:
  """A file name as it can be printed: bytes that are not UTF-8 (a
  Windows archive unzipped here) shown as U+FFFD instead of crashing the
  print."""
  return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def stat_line(name: str, path: str) -> bytes:
  """One file's line of a fingerprint: name, size, modification time (ns)."""
  info = os.stat(path)
  # surrogateescape: a name that is not UTF-8 is hashed as its own bytes.
  return f"{name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode(
      "utf-8", "surrogateescape")


def folder_fingerprint(folders) -> str:
  """A digest of the names, sizes and modification times of the files
  directly in each of ``folders`` (a missing folder adds nothing: its
  reader reports it)."""
  digest = hashlib.sha256()
  for folder in folders:
    try:
      entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
      continue
    for entry in entries:
      if entry.is_file():
        digest.update(stat_line(entry.name, entry.path))
  return digest.hexdigest()


def tfds_fingerprint(config, suffix: str = "") -> str:
  """The TFDS route is keyed by its data_dir (TFDS versions its own files)."""
  return "tfds:" + os.path.abspath(config.get("tfds_data_dir") or
                                   "~default") + suffix


class Source:
  """One data source, registered by name (``datasets.registry``).

  A source says what its images are (``image_shape``), reads one split
  uncached (``read``: the cache, the validation hold-out and the errors
  about the data folder's existence are the loader's), and fingerprints
  the files it reads so the decode cache never serves stale images.

  Attributes:
    name: the ``--config.dataset`` value it answers to.
    domain: "digits" (the paper's MNIST factors and claims), "faces" (its
      CelebA ones) or "images" (pixel factors, no paper claims); the
      evaluation package reads factors and claims by it.
    channels: the fixed channel count, or None where ``config.channels``
      (1 or 3; 0 -> 3) chooses.
    official_validation: the source publishes its own validation split
      (else ``config.validation_size`` holds images of train out).
    cached: decoded splits are kept in the decode cache.
    needs_data_dir: it cannot read without ``config.data_dir``.
  """

  name: str = ""
  domain: str = "images"
  channels: Optional[int] = None
  official_validation: bool = False
  cached: bool = True
  needs_data_dir: bool = False

  def matches(self, dataset: str) -> bool:
    """Whether ``dataset`` (the config's value) names this source."""
    return dataset == self.name

  def display(self) -> str:
    """How the name is listed in messages."""
    return self.name

  def num_channels(self, config) -> int:
    return self.channels or int(config.get("channels", 0) or 3)

  def image_shape(self, config) -> Tuple[int, int, int]:
    """``(H, W, C)`` of the decoded images, without reading any."""
    return (config.image_size, config.image_size, self.num_channels(config))

  def read(self, config, split: str) -> Split:
    """One split ("train" or "test", and "validation" where
    ``official_validation``), uncached."""
    raise NotImplementedError

  def local_folder(self, config) -> Optional[str]:
    """The local folder the images come from (``config.data_dir``), or None
    for bundled or downloaded (TFDS) data: a run records and checks the
    fingerprint of a local folder only."""
    return config.get("data_dir") or None

  def fingerprint(self, config) -> str:
    """A digest of the files a split is read from."""
    if not self.local_folder(config):
      return tfds_fingerprint(config)
    return folder_fingerprint([config.data_dir])

  def config_problem(self, config) -> Optional[str]:
    """The one-line complaint about a config this source cannot read, or
    None; checked before any work."""
    if self.channels is not None:
      value = config.get("channels", 0)
      if value not in (0, self.channels):
        return (f"--config.channels={value!r} applies to folder and "
                f"tfds:NAME data sets; {self.name} has {self.channels} "
                "(leave it 0).")
    elif config.get("channels", 0) not in (0, 1, 3):
      return (f"--config.channels must be 1 (grayscale) or 3 (RGB), got "
              f"{config.get('channels')!r}.")
    if self.needs_data_dir and not config.get("data_dir"):
      return (f"--config.dataset={self.name} needs --config.data_dir=DIR, "
              "a folder of its images.")
    return None
