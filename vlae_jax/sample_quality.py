"""Sample quality as a number: KID in the features of a classifier trained
on the data set, computed with ``vlae_jax.mmd``; and how far resampling one
rung moves those features.

KID (Binkowski et al. 2018) is the unbiased MMD^2 with the cubic polynomial
kernel ``k(a, b) = (a.b / d + 1)^3`` between features of generated and real
images, averaged over random equal-size subsets. Here the features are the
penultimate layer (``FEATURE_DIM`` units, divided by the RMS entry of the
real images' features) of a small CNN that ``evaluate`` trains on the train
split for this purpose: digit classes for MNIST/digits,
the 40 attributes (multi-label) for CelebA. An Inception network would need a
download; this classifier is trained in seconds from the data the run uses,
so KID values compare runs of one data set, not across papers.
"""

from __future__ import annotations

import functools
from typing import Dict, List, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vlae_jax import inference
from vlae_jax.discrepancy import mmd

FEATURE_DIM = 128


class FeatureClassifier(nn.Module):
  """Conv32 s2, conv64 s2 (conv128 s2 for inputs over 32 px), dense
  ``FEATURE_DIM`` (the features), dense ``outputs`` (logits).

  ``__call__(images [n, H, W, C] in [0, 1]) -> (features [n, FEATURE_DIM] >= 0,
  logits [n, outputs])``.
  """

  outputs: int

  @nn.compact
  def __call__(self, images):
    h = images * 2.0 - 1.0
    widths = (32, 64, 128) if images.shape[1] > 32 else (32, 64)
    for i, width in enumerate(widths):
      h = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2), name=f"conv{i}")(h))
    h = h.reshape(h.shape[0], -1)
    features = nn.relu(nn.Dense(FEATURE_DIM, name="features")(h))
    return features, nn.Dense(self.outputs, name="logits")(features)


def _loss(params, model, images, labels, multi_label: bool):
  _, logits = model.apply({"params": params}, images)
  if multi_label:
    return jnp.mean(optax.sigmoid_binary_cross_entropy(
        logits, labels.astype(jnp.float32)))
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      logits, labels))


def train_classifier(images: np.ndarray, labels: np.ndarray, *,
                     steps: int = 1000, batch_size: int = 128,
                     learning_rate: float = 1e-3, seed: int = 0):
  """Fits a ``FeatureClassifier`` to uint8 ``images [n, H, W, C]`` and
  ``labels``: ``[n]`` integer classes (softmax) or ``[n, k]`` in {0, 1}
  (multi-label sigmoid). Returns ``(model, params)``."""
  labels = np.asarray(labels)
  multi_label = labels.ndim == 2
  outputs = labels.shape[1] if multi_label else int(labels.max()) + 1
  model = FeatureClassifier(outputs=outputs)
  key = jax.random.PRNGKey(seed)
  params = model.init(key, jnp.zeros((1,) + images.shape[1:]))["params"]
  optimizer = optax.adam(learning_rate)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    grads = jax.grad(_loss)(params, model, x, y, multi_label)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  rng = np.random.default_rng(seed)
  batch_size = min(batch_size, len(images))
  for _ in range(steps):
    rows = np.sort(rng.choice(len(images), batch_size, replace=False))
    x = np.asarray(images[rows], np.float32) / 255.0
    params, opt_state = step(params, opt_state, x, labels[rows])
  return model, params


@functools.partial(jax.jit, static_argnums=0)
def _features_and_logits(model, params, images):
  return model.apply({"params": params}, images)


def features(model, params, images, batch_size: int = 500):
  """``(features [n, FEATURE_DIM], logits [n, outputs])`` of images
  ``[n, H, W, C]`` (uint8, or floats in [0, 1])."""
  images = np.asarray(images)
  scale = 1 / 255.0 if images.dtype == np.uint8 else 1.0
  # The shared chunked path: the last chunk padded, one compiled program.
  return inference.chunked(
      lambda x: _features_and_logits(model, params,
                                     x.astype(jnp.float32) * scale),
      [images], batch_size)


def classifier_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
  """Accuracy (classes) or mean per-attribute accuracy (multi-label)."""
  labels = np.asarray(labels)
  if labels.ndim == 2:
    return float(np.mean((logits > 0) == (labels > 0)))
  return float(np.mean(np.argmax(logits, axis=1) == labels))


def polynomial_kernel(a: jax.Array, b: jax.Array) -> jax.Array:
  """KID's kernel on one pair of feature vectors ``[d]``:
  ``(a.b / d + 1)^3``."""
  return (jnp.dot(a, b) / a.shape[-1] + 1.0) ** 3


@jax.jit
def _kid_subset(x, y):
  return mmd(x, y, kernel=polynomial_kernel, estimator="unbiased",
             block_size=None)


def kid(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 10,
        subset_size: int = 1000, seed: int = 0,
        spread_subsets: int = 50) -> Dict[str, float]:
  """KID between two feature sets ``[n, d]`` and ``[m, d]``: the unbiased
  polynomial-kernel MMD^2 (``vlae_jax.mmd``) averaged over ``subsets``
  random subsets of ``min(subset_size, n, m)`` rows of each.

  Returns ``{"mean", "std"}`` over those subsets (the std of one subset's
  estimate: 0 when the subsets are the whole sets) and ``"interval"``, the
  2.5th and 97.5th percentiles of the estimate over ``spread_subsets``
  random subsets of half that size (``"interval_subset_size"``): an
  interval that can vary however few images there are, and wider than the
  full-size estimate's own (a half-size estimate varies more)."""
  size = min(subset_size, len(features_a), len(features_b))
  rng = np.random.default_rng(seed)

  def estimates(count, rows):
    values = []
    for _ in range(count):
      a = features_a[rng.choice(len(features_a), rows, replace=False)]
      b = features_b[rng.choice(len(features_b), rows, replace=False)]
      values.append(float(_kid_subset(jnp.asarray(a, jnp.float32),
                                      jnp.asarray(b, jnp.float32))))
    return np.asarray(values)

  values = estimates(subsets, size)
  half = max(2, size // 2)
  spread = estimates(spread_subsets, half)
  return {"mean": float(np.mean(values)), "std": float(np.std(values)),
          "subset_size": size, "subsets": subsets,
          "interval": [float(np.percentile(spread, 2.5)),
                       float(np.percentile(spread, 97.5))],
          "interval_subset_size": half}


def resampling_shift(base_features: np.ndarray, resampled: Sequence[np.ndarray],
                     reference_features: np.ndarray, seed: int = 0
                     ) -> List[float]:
  """How far resampling one rung moves an image's features, per rung.

  ``base_features [n, d]`` are the features of reconstructions (every rung at
  its posterior mean); ``resampled[l]`` those of the same codes with rung l
  drawn from the prior instead. Returns, per rung, the mean distance
  ``||f(resampled) - f(base)||`` divided by the mean distance between the
  features of two random real images (``reference_features``): 0 means the
  rung changes nothing the classifier sees, 1 as much as swapping the image.
  """
  rng = np.random.default_rng(seed)
  a = rng.integers(0, len(reference_features), 2000)
  b = rng.integers(0, len(reference_features), 2000)
  scale = float(np.mean(np.linalg.norm(reference_features[a]
                                       - reference_features[b], axis=1)))
  return [float(np.mean(np.linalg.norm(r - base_features, axis=1)) / scale)
          for r in resampled]
