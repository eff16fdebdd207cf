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
from typing import Dict, List, Optional, Tuple

import numpy as np
from absl import logging

from vlae_jax import runtime

DATASETS = ("digits", "mnist", "celeba")
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
  labels: np.ndarray  # [N] (label) or [N, num_attributes] in {0, 1}
  label_key: str  # "label" or "attributes"
  label_names: List[str]

  def __len__(self):
    return len(self.images)

  def batch(self, indices) -> Dict[str, np.ndarray]:
    """The batch dict of the given rows (images scaled to [0, 1])."""
    return {"image": self.images[indices].astype(np.float32) / 255.0,
            self.label_key: self.labels[indices].astype(np.int32)}


def image_shape(config) -> Tuple[int, int, int]:
  """``(H, W, C)`` of the configured data set, without loading it."""
  if config.dataset == "digits":
    return (8, 8, 1)
  if config.dataset == "mnist":
    return (28, 28, 1)
  if config.dataset == "celeba":
    return (config.image_size, config.image_size, 3)
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
  except (OSError, EOFError) as e:
    raise DataError(f"cannot read IDX file {path}: {e}; re-download it.") from e
  if len(data) < 4 or data[:2] != b"\x00\x00":
    raise DataError(f"{path} is not an IDX file (bad magic number).")
  dtype_code, ndim = data[2], data[3]
  if dtype_code != 0x08:
    raise DataError(f"{path}: expected unsigned-byte IDX data, got type "
                    f"0x{dtype_code:02x}.")
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


def _decode_celeba_chunk(sources, size):
  """Worker: ``[(uint8 [size, size, 3] or None, enlarged, error or None)]``
  for JPEG file paths or encoded bytes."""
  import io
  from PIL import Image
  out = []
  for source in sources:
    try:
      handle = io.BytesIO(source) if isinstance(source, bytes) else source
      with Image.open(handle) as image:
        enlarged = image.size[0] * CELEBA_CROP_FRACTION < size
        out.append((celeba_crop_and_resize(image, size), enlarged, None))
    except (OSError, ValueError, SyntaxError) as e:
      out.append((None, False, f"{type(e).__name__}: {e}"))
  return out


def decode_celeba(sources, size: int, names, what: str,
                  workers: int = 0, chunk: int = 64,
                  progress_every: float = 5.0):
  """Decodes, crops and resizes JPEGs on ``workers`` processes (0: all cores).

  Args:
    sources: JPEG file paths or encoded JPEG bytes, one per image.
    size: output side in pixels. names: per image, the name warnings use.
    what: progress label, e.g. "decoding CelebA train"; a progress line
      (count, images/s, ETA) at most every ``progress_every`` seconds.

  Returns ``(images uint8 [n_ok, size, size, 3], kept indices)``; unreadable
  images are skipped with a warning naming them. The result does not depend
  on ``workers``.
  """
  workers = workers or default_decode_workers()
  chunks = [sources[i:i + chunk] for i in range(0, len(sources), chunk)]
  progress = Progress(len(sources), what, progress_every)
  results = []
  if workers == 1 or len(chunks) == 1:
    for part in chunks:
      results += _decode_celeba_chunk(part, size)
      progress.update(len(part))
  else:
    import multiprocessing
    # spawn: the parent may already run JAX and TensorFlow threads, which a
    # fork would copy mid-flight.
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"))
    try:
      for part, decoded in zip(chunks, pool.map(
          _decode_celeba_chunk, chunks, [size] * len(chunks))):
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
  keep = [i for i, (image, _, _) in enumerate(results) if image is not None]
  for name, (image, _, error) in zip(names, results):
    if image is None:
      logging.warning("skipping unreadable CelebA image %s: %s", name, error)
      print(f"warning: skipping unreadable CelebA image {name} ({error})",
            flush=True)
  enlarged = sum(1 for _, big, _ in results if big)
  if enlarged:
    logging.warning("%s: %d images have a crop smaller than %dx%d and were "
                    "enlarged (e.g. half-scale copies)", what, enlarged, size,
                    size)
  if not keep:
    return np.zeros((0, size, size, 3), np.uint8), keep
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
  images, keep = decode_celeba(paths, size, paths,
                               f"decoding CelebA {split}", workers)
  if len(keep) < len(wanted):
    logging.warning("CelebA %s: skipped %d unreadable images of %d", split,
                    len(wanted) - len(keep), len(wanted))
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


