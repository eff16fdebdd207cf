"""``celeba``: ``config.data_dir`` in the official Align&Cropped layout
(``img_align_celeba/``, ``list_attr_celeba.txt``,
``list_eval_partition.txt``, optionally ``identity_CelebA.txt``), else
TFDS's ``celeb_a``; a centred square of 108/178 of each image's width,
resized to ``config.image_size``. Its own train / validation / test
partition."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from vlae_jax.datasets import tfds_source
from vlae_jax.datasets.base import (DataError, Source, Split,
                                    folder_fingerprint)
from vlae_jax.datasets.decode import decode_images

SPLITS = {"train": 0, "validation": 1, "test": 2}
IMAGE_FOLDER = "img_align_celeba"


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
  image_dir = os.path.join(data_dir, IMAGE_FOLDER)
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
                  if partition.get(n, [None])[0] == str(SPLITS[split]))
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


def read_celeba_folder(data_dir: str, split: str, size: int,
                       workers: int = 0) -> Split:
  """Decodes one split of an official-layout CelebA folder (see celeba_index)
  on ``workers`` processes (0: every core).

  Unreadable or truncated JPEGs are skipped with a warning naming them.
  """
  wanted, labels, names = celeba_index(data_dir, split)
  image_dir = os.path.join(data_dir, IMAGE_FOLDER)
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


def read_tfds_celeba(config, split: str) -> Split:
  """TFDS's ``celeb_a``: its JPEGs come out still encoded and are decoded,
  cropped and resized on every core, like a local folder."""
  builder = tfds_source.prepare_tfds(config, "celeb_a")
  names = sorted(builder.info.features["attributes"].keys())
  images, labels = tfds_source.decode_tfds_images(
      config, builder, "celeb_a", split, split,
      lambda example: [bool(example["attributes"][n]) for n in names])
  return Split(images, np.asarray(labels, np.uint8), "attributes", names)


class CelebA(Source):
  name = "celeba"
  domain = "faces"
  channels = 3
  official_validation = True

  def read(self, config, split):
    if config.get("data_dir"):
      return read_celeba_folder(config.data_dir, split, config.image_size,
                                config.get("decode_workers", 0))
    return read_tfds_celeba(config, split)

  def fingerprint(self, config):
    if not self.local_folder(config):
      return super().fingerprint(config)
    return folder_fingerprint([config.data_dir,
                               os.path.join(config.data_dir, IMAGE_FOLDER)])


SOURCE = CelebA()
