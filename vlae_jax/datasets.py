"""Data sets: TFDS or local official layouts -> decoded, cached uint8 arrays.

Every data set is decoded and resized once into uint8 arrays
``[num_images, H, W, C]`` kept in a cache folder (``config.cache_dir``), keyed
by a fingerprint of the source files, so JPEGs are never decoded twice.
``vlae_jax.input_pipeline`` turns a split into batches.

Sources:
- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 real
  images, no download); the last 297 form the test split.
- ``mnist``: ``config.data_dir`` holding the four IDX .gz files, else TFDS's
  ``mnist`` builder.
- ``celeba``: ``config.data_dir`` in the official Align&Cropped layout, else
  TFDS's ``celeb_a``; a centred square of 108/178 of each image's width,
  resized to ``config.image_size``.
- ``folder``: every JPEG / PNG under ``config.data_dir`` (recursively), the
  centred square of its shorter side resized to ``config.image_size``, with
  ``config.channels`` (1 or 3); split by ``train/`` and ``test/`` subfolders
  where both exist, else by a hash of each file's path
  (``config.test_fraction``); labels from an optional CSV
  (``config.labels_file``, default ``labels.csv`` in the folder).
- ``tfds:NAME``: TFDS's builder ``NAME`` (its ``image`` feature, and
  ``label`` where it has one), cropped and resized like a folder.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gzip
import hashlib
import json
import os
import struct
import time
import zlib
from typing import Dict, List, Optional, Tuple

import numpy as np
from absl import logging

from vlae_jax import runtime

DATASETS = ("digits", "mnist", "celeba", "folder", "tfds:NAME")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_LABELS_FILE = "labels.csv"
NO_LABELS = "none"  # Split.label_key of a data set without labels
CELEBA_CROP_FRACTION = 108.0 / 178.0
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CELEBA_SPLITS = {"train": 0, "validation": 1, "test": 2}
DIGITS_TEST_SIZE = 297


class DataError(ValueError):
  """A data source that cannot be read; the message names the file and fix."""


@dataclasses.dataclass
class Split:
  """One split in memory: uint8 images ``[N, H, W, C]`` and int labels."""

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


def is_tfds_name(dataset: str) -> bool:
  """Whether ``dataset`` names a TFDS builder (``tfds:NAME``)."""
  return isinstance(dataset, str) and dataset.startswith("tfds:")


def is_known(dataset: str) -> bool:
  return dataset in DATASETS[:-1] or (is_tfds_name(dataset) and
                                      len(dataset) > len("tfds:"))


def kind(dataset: str) -> str:
  """"digits" (digits, mnist: the paper's MNIST claims), "faces" (celeba:
  its CelebA claims) or "images" (a folder or TFDS set: no paper claims)."""
  if dataset in ("digits", "mnist"):
    return "digits"
  return "faces" if dataset == "celeba" else "images"


def channels(config) -> int:
  """Channels of a folder / TFDS data set: ``config.channels``, 0 -> 3."""
  return int(config.get("channels", 0) or 3)


def test_fraction(config) -> float:
  return float(config.get("test_fraction", 0.0) or DEFAULT_TEST_FRACTION)


def image_shape(config) -> Tuple[int, int, int]:
  """``(H, W, C)`` of the configured data set, without loading it."""
  if config.dataset == "digits":
    return (8, 8, 1)
  if config.dataset == "mnist":
    return (28, 28, 1)
  if config.dataset == "celeba":
    return (config.image_size, config.image_size, 3)
  if is_known(config.dataset):
    return (config.image_size, config.image_size, channels(config))
  raise ValueError(
      f"unknown dataset {config.dataset!r}; set --config.dataset to one of "
      f"{list(DATASETS)}.")


# ----------------------------------------------------------------------------
# Readers (each returns uint8 images and labels for one split).


def read_digits(split: str) -> Split:
  from sklearn.datasets import load_digits
  digits = load_digits()
  # Values are counts 0..16; scale to the 0..255 of every other source.
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  cut = len(images) - DIGITS_TEST_SIZE
  rows = slice(0, cut) if split == "train" else slice(cut, None)
  return Split(images[rows], labels[rows], "label",
               [str(i) for i in range(10)])


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
  image_file, label_file = MNIST_FILES[split]
  for name in (image_file, label_file):
    if not os.path.exists(os.path.join(data_dir, name)):
      raise DataError(
          f"MNIST file {os.path.join(data_dir, name)} is missing; data_dir "
          f"must hold {sorted(sum(MNIST_FILES.values(), ()))}.")
  images = _read_idx(os.path.join(data_dir, image_file))[..., None]
  labels = _read_idx(os.path.join(data_dir, label_file)).astype(np.int32)
  if len(images) != len(labels):
    raise DataError(f"MNIST {split}: {len(images)} images but {len(labels)} "
                    "labels; re-download the files.")
  return Split(images, labels, "label", [str(i) for i in range(10)])


def celeba_crop_and_resize(image, size: int) -> np.ndarray:
  """Centred square of 108/178 of the width, resized: uint8 ``[size, size, 3]``.

  ``image`` is a PIL image or a uint8 array of any size (the crop is relative
  to the image's own width, so half-scale copies give the same framing).
  """
  from PIL import Image
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  image = image.convert("RGB")  # grayscale, RGBA, CMYK -> RGB
  width, height = image.size
  crop = max(1, int(round(width * CELEBA_CROP_FRACTION)))
  left = (width - crop) // 2
  top = (height - crop) // 2
  image = image.crop((left, top, left + crop, top + crop))
  return np.asarray(image.resize((size, size), Image.BILINEAR), np.uint8)


def _read_celeba_table(path: str, expected_columns: Optional[int],
                       skip_header_lines: int):
  if not os.path.exists(path):
    raise DataError(f"CelebA file {path} is missing; data_dir must be in the "
                    "official Align&Cropped layout.")
  with open(path) as f:
    lines = f.read().splitlines()
  header, rows = lines[:skip_header_lines], {}
  for number, line in enumerate(lines[skip_header_lines:],
                                start=skip_header_lines + 1):
    fields = line.split()
    if not fields:
      continue
    if expected_columns is not None and len(fields) != expected_columns:
      raise DataError(
          f"{path}:{number} has {len(fields)} columns, expected "
          f"{expected_columns}; the file is malformed, re-download it.")
    rows[fields[0]] = fields[1:]
  return header, rows


def celeba_index(data_dir: str, split: str):
  """Rows of one official split whose image exists in ``data_dir``.

  Returns ``(file_names, attributes uint8 [N, 40] in {0, 1}, attribute_names)``
  without decoding any image.
  """
  image_dir = os.path.join(data_dir, "img_align_celeba")
  if not os.path.isdir(image_dir):
    raise DataError(f"CelebA image folder {image_dir} is missing; data_dir "
                    "must hold img_align_celeba/, list_attr_celeba.txt and "
                    "list_eval_partition.txt.")
  present = {n for n in os.listdir(image_dir) if n.lower().endswith(".jpg")}
  if not present:
    raise DataError(f"CelebA image folder {image_dir} holds no .jpg files.")
  _, partition = _read_celeba_table(
      os.path.join(data_dir, "list_eval_partition.txt"), 2, 0)
  attr_path = os.path.join(data_dir, "list_attr_celeba.txt")
  header, attributes = _read_celeba_table(attr_path, 41, 2)
  names = header[1].split() if len(header) > 1 else []
  if len(names) != 40:
    raise DataError(f"{attr_path}: line 2 should name 40 attributes, found "
                    f"{len(names)}; the file is malformed, re-download it.")
  wanted = sorted(n for n in present
                  if partition.get(n, [None])[0] == str(CELEBA_SPLITS[split]))
  labels = []
  for name in wanted:
    values = attributes.get(name)
    if values is None:
      raise DataError(f"{attr_path} has no row for {name}; the file does not "
                      "match the images, re-download it.")
    if any(v not in ("1", "-1") for v in values):
      raise DataError(f"{attr_path}: row {name} has values other than +-1: "
                      f"{' '.join(values)}.")
    labels.append([v == "1" for v in values])
  return wanted, np.asarray(labels, np.uint8).reshape(-1, 40), names


class Progress:
  """Progress lines for a long loop: count, rate and ETA, at most one line
  every ``interval`` seconds, and a closing line with the total time."""

  def __init__(self, total: int, what: str, interval: float = 5.0):
    self.total, self.what, self.interval = total, what, interval
    self.done = 0
    self.start = self._last = time.perf_counter()

  def update(self, count: int):
    runtime.raise_if_interrupted()  # Ctrl-C during a long first decode
    self.done += count
    now = time.perf_counter()
    if now - self._last >= self.interval and self.done < self.total:
      self._last = now
      rate = self.done / max(now - self.start, 1e-9)
      eta = (self.total - self.done) / max(rate, 1e-9)
      print(f"{self.what}: {self.done:,}/{self.total:,} "
            f"({self.done / self.total:.0%}), {rate:,.0f} images/s, ETA "
            f"{int(eta) // 60}m{int(eta) % 60:02d}s", flush=True)

  def close(self, note: str = ""):
    seconds = time.perf_counter() - self.start
    if seconds >= self.interval:  # quick jobs stay silent
      print(f"{self.what}: {self.done:,} images in {seconds:.1f} s "
            f"({self.done / max(seconds, 1e-9):,.0f} images/s{note})",
            flush=True)


def default_decode_workers() -> int:
  """Every core this process may use."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def _as_mode(image, channels: int):
  """``image`` as "L" (1) or "RGB" (3); transparent pixels (RGBA, LA,
  palette transparency) are laid over white, not dropped to black."""
  from PIL import Image
  if image.mode in ("RGBA", "LA", "PA") or (
      image.mode == "P" and "transparency" in image.info):
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    image = Image.alpha_composite(white, rgba)
  return image.convert("L" if channels == 1 else "RGB")


def is_colour(image) -> bool:
  """Whether a decoded image's channels differ (a grayscale photo saved as
  RGB, with JPEG's chroma noise of a few levels, is not colour)."""
  if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
    return False
  rgb = np.asarray(image.convert("RGB"), np.int16)
  spread = rgb.max(axis=-1) - rgb.min(axis=-1)
  return float(spread.mean()) > 4.0


def square_crop_and_resize(image, size: int, channels: int = 3
                           ) -> np.ndarray:
  """The centred square of the shorter side, resized: uint8
  ``[size, size, channels]``."""
  from PIL import Image
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image.squeeze(-1) if image.ndim == 3 and
                            image.shape[-1] == 1 else image)
  image = _as_mode(image, channels)
  width, height = image.size
  side = min(width, height)
  left, top = (width - side) // 2, (height - side) // 2
  image = image.crop((left, top, left + side, top + side))
  out = np.asarray(image.resize((size, size), Image.BILINEAR), np.uint8)
  return out.reshape(size, size, channels)


