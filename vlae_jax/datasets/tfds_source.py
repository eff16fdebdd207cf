"""``tfds:NAME``: TFDS's builder NAME (its ``image`` feature, and ``label``
where it has one), cropped and resized like a folder; and the TFDS route
the mnist and celeba sources take without ``config.data_dir``. TFDS needs
TensorFlow, imported only through ``vlae_jax.tf_gate``."""

from __future__ import annotations

from typing import List

import numpy as np

from vlae_jax import tf_gate
from vlae_jax.datasets.base import (NO_LABELS, DataError, Source, Split,
                                    tfds_fingerprint)
from vlae_jax.datasets.decode import decode_images
from vlae_jax.datasets.folder import test_fraction

PREFIX = "tfds:"
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
    return tf_gate.import_tfds()
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


def decode_tfds_images(config, builder, name: str, split: str,
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
  name = config.dataset[len(PREFIX):]
  builder = tfds_builder(config, name)
  features = builder.info.features  # known before any download
  if "image" not in features:
    raise DataError(f"TFDS {name} has no 'image' feature (it has "
                    f"{sorted(features)}); choose an image data set.")
  builder = prepare_tfds(config, name, builder)
  label = features["label"] if "label" in features else None
  has_labels = label is not None and hasattr(label, "names")
  images, labels = decode_tfds_images(
      config, builder, name, split,
      tfds_split_name(builder, split, test_fraction(config)),
      lambda example: int(example["label"]) if has_labels else 0,
      crop="square", channels=SOURCE.num_channels(config))
  labels = np.asarray(labels, np.int32)
  if has_labels:
    return Split(images, labels, "label", list(label.names))
  return Split(images, labels, NO_LABELS, [])


def is_tfds_name(dataset) -> bool:
  """Whether ``dataset`` names a TFDS builder (``tfds:NAME``)."""
  return isinstance(dataset, str) and dataset.startswith(PREFIX)


class Tfds(Source):
  name = "tfds"

  def matches(self, dataset):
    return is_tfds_name(dataset) and len(dataset) > len(PREFIX)

  def display(self):
    return PREFIX + "NAME"

  def read(self, config, split):
    return read_tfds_images(config, split)

  def local_folder(self, config):
    return None

  def fingerprint(self, config):
    return tfds_fingerprint(config, f":{test_fraction(config)}")


SOURCE = Tfds()
