"""KID with our mmd against a NumPy formula; the feature classifier on real
MNIST."""

import numpy as np
import pytest

from conftest import MNIST_DIR, needs_mnist
from vlae_jax import sample_quality


def numpy_kid(x, y):
  """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, float64 double sums."""
  d = x.shape[1]
  k = lambda a, b: (a @ b.T / d + 1.0) ** 3
  kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
  n, m = len(x), len(y)
  return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
          + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
          - 2 * kxy.mean())


def test_kid_is_the_unbiased_polynomial_mmd():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 16))
  y = rng.normal(size=(300, 16)) + 0.3
  # One subset of all rows: KID is invariant to the rows' order.
  kid = sample_quality.kid(x, y, subsets=1, subset_size=300)
  assert kid["mean"] == pytest.approx(numpy_kid(x, y), rel=1e-4)
  same = sample_quality.kid(x, rng.normal(size=(300, 16)), subsets=5,
                            subset_size=200)
  assert abs(same["mean"]) < 0.1 * kid["mean"]
  assert same["subset_size"] == 200 and same["subsets"] == 5


def test_resampling_shift_is_zero_for_no_change_and_about_one_for_a_swap():
  rng = np.random.default_rng(0)
  reference = rng.normal(size=(3000, 8))
  base = reference[:1000]
  swapped = reference[1000:2000]
  shift = sample_quality.resampling_shift(base, [base, swapped], reference)
  assert shift[0] == 0.0
  assert shift[1] == pytest.approx(1.0, abs=0.05)


@needs_mnist
def test_the_feature_classifier_learns_real_mnist():
  from vlae_jax import datasets
  train = datasets.read_mnist_idx(MNIST_DIR, "train")
  test = datasets.read_mnist_idx(MNIST_DIR, "test")
  model, params = sample_quality.train_classifier(
      train.images[:20000], train.labels[:20000], steps=150)
  feats, logits = sample_quality.features(model, params, test.images[:2000])
  assert feats.shape == (2000, sample_quality.FEATURE_DIM)
  assert np.all(feats >= 0)
  accuracy = sample_quality.classifier_accuracy(logits, test.labels[:2000])
  assert accuracy > 0.9
  # Multi-label (CelebA-style attributes): mean per-attribute accuracy.
  attributes = np.stack([train.labels[:20000] % 2,
                         train.labels[:20000] >= 5], 1).astype(np.uint8)
  model, params = sample_quality.train_classifier(
      train.images[:20000], attributes, steps=150)
  _, logits = sample_quality.features(model, params, test.images[:2000])
  truth = np.stack([test.labels[:2000] % 2, test.labels[:2000] >= 5], 1)
  assert sample_quality.classifier_accuracy(logits, truth) > 0.85


def test_kid_has_an_interval_when_its_subsets_are_the_whole_sets():
  """660 test faces and subsets of 1,000: every subset is the whole set, so
  the subsets' std is 0; the interval over half-size subsets still varies
  and holds the estimate."""
  rng = np.random.default_rng(4)
  x = rng.normal(size=(80, 8))
  y = rng.normal(loc=0.5, size=(80, 8))
  kid = sample_quality.kid(x, y, subsets=3, subset_size=1000)
  assert kid["subset_size"] == 80 and kid["std"] < 1e-6
  low, high = kid["interval"]
  assert kid["interval_subset_size"] == 40
  assert low < kid["mean"] < high and high - low > 0.05 * kid["mean"]