def _decode_chunk(sources, size, crop, channels):
  """Worker: ``[(uint8 [size, size, C] or None, enlarged, colour, error or
  None)]`` for image file paths or encoded bytes."""
  import io
  from PIL import Image
  out = []
  for source in sources:
    try:
      handle = io.BytesIO(source) if isinstance(source, bytes) else source
      with Image.open(handle) as image:
        if crop == "celeba":
          enlarged = image.size[0] * CELEBA_CROP_FRACTION < size
          decoded = celeba_crop_and_resize(image, size)
          colour = True
        else:
          enlarged = min(image.size) < size
          colour = channels == 1 and is_colour(image)
          decoded = square_crop_and_resize(image, size, channels)
        out.append((decoded, enlarged, colour, None))
    except Image.DecompressionBombError as e:
      # Over twice Pillow's pixel limit: decoding could exhaust memory.
      reason = str(e).split(" could be")[0].rstrip(",")
      out.append((None, False, False, f"too large to decode safely: {reason}"))
    except (OSError, ValueError, SyntaxError) as e:
      out.append((None, False, False, f"{type(e).__name__}: {e}"))
  return out


def decode_images(sources, size: int, names, what: str,
                  workers: int = 0, chunk: int = 64,
                  progress_every: float = 5.0, crop: str = "celeba",
                  channels: int = 3):
  """Decodes, crops and resizes images on ``workers`` processes (0: all
  cores).

  Args:
    sources: image file paths or encoded bytes (JPEG, PNG), one per image.
    size: output side in pixels. names: per image, the name messages use.
    what: progress label, e.g. "decoding CelebA train"; a progress line
      (count, images/s, ETA) at most every ``progress_every`` seconds.
    crop: "celeba" (centred square of 108/178 of the width, RGB) or
      "square" (centred square of the shorter side, ``channels`` 1 or 3).

  Returns ``(images uint8 [n_ok, size, size, C], kept indices)``; unreadable
  images are skipped with a warning naming them, and images smaller than
  ``size`` are enlarged with one warning. A colour image where
  ``channels == 1`` is a ``DataError`` naming it. The result does not
  depend on ``workers``.
  """
  workers = workers or default_decode_workers()
  chunks = [sources[i:i + chunk] for i in range(0, len(sources), chunk)]
  progress = Progress(len(sources), what, progress_every)
  results = []
  if workers == 1 or len(chunks) <= 1:
    for part in chunks:
      results += _decode_chunk(part, size, crop, channels)
      progress.update(len(part))
  else:
    import multiprocessing
    # spawn: the parent may already run JAX and TensorFlow threads, which a
    # fork would copy mid-flight.
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"))
    try:
      for part, decoded in zip(chunks, pool.map(
          _decode_chunk, chunks, [size] * len(chunks), [crop] * len(chunks),
          [channels] * len(chunks))):
        results += decoded
        progress.update(len(part))  # a recorded signal raises here
    except BaseException:
      # Ctrl-C, SIGTERM or an error: no worker may outlive us, and the
      # queued chunks are dropped instead of decoded first.
      workers_alive = list((getattr(pool, "_processes", None) or {}).values())
      pool.shutdown(wait=False, cancel_futures=True)
      for process in workers_alive:
        process.terminate()
      for process in workers_alive:
        process.join(5)
      raise
    pool.shutdown()
  progress.close(f", {workers} worker{'s' if workers > 1 else ''}")
  if crop == "square" and channels == 1:
    colour = [name for name, r in zip(names, results) if r[2]]
    if colour:
      raise DataError(
          f"{colour[0]} is a colour image (and {len(colour) - 1} more) but "
          "--config.channels=1; set --config.channels=3 to train on colour, "
          "or convert those images to grayscale.")
  keep = [i for i, r in enumerate(results) if r[0] is not None]
  for name, (image, _, _, error) in zip(names, results):
    if image is None:
      print(f"warning: skipping unreadable image {display_name(name)} "
            f"({display_name(error)})", flush=True)
  enlarged = [name for name, r in zip(names, results) if r[1]]
  if enlarged:
    print(f"warning: {what}: {len(enlarged)} images are smaller than "
          f"{size}x{size} after cropping and were enlarged (e.g. "
          f"{enlarged[0]}); set --config.image_size lower to keep their "
          "detail.", flush=True)
  if not keep:
    return np.zeros((0, size, size, channels), np.uint8), keep
  return np.stack([results[i][0] for i in keep]), keep


