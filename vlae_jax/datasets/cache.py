"""The decode-once cache: a split decoded and resized once is kept as uint8
``images.npy`` / ``labels.npy`` under ``config.cache_dir``, keyed by the
source's fingerprint of its files, written atomically and rebuilt with a
warning when damaged."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import Callable

import numpy as np
from absl import logging

from vlae_jax.datasets.base import Source, Split


def default_cache_dir() -> str:
  return os.path.join(os.environ.get("XDG_CACHE_HOME",
                                     os.path.expanduser("~/.cache")),
                      "vlae_jax")


def cache_folder(config, source: Source, split: str) -> str:
  """The folder of one split's decoded images: named by the data set and
  split, keyed by where it is read from, its image shape and fingerprint."""
  local = source.local_folder(config)
  key = json.dumps([config.dataset,
                    os.path.abspath(local) if local else "tfds",
                    source.image_shape(config), split,
                    source.fingerprint(config)])
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


def cached(folder: str, shape, read: Callable[[], Split]) -> Split:
  """The split cached in ``folder``, else ``read()`` and cache it (a
  cache that cannot be written is a warning: the split is still used)."""
  if os.path.exists(os.path.join(folder, "meta.json")):
    try:
      return _read_cache(folder, shape)
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
  data = read()
  tmp = f"{folder}.tmp-{os.getpid()}"
  try:
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    os.makedirs(tmp, exist_ok=True)
    np.save(os.path.join(tmp, "images.npy"), data.images)
    np.save(os.path.join(tmp, "labels.npy"), data.labels)
    with open(os.path.join(tmp, "meta.json"), "w") as f:
      json.dump({"label_key": data.label_key, "label_names": data.label_names,
                 "count": len(data)}, f)
  except OSError as e:  # the cache is a convenience: train without it
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"warning: cannot write the decode cache under "
          f"{os.path.dirname(folder)} ({e.strerror or e}); the images will be "
          "decoded again next run (set --config.cache_dir to a writable "
          "folder).", flush=True)
    return data
  try:
    os.replace(tmp, folder)  # atomic: a half-written cache is never used
  except OSError:  # another process won the race; use its copy
    shutil.rmtree(tmp, ignore_errors=True)
  logging.info("cached %d decoded images in %s", len(data), folder)
  return data
