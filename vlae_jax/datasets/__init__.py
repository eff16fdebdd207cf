"""Data sets: a registered source per ``--config.dataset`` -> decoded, cached
uint8 splits.

Every split is decoded and resized once into uint8 arrays
``[num_images, H, W, C]`` kept in a cache folder (``config.cache_dir``),
keyed by a fingerprint of the source files, so JPEGs are never decoded
twice. ``vlae_jax.input_pipeline`` turns a split into batches.

The sources (one module each, listed in ``registry.BUILTIN``): ``digits``
(scikit-learn's bundled 8x8 digits), ``mnist`` (IDX files or TFDS),
``celeba`` (the official layout or TFDS), ``folder`` (any folder of JPEG /
PNG images, with an optional labels CSV), ``tfds:NAME`` (any TFDS image
data set). The shared parts: ``base`` (``Split``, ``DataError``, the
``Source`` interface), ``decode`` (parallel decoding and crops),
``cache`` (the decode-once cache); this module loads a split and holds
the validation hold-out.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np

from vlae_jax.datasets import cache, registry
from vlae_jax.datasets.base import (NO_LABELS, DataError, RowView, Source,
                                    Split, display_name)
from vlae_jax.datasets.celeba import (celeba_identities, celeba_index,
                                      read_celeba_folder)
from vlae_jax.datasets.decode import (celeba_crop_and_resize,
                                      decode_images, default_decode_workers,
                                      square_crop_and_resize)
from vlae_jax.datasets.digits import read_digits
from vlae_jax.datasets.folder import (folder_images, folder_index,
                                      in_test_split, test_fraction)
from vlae_jax.datasets.mnist import read_mnist_idx
from vlae_jax.datasets.registry import register, source_for, unregister
from vlae_jax.datasets.tfds_source import is_tfds_name

__all__ = [
    "NO_LABELS", "DataError", "Source", "Split", "celeba_crop_and_resize",
    "celeba_identities", "celeba_index", "decode_images",
    "default_decode_workers", "display_name", "domain", "folder_images",
    "folder_index", "has_official_validation", "image_shape",
    "in_test_split", "is_known", "is_tfds_name", "load_split",
    "local_fingerprint", "read_celeba_folder", "read_digits",
    "read_mnist_idx", "read_split", "register", "source_for",
    "square_crop_and_resize", "test_fraction", "unregister",
    "validation_rows",
]

# The validation hold-out is the same images for every run and seed.
VALIDATION_SEED = 2026


def is_known(dataset) -> bool:
  return registry.find(dataset) is not None


def domain(dataset) -> str:
  """"digits" (the paper's MNIST factors and claims), "faces" (its CelebA
  ones) or "images" (pixel factors only): what ``evaluation`` measures."""
  return source_for(dataset).domain


def image_shape(config) -> Tuple[int, int, int]:
  """``(H, W, C)`` of the configured data set, without loading it."""
  return source_for(config.dataset).image_shape(config)


def has_official_validation(config) -> bool:
  """The source publishes its own validation split (CelebA)."""
  return source_for(config.dataset).official_validation


def local_fingerprint(config) -> Optional[str]:
  """The fingerprint of a run's local data folder; None for bundled and
  downloaded (TFDS) data, whose files a run does not check."""
  source = source_for(config.dataset)
  return source.fingerprint(config) if source.local_folder(config) else None


def read_split(config, split: str) -> Split:
  """Uncached read of one split from the configured source."""
  source = source_for(config.dataset)
  problem = source.config_problem(config)
  if problem:
    raise DataError(problem)
  data_dir = source.local_folder(config)
  if data_dir and not os.path.isdir(data_dir):
    fix = ("" if source.needs_data_dir else
           ", or leave it empty to download with TFDS")
    raise DataError(f"data_dir {display_name(data_dir)!r} does not exist; "
                    f"point --config.data_dir at the data folder{fix}.")
  return source.read(config, split)


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

  "validation" is the source's own partition where it has one (CelebA);
  for every other source it exists when ``config.validation_size`` images
  of the train split are held out (then "train" is the rest), and is
  refused in one line otherwise. A damaged cache (truncated or unreadable
  files) is rebuilt with a warning.
  """
  source = source_for(config.dataset)
  size = config.get("validation_size", 0) or 0
  if split in ("train", "validation") and size and \
      not source.official_validation:
    whole = _load_published_split(config, source, "train")
    train_rows, held_rows = validation_rows(len(whole), size)
    rows = train_rows if split == "train" else held_rows
    return Split(RowView(whole.images, rows), whole.labels[rows],
                 whole.label_key, whole.label_names)
  if split == "validation" and not source.official_validation:
    raise DataError(
        f"{config.dataset} has no validation split; train with "
        "--config.validation_size=N (e.g. 5000) to hold N train images out "
        "for choosing recipes, or evaluate --split=test.")
  return _load_published_split(config, source, split)


def _load_published_split(config, source: Source, split: str) -> Split:
  """One split of the source as it is published, cached."""
  if not source.cached:
    return read_split(config, split)
  folder = cache.cache_folder(config, source, split)

  def read():
    before = getattr(source, "before_decode", None)
    if before is not None:
      before(config, split)
    return read_split(config, split)

  return cache.cached(folder, source.image_shape(config), read)