def read_celeba_folder(data_dir: str, split: str, size: int,
                       workers: int = 0) -> Split:
  """Decodes one split of an official-layout CelebA folder (see celeba_index)
  on ``workers`` processes (0: every core).

  Unreadable or truncated JPEGs are skipped with a warning naming them.
  """
  wanted, labels, names = celeba_index(data_dir, split)
  image_dir = os.path.join(data_dir, "img_align_celeba")
  paths = [os.path.join(image_dir, name) for name in wanted]
  images, keep = decode_images(paths, size, paths,
                               f"decoding CelebA {split}", workers)
  if len(keep) < len(wanted):
    print(f"warning: CelebA {split}: skipped {len(wanted) - len(keep)} "
          f"unreadable images of {len(wanted)}", flush=True)
  if not keep:
    raise DataError(f"no readable CelebA images for split {split!r} in "
                    f"{image_dir}.")
  return Split(images, labels[keep], "attributes", names)


def celeba_identities(data_dir: str, split: str, count: int
                      ) -> Optional[np.ndarray]:
  """Identity labels ``[count]`` (int) of a local CelebA split, in the order
  of ``celeba_index``, from ``identity_CelebA.txt``; None when the file is
  absent or the split's decoded rows do not match the index (a skipped
  image), so that no identity is ever paired with the wrong face."""
  path = os.path.join(data_dir, "identity_CelebA.txt")
  if not data_dir or not os.path.exists(path):
    return None
  wanted = celeba_index(data_dir, split)[0]
  if len(wanted) != count:
    return None
  identity = {}
  with open(path) as f:
    for line in f:
      fields = line.split()
      if len(fields) == 2 and fields[1].isdigit():
        identity[fields[0]] = int(fields[1])
  if any(name not in identity for name in wanted):
    return None
  return np.asarray([identity[name] for name in wanted], np.int64)


