"""``folder``: every JPEG / PNG under ``config.data_dir`` (recursively,
links followed), the centred square of its shorter side resized to
``config.image_size``, with ``config.channels`` (1 or 3); split by
``train/`` and ``test/`` subfolders where both exist, else by a hash of
each file's path (``config.test_fraction``); labels from an optional CSV
(``config.labels_file``, default ``labels.csv`` in the folder)."""

from __future__ import annotations

import hashlib
import os
from typing import List, Optional

import numpy as np

from vlae_jax.datasets.base import (NO_LABELS, DataError, Source, Split,
                                    display_name, stat_line)
from vlae_jax.datasets.decode import decode_images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_LABELS_FILE = "labels.csv"


def test_fraction(config) -> float:
  """The hash split's test share: ``config.test_fraction``, 0 -> 0.1."""
  return float(config.get("test_fraction", 0.0) or DEFAULT_TEST_FRACTION)


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
      channels=SOURCE.num_channels(config))
  if not keep:
    raise DataError(f"none of the {len(files)} {split} images under "
                    f"{config.data_dir} is readable (e.g. {paths[0]}); check "
                    "that they are JPEG or PNG files.")
  return Split(images, labels[keep], label_key, names)


class Folder(Source):
  name = "folder"
  needs_data_dir = True

  def read(self, config, split):
    return read_image_folder(config, split)

  def fingerprint(self, config):
    """Every file under the folder (recursively, links followed once), its
    labels CSV and how it is split."""
    data_dir = config.data_dir
    digest = hashlib.sha256()
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
          digest.update(stat_line(os.path.relpath(path, data_dir), path))
        except OSError:
          continue
    csv_path = labels_path(config)
    if csv_path and os.path.isfile(csv_path):
      digest.update(b"labels:" + stat_line(os.path.abspath(csv_path),
                                           csv_path))
    return digest.hexdigest()

  def config_problem(self, config):
    if not config.get("data_dir"):
      return ("--config.dataset=folder needs --config.data_dir=DIR, a "
              "folder of JPEG / PNG images.")
    return super().config_problem(config)

  def before_decode(self, config, split):
    """The other split's errors (empty, the labels CSV) before any decode
    or cache write; this split's come from ``read`` before it decodes."""
    folder_index(config, "test" if split == "train" else "train")


SOURCE = Folder()