def prepare_tfds(config, name: str):
  """The TFDS builder of ``name``, downloaded and prepared if needed.

  Offline, the download would retry for minutes; the hosts of its URLs are
  probed first and an unreachable one is a one-line ``DataError`` naming
  ``--config.data_dir`` (local files) and ``--config.tfds_data_dir``.
  """
  tfds = runtime.import_tfds()
  data_dir = config.get("tfds_data_dir") or None
  builder = tfds.builder(name, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  fix = (f"point --config.data_dir at {LOCAL_LAYOUT[name]}, or prepare TFDS "
         f"{name} on a machine with internet and pass its folder as "
         "--config.tfds_data_dir")
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
  tfds = runtime.import_tfds()
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
  encoded, labels = [], []
  dataset = builder.as_dataset(
      split=split, decoders={"image": tfds.decode.SkipDecoding()})
  for example in tfds.as_numpy(dataset):
    encoded.append(bytes(example["image"]))
    labels.append([bool(example["attributes"][n]) for n in names])
  images, keep = decode_celeba(
      encoded, config.image_size, [f"celeb_a {split} #{i}"
                                   for i in range(len(encoded))],
      f"decoding celeb_a {split}", config.get("decode_workers", 0))
  if not keep:
    raise DataError(f"no readable images in TFDS celeb_a {split!r}.")
  return Split(images, np.asarray(labels, np.uint8)[keep], "attributes",
               names)


def read_split(config, split: str) -> Split:
  """Uncached read of one split from the configured source."""
  if config.dataset == "digits":
    return read_digits(split)
  data_dir = config.get("data_dir") or ""
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
  raise ValueError(f"unknown dataset {config.dataset!r}; choose one of "
                   f"{list(DATASETS)}.")


# ----------------------------------------------------------------------------
# The decode-once cache.


def default_cache_dir() -> str:
  return os.path.join(os.environ.get("XDG_CACHE_HOME",
                                     os.path.expanduser("~/.cache")),
                      "vlae_jax")


def source_fingerprint(config) -> str:
  """A digest of the files a split is read from: names, sizes and
  modification times (nanoseconds) of every file in ``config.data_dir`` and,
  for CelebA, in its image folder. Adding, removing or changing a file
  changes it, so the cache never serves images its source no longer has.
  The TFDS route is keyed by its data_dir (TFDS versions its own files)."""
  data_dir = config.get("data_dir") or ""
  if not data_dir:
    return "tfds:" + os.path.abspath(config.get("tfds_data_dir") or "~default")
  digest = hashlib.sha256()
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
        info = entry.stat()
        digest.update(f"{entry.name}\0{info.st_size}\0{info.st_mtime_ns}\n"
                      .encode())
  return digest.hexdigest()


def _cache_folder(config, split: str) -> str:
  source = os.path.abspath(config.data_dir) if config.get("data_dir") else "tfds"
  key = json.dumps([config.dataset, source, image_shape(config), split,
                    source_fingerprint(config)])
  digest = hashlib.sha1(key.encode()).hexdigest()[:12]
  root = config.get("cache_dir") or default_cache_dir()
  return os.path.join(root, f"{config.dataset}-{split}-{digest}")


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


def load_split(config, split: str) -> Split:
  """One split, from the cache if present, else read, decoded and cached.

  The digits set is small and bundled, so it is never cached. A damaged
  cache (truncated or unreadable files) is rebuilt with a warning.
  """
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