# ----------------------------------------------------------------------------
# Any folder of images.


def display_name(name: str) -> str:
  """A file name as it can be printed: bytes that are not UTF-8 (a
  Windows archive unzipped here) shown as U+FFFD instead of crashing the
  print."""
  return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def folder_images(data_dir: str) -> List[str]:
  """Paths (relative to ``data_dir``, "/"-separated, sorted) of every JPEG /
  PNG under it, hidden files and folders skipped.

  Linked folders and files are followed (a ``test/`` linked to another
  disk counts); a link loop or a dangling link is named once in a warning
  and skipped, never walked forever.
  """
  found, visited, loops, dangling = [], set(), [], []
  for root, folders, files in os.walk(data_dir, followlinks=True):
    real = os.path.realpath(root)
    if real in visited:  # reached again through a link: a loop
      loops.append(os.path.relpath(root, data_dir))
      folders[:] = []
      continue
    visited.add(real)
    folders[:] = sorted(f for f in folders if not f.startswith("."))
    for name in files:
      if not name.startswith(".") and \
          name.lower().endswith(IMAGE_EXTENSIONS):
        path = os.path.join(root, name)
        relative = os.path.relpath(path, data_dir).replace(os.sep, "/")
        if not os.path.exists(path):
          dangling.append(relative)
          continue
        found.append(relative)
  if loops:
    print(f"warning: {display_name(data_dir)}: {len(loops)} linked "
          f"folder{'s' if len(loops) > 1 else ''} lead back to a folder "
          f"already read (e.g. {display_name(loops[0])}); each was read "
          "once.", flush=True)
  if dangling:
    print(f"warning: {display_name(data_dir)}: {len(dangling)} link"
          f"{'s' if len(dangling) > 1 else ''} point to nothing (e.g. "
          f"{display_name(dangling[0])}); skipped.", flush=True)
  return sorted(found)


def has_split_folders(data_dir: str) -> bool:
  return all(os.path.isdir(os.path.join(data_dir, s))
             for s in ("train", "test"))


