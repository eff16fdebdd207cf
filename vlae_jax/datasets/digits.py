"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 real
images, no download, never cached); the last 297 form the test split."""

from __future__ import annotations

import numpy as np

from vlae_jax.datasets.base import Source, Split

TEST_SIZE = 297


def read_digits(split: str) -> Split:
  from sklearn.datasets import load_digits
  digits = load_digits()
  # Values are counts 0..16; scale to the 0..255 of every other source.
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  cut = len(images) - TEST_SIZE
  rows = slice(0, cut) if split == "train" else slice(cut, None)
  return Split(images[rows], labels[rows], "label",
               [str(i) for i in range(10)])


class Digits(Source):
  name = "digits"
  domain = "digits"
  channels = 1
  cached = False

  def image_shape(self, config):
    return (8, 8, 1)

  def read(self, config, split):
    return read_digits(split)

  def local_folder(self, config):
    return None  # bundled with scikit-learn

  def fingerprint(self, config):
    return "digits"


SOURCE = Digits()