def in_test_split(relative_path: str, fraction: float) -> bool:
  """The hash split: a file is in the test split when the first 8 bytes of
  the SHA-1 of its relative path, as a fraction of 2^64, fall below
  ``fraction`` (stable across machines, runs and added files)."""
  digest = hashlib.sha1(relative_path.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < fraction


def labels_path(config) -> Optional[str]:
  """The labels CSV of a folder data set: ``config.labels_file`` (relative
  to the folder unless absolute), else ``labels.csv`` in the folder when
  it exists, else None."""
  data_dir = config.get("data_dir") or ""
  name = config.get("labels_file") or ""
  if name:
    return name if os.path.isabs(name) else os.path.join(data_dir, name)
  default = os.path.join(data_dir, DEFAULT_LABELS_FILE)
  return default if os.path.isfile(default) else None


def _label_values(values: List[str], path: str, lines: List[int], column: str
                  ) -> np.ndarray:
  """One CSV column of attributes as {0, 1}: 1/0, 1/-1 or true/false."""
  truth = {"1": 1, "0": 0, "-1": 0, "true": 1, "false": 0}
  out = []
  for value, line in zip(values, lines):
    if value.strip().lower() not in truth:
      raise DataError(
          f"{path}:{line}: {column} is {value!r}; attribute columns hold 1/0, "
          "1/-1 or true/false (a single class column must be named 'label').")
    out.append(truth[value.strip().lower()])
  return np.asarray(out, np.uint8)


def read_labels_csv(path: str, data_dir: str, files: List[str]):
  """Labels of ``files`` (relative paths) from a CSV whose header is
  ``file,label`` (one class per image: any names) or ``file,attr1,...``
  (binary attributes). Returns ``(labels, label_key, label_names)``:
  ``int32 [N]`` with the sorted class names, or ``uint8 [N, A]``."""
  import csv
  if not os.path.isfile(path):
    raise DataError(f"labels file {path} does not exist; point "
                    "--config.labels_file at a CSV, or leave it empty.")
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"cannot read labels file {path}: {e}; save it as a "
                    "UTF-8 CSV.") from e
  numbered = [(n, [c.strip() for c in r]) for n, r in enumerate(rows, 1)
              if any(c.strip() for c in r)]
  if not numbered or len(numbered[0][1]) < 2 or \
      numbered[0][1][0].lower() != "file":
    raise DataError(f"{path}:1 must be a header 'file,label' or "
                    "'file,attribute1,attribute2,...'; got "
                    f"{','.join(numbered[0][1]) if numbered else 'nothing'!r}.")
  header = numbered[0][1]
  known = set(folder_images(data_dir))
  table = {}
  for number, row in numbered[1:]:
    if len(row) != len(header):
      raise DataError(f"{path}:{number} has {len(row)} fields, the header "
                      f"has {len(header)}; fix the row.")
    name = row[0].replace("\\", "/")
    name = name[2:] if name.startswith("./") else name
    if name not in known:
      raise DataError(f"{path}:{number} names {row[0]!r}, which is not an "
                      f"image under {data_dir}; fix the name (a path "
                      "relative to the folder) or remove the row.")
    if name in table:
      raise DataError(f"{path}:{number} names {row[0]!r} a second time "
                      f"(first on line {table[name][0]}); keep one row.")
    table[name] = (number, row[1:])
  missing = [f for f in files if f not in table]
  if missing:
    raise DataError(f"image {missing[0]} (and {len(missing) - 1} more) has no "
                    f"row in {path}; add rows for them, or move them out of "
                    "the folder.")
  lines = [table[f][0] for f in files]
  if header[1:] == ["label"]:
    values = [table[f][1][0] for f in files]
    all_values = sorted({r[0] for _, r in table.values()})
    numeric = all(v.lstrip("-").isdigit() for v in all_values)
    names = sorted(all_values, key=int) if numeric else all_values
    index = {v: i for i, v in enumerate(names)}
    return (np.asarray([index[v] for v in values], np.int32), "label",
            names)
  columns = [
      _label_values([table[f][1][a] for f in files], path, lines, column)
      for a, column in enumerate(header[1:])]
  return np.stack(columns, axis=1), "attributes", header[1:]


def folder_index(config, split: str):
  """The images of one split of a folder data set and their labels, without
  decoding any: ``(relative paths, labels, label_key, label_names)``."""
  data_dir = config.data_dir
  if not os.path.isdir(data_dir):
    raise DataError(f"data_dir {display_name(data_dir)!r} does not exist; "
                    "point --config.data_dir at your images.")
  everything = folder_images(data_dir)
  if not everything:
    raise DataError(f"{data_dir} holds no {'/'.join(IMAGE_EXTENSIONS)} "
                    "images (searched recursively); point --config.data_dir "
                    "at your images.")
  # The labels of every image first: a CSV's errors do not depend on the
  # split being read.
  csv_path = labels_path(config)
  if csv_path is None:
    labels, label_key, names = (np.zeros(len(everything), np.int32),
                                NO_LABELS, [])
  else:
    labels, label_key, names = read_labels_csv(csv_path, data_dir,
                                               everything)
  if has_split_folders(data_dir):
    rows = [i for i, f in enumerate(everything)
            if f.startswith(split + "/")]
    how, fix = f"its {split}/ subfolder", f"add images to {split}/"
  else:
    fraction = test_fraction(config)
    rows = [i for i, f in enumerate(everything)
            if in_test_split(f, fraction) == (split == "test")]
    how = f"--config.test_fraction={fraction:g} of {len(everything)} images"
    fix = ("add images or raise --config.test_fraction" if split == "test"
           else "lower --config.test_fraction")
  if not rows:
    raise DataError(f"the {split} split of {data_dir} is empty ({how}); "
                    f"{fix}.")
  return [everything[i] for i in rows], labels[rows], label_key, names


def read_image_folder(config, split: str) -> Split:
  """Decodes one split of a folder data set (see ``folder_index``) on
  every core; unreadable files are skipped with a warning naming them."""
  files, labels, label_key, names = folder_index(config, split)
  paths = [os.path.join(config.data_dir, f) for f in files]
  images, keep = decode_images(
      paths, config.image_size, paths, f"decoding {config.data_dir} {split}",
      config.get("decode_workers", 0), crop="square",
      channels=channels(config))
  if not keep:
    raise DataError(f"none of the {len(files)} {split} images under "
                    f"{config.data_dir} is readable (e.g. {paths[0]}); check "
                    "that they are JPEG or PNG files.")
  return Split(images, labels[keep], label_key, names)


LOCAL_LAYOUT = {"mnist": "a folder with the four MNIST IDX .gz files",
                "celeb_a": "a CelebA folder in the official Align&Cropped "
                           "layout"}


def unreachable_download_hosts(urls, timeout: float = 5.0) -> List[str]:
  """``host (reason)`` for each URL host that does not accept a connection
  within ``timeout`` seconds (an offline machine fails in milliseconds)."""
  import socket
  import urllib.parse
  failed = []
  for host in sorted({urllib.parse.urlparse(u).hostname for u in urls} -
                     {None}):
    try:
      socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as e:
      failed.append(f"{host} ({e.strerror or type(e).__name__})")
  return failed


def import_tfds(name: str):
  """``tensorflow_datasets``, or a one-line ``DataError`` saying how to read
  ``name`` without it where TensorFlow or TFDS is not installed (training
  from local files needs neither)."""
  try:
    return runtime.import_tfds()
  except ImportError as e:
    local = (f"point --config.data_dir at {LOCAL_LAYOUT[name]}"
             if name in LOCAL_LAYOUT else
             "save the images in a folder and use --config.dataset=folder")
    raise DataError(
        f"reading TFDS {name} needs TensorFlow and TensorFlow Datasets "
        f"({e}); pip install tensorflow-cpu tensorflow-datasets, or "
        f"{local}.") from None


def tfds_builder(config, name: str):
  """The TFDS builder of ``name``, nothing downloaded: its ``info`` (the
  features) is there before any download."""
  tfds = import_tfds(name)
  data_dir = config.get("tfds_data_dir") or None
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, KeyboardInterrupt):
      raise
    text = (str(e).strip().splitlines() or [""])[0][:200]
    raise DataError(f"TFDS has no data set {name!r} ({type(e).__name__}: "
                    f"{text}); see tfds.list_builders() for the names.") from e
  return builder


def prepare_tfds(config, name: str, builder=None):
  """The TFDS builder of ``name``, downloaded and prepared if needed.

  Offline, the download would retry for minutes; the hosts of its URLs are
  probed first and an unreachable one is a one-line ``DataError`` naming
  ``--config.data_dir`` (local files) and ``--config.tfds_data_dir``.
  """
  builder = builder if builder is not None else tfds_builder(config, name)
  if builder.is_prepared():
    return builder
  local = (f"point --config.data_dir at {LOCAL_LAYOUT[name]}, or "
           if name in LOCAL_LAYOUT else
           "save the images in a folder and use --config.dataset=folder, or ")
  fix = (f"{local}prepare TFDS {name} on a machine with internet and pass "
         "its folder as --config.tfds_data_dir")
  unreachable = unreachable_download_hosts(list(builder.url_infos or {}))
  if unreachable:
    raise DataError(f"cannot download TFDS {name}: {', '.join(unreachable)} "
                    f"unreachable (offline?); {fix}.")
  try:
    builder.download_and_prepare()
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, (KeyboardInterrupt, DataError)):
      raise
    text = (str(e).strip().splitlines() or [""])[0][:200]
    raise DataError(f"preparing TFDS {name} in {builder.data_dir} failed "
                    f"({type(e).__name__}: {text}); {fix}.") from e
  return builder


def read_tfds(config, split: str) -> Split:
  """``tfds.load`` route (downloads on first use; needs internet).

  CelebA's JPEGs come out of TFDS still encoded and are decoded, cropped and
  resized on every core, like a local folder.
  """
  tfds = import_tfds("mnist" if config.dataset == "mnist" else "celeb_a")
  if config.dataset == "mnist":
    builder = prepare_tfds(config, "mnist")
    images, labels = [], []
    ds = builder.as_dataset(split=split)
    for batch in tfds.as_numpy(ds.batch(10000)):
      images.append(batch["image"])
      labels.append(batch["label"])
    return Split(np.concatenate(images).astype(np.uint8),
                 np.concatenate(labels).astype(np.int32), "label",
                 [str(i) for i in range(10)])
  builder = prepare_tfds(config, "celeb_a")
  names = sorted(builder.info.features["attributes"].keys())
  images, labels = _decode_tfds_images(
      config, builder, "celeb_a", split, split,
      lambda example: [bool(example["attributes"][n]) for n in names])
  return Split(images, np.asarray(labels, np.uint8), "attributes", names)


def _decode_tfds_images(config, builder, name: str, split: str,
                        tfds_split: str, label_of, **decode_options):
  """A TFDS split's ``image`` feature read still encoded and decoded on
  every core (``decode_images``), with ``label_of(example)`` of each kept
  image: ``(images uint8 [n, S, S, C], labels list [n])``."""
  tfds = import_tfds(name)
  dataset = builder.as_dataset(
      split=tfds_split, decoders={"image": tfds.decode.SkipDecoding()})
  encoded, labels = [], []
  for example in tfds.as_numpy(dataset):
    encoded.append(bytes(example["image"]))
    labels.append(label_of(example))
  if not encoded:
    raise DataError(f"TFDS {name} has no {split} images.")
  images, keep = decode_images(
      encoded, config.image_size,
      [f"{name} {split} #{i}" for i in range(len(encoded))],
      f"decoding {name} {split}", config.get("decode_workers", 0),
      **decode_options)
  if not keep:
    raise DataError(f"no readable images in TFDS {name} {split!r}.")
  return images, [labels[i] for i in keep]


def tfds_split_name(builder, split: str, fraction: float) -> str:
  """The TFDS split read as our ``split``: its own ``train`` / ``test``
  (``validation`` when there is no test), else the last ``fraction`` of
  ``train`` as the test split."""
  splits = set(builder.info.splits)
  if split == "train" and "train" in splits:
    if "test" in splits or "validation" in splits:
      return "train"
  elif split == "test":
    for name in ("test", "validation"):
      if name in splits:
        return name
  if "train" not in splits:
    raise DataError(f"TFDS {builder.name} has splits {sorted(splits)} and no "
                    "train split; use --config.dataset=folder with its "
                    "images.")
  percent = max(1, int(round(100 * fraction)))
  return (f"train[:{100 - percent}%]" if split == "train"
          else f"train[{100 - percent}%:]")


def read_tfds_images(config, split: str) -> Split:
  """``--config.dataset=tfds:NAME``: the builder's ``image`` feature,
  decoded, cropped and resized like a folder on every core, and its
  ``label`` (a ClassLabel) where present."""
  name = config.dataset[len("tfds:"):]
  builder = tfds_builder(config, name)
  features = builder.info.features  # known before any download
  if "image" not in features:
    raise DataError(f"TFDS {name} has no 'image' feature (it has "
                    f"{sorted(features)}); choose an image data set.")
  builder = prepare_tfds(config, name, builder)
  label = features["label"] if "label" in features else None
  has_labels = label is not None and hasattr(label, "names")
  images, labels = _decode_tfds_images(
      config, builder, name, split,
      tfds_split_name(builder, split, test_fraction(config)),
      lambda example: int(example["label"]) if has_labels else 0,
      crop="square", channels=channels(config))
  labels = np.asarray(labels, np.int32)
  if has_labels:
    return Split(images, labels, "label", list(label.names))
  return Split(images, labels, NO_LABELS, [])


def read_split(config, split: str) -> Split:
  """Uncached read of one split from the configured source."""
  if config.dataset == "digits":
    return read_digits(split)
  if is_tfds_name(config.dataset):
    return read_tfds_images(config, split)
  data_dir = config.get("data_dir") or ""
  if config.dataset == "folder" and not data_dir:
    raise DataError("--config.dataset=folder needs --config.data_dir=DIR, a "
                    "folder of JPEG / PNG images.")
  if data_dir and not os.path.isdir(data_dir):
    raise DataError(f"data_dir {data_dir!r} does not exist; point "
                    "--config.data_dir at the data folder, or leave it empty "
                    "to download with TFDS.")
  if config.dataset == "mnist":
    return read_mnist_idx(data_dir, split) if data_dir else read_tfds(
        config, split)
  if config.dataset == "celeba":
    if data_dir:
      return read_celeba_folder(data_dir, split, config.image_size,
                                config.get("decode_workers", 0))
    return read_tfds(config, split)
  if config.dataset == "folder":
    return read_image_folder(config, split)
  raise ValueError(f"unknown dataset {config.dataset!r}; choose one of "
                   f"{list(DATASETS)}.")


# ----------------------------------------------------------------------------
# The decode-once cache.


def default_cache_dir() -> str:
  return os.path.join(os.environ.get("XDG_CACHE_HOME",
                                     os.path.expanduser("~/.cache")),
                      "vlae_jax")


def _stat_line(name: str, path: str) -> bytes:
  info = os.stat(path)
  # surrogateescape: a name that is not UTF-8 is hashed as its own bytes.
  return f"{name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode(
      "utf-8", "surrogateescape")


def source_fingerprint(config) -> str:
  """A digest of the files a split is read from: names, sizes and
  modification times (nanoseconds) of every file in ``config.data_dir`` and,
  for CelebA, in its image folder; for a folder data set, of every file
  under it (recursively), its labels CSV and how it is split. Adding,
  removing or changing a file changes it, so the cache never serves images
  its source no longer has. The TFDS route is keyed by its data_dir (TFDS
  versions its own files)."""
  data_dir = config.get("data_dir") or ""
  if not data_dir or is_tfds_name(config.dataset):
    return "tfds:" + os.path.abspath(config.get("tfds_data_dir") or
                                     "~default") + (
        f":{test_fraction(config)}" if is_tfds_name(config.dataset) else "")
  digest = hashlib.sha256()
  if config.dataset == "folder":
    digest.update(f"test_fraction={test_fraction(config)}\n".encode())
    visited = set()
    for root, folders, files in os.walk(data_dir, followlinks=True):
      if os.path.realpath(root) in visited:  # a link loop: read once
        folders[:] = []
        continue
      visited.add(os.path.realpath(root))
      folders.sort()
      for name in sorted(files):
        path = os.path.join(root, name)
        try:
          digest.update(_stat_line(os.path.relpath(path, data_dir), path))
        except OSError:
          continue
    csv_path = labels_path(config)
    if csv_path and os.path.isfile(csv_path):
      digest.update(b"labels:" + _stat_line(os.path.abspath(csv_path),
                                            csv_path))
    return digest.hexdigest()
  folders = [data_dir]
  if config.dataset == "celeba":
    folders.append(os.path.join(data_dir, "img_align_celeba"))
  for folder in folders:
    try:
      entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
      continue  # the reader reports the missing folder
    for entry in entries:
      if entry.is_file():
        digest.update(_stat_line(entry.name, entry.path))
  return digest.hexdigest()


def _cache_folder(config, split: str) -> str:
  source = (os.path.abspath(config.data_dir)
            if config.get("data_dir") and not is_tfds_name(config.dataset)
            else "tfds")
  key = json.dumps([config.dataset, source, image_shape(config), split,
                    source_fingerprint(config)])
  digest = hashlib.sha1(key.encode()).hexdigest()[:12]
  root = config.get("cache_dir") or default_cache_dir()
  name = "".join(c if c.isalnum() or c in "-_." else "_"
                 for c in config.dataset)
  return os.path.join(root, f"{name}-{split}-{digest}")


def _read_cache(folder: str, shape) -> Split:
  """The cached split in ``folder``; ValueError/OSError if it is damaged."""
  with open(os.path.join(folder, "meta.json")) as f:
    meta = json.load(f)
  images = np.load(os.path.join(folder, "images.npy"), mmap_mode="r")
  labels = np.load(os.path.join(folder, "labels.npy"))
  if images.shape[1:] != tuple(shape) or images.dtype != np.uint8 or \
      len(images) != meta["count"] or len(labels) != meta["count"]:
    raise ValueError(f"holds {images.shape} {images.dtype} images and "
                     f"{len(labels)} labels, meta.json says {meta['count']}")
  return Split(images, labels, meta["label_key"], meta["label_names"])


# The validation hold-out is the same images for every run and seed.
VALIDATION_SEED = 2026


def has_official_validation(config) -> bool:
  """CelebA (local or TFDS) has its own validation partition."""
  return config.dataset == "celeba"


def validation_rows(num_train: int, size: int):
  """``(train rows, validation rows)`` of a source's train split when
  ``size`` of its images are held out for validation: a fixed random
  choice (``VALIDATION_SEED``, independent of ``config.seed``), both
  sorted."""
  if not 0 < size < num_train:
    raise DataError(f"--config.validation_size={size} must be between 1 and "
                    f"{num_train - 1} (the train split has {num_train} "
                    "images).")
  held = np.zeros(num_train, bool)
  held[np.random.default_rng(VALIDATION_SEED).permutation(num_train)[
      :size]] = True
  return np.flatnonzero(~held), np.flatnonzero(held)


def load_split(config, split: str) -> Split:
  """One split ("train", "validation" or "test"), from the cache if
  present, else read, decoded and cached.

  "validation" is CelebA's official partition; for every other source it
  exists when ``config.validation_size`` images of the train split are
  held out (then "train" is the rest), and is refused in one line
  otherwise. The digits set is small and bundled, so it is never cached. A
  damaged cache (truncated or unreadable files) is rebuilt with a warning.
  """
  size = config.get("validation_size", 0) or 0
  if split in ("train", "validation") and size and \
      not has_official_validation(config):
    whole = _load_split(config, "train")
    train_rows, held_rows = validation_rows(len(whole), size)
    rows = train_rows if split == "train" else held_rows
    return Split(np.asarray(whole.images[rows]), whole.labels[rows],
                 whole.label_key, whole.label_names)
  if split == "validation" and not has_official_validation(config):
    raise DataError(
        f"{config.dataset} has no validation split; train with "
        "--config.validation_size=N (e.g. 5000) to hold N train images out "
        "for choosing recipes, or evaluate --split=test.")
  return _load_split(config, split)


def _load_split(config, split: str) -> Split:
  """One split of the source as it is published, cached."""
  if config.dataset == "digits":
    return read_digits(split)
  folder = _cache_folder(config, split)
  if os.path.exists(os.path.join(folder, "meta.json")):
    try:
      return _read_cache(folder, image_shape(config))
    except (OSError, ValueError, KeyError, TypeError) as e:
      damaged = f"{folder}.damaged-{os.getpid()}-{int(time.time())}"
      print(f"warning: decode cache {folder} is damaged "
            f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]});"
            f" rebuilding it (the damaged copy is moved to {damaged}).",
            flush=True)
      try:
        os.replace(folder, damaged)
      except OSError:
        pass
  if config.dataset == "folder":
    # The other split's errors (empty, the labels CSV) before any decode or
    # cache write; this split's come from read_split before it decodes.
    folder_index(config, "test" if split == "train" else "train")
  data = read_split(config, split)
  try:
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    tmp = f"{folder}.tmp-{os.getpid()}"
    os.makedirs(tmp, exist_ok=True)
    np.save(os.path.join(tmp, "images.npy"), data.images)
    np.save(os.path.join(tmp, "labels.npy"), data.labels)
    with open(os.path.join(tmp, "meta.json"), "w") as f:
      json.dump({"label_key": data.label_key, "label_names": data.label_names,
                 "count": len(data)}, f)
  except OSError as e:  # the cache is a convenience: train without it
    import shutil
    shutil.rmtree(f"{folder}.tmp-{os.getpid()}", ignore_errors=True)
    print(f"warning: cannot write the decode cache under "
          f"{os.path.dirname(folder)} ({e.strerror or e}); the images will be "
          "decoded again next run (set --config.cache_dir to a writable "
          "folder).", flush=True)
    return data
  try:
    os.replace(tmp, folder)  # atomic: a half-written cache is never used
  except OSError:  # another process won the race; use its copy
    pass
  logging.info("cached %d decoded %s %s images in %s", len(data),
               config.dataset, split, folder)
  return data
