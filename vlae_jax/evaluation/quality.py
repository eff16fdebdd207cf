"""Sample quality: KID of decoded prior samples and of reconstructions
against the split's images, in the features of a classifier trained on the
train split, and how far resampling one rung moves them."""

from __future__ import annotations

from typing import Dict

import jax
import numpy as np

from vlae_jax import inference, sample_quality
from vlae_jax.evaluation.context import Run


def sample_quality_metrics(model, variables, classifier, params, test_split,
                           key, count: int = 5000, seed: int = 0) -> Dict:
  """KID of prior samples and of reconstructions against test images, and the
  per-rung resampling shift (``vlae_jax.sample_quality``), on up to
  ``count`` test images, in the features of ``classifier``."""
  rows = np.sort(np.random.default_rng(seed).permutation(len(test_split))[
      :count])
  real = np.asarray(test_split.images[rows])
  labels = test_split.labels[rows]
  real_features, real_logits = sample_quality.features(classifier, params,
                                                       real)
  means = inference.encode_means(model, variables,
                                np.asarray(real, np.float32) / 255.0)
  samples = inference.decode_images(model, variables, inference.prior_codes(
      model, jax.random.fold_in(key, 2), len(rows)))
  recon = inference.decode_images(model, variables, means)
  sample_features, _ = sample_quality.features(classifier, params, samples)
  recon_features, recon_logits = sample_quality.features(classifier, params,
                                                         recon)
  # One scale for every feature set (the RMS entry of the real features), so
  # KID's kernel (a.b / d + 1)^3 sees entries of order 1.
  scale = float(np.sqrt(np.mean(np.square(real_features)))) or 1.0
  real_features = real_features / scale
  sample_features = sample_features / scale
  recon_features = recon_features / scale
  prior = inference.prior_codes(model, jax.random.fold_in(key, 3), len(rows))
  resampled_features, digit_changed = [], []
  for l in range(model.num_rungs):
    codes = list(means)
    codes[l] = np.asarray(prior[l])
    f, logits = sample_quality.features(
        classifier, params, inference.decode_images(model, variables, codes))
    resampled_features.append(f / scale)
    if labels.ndim == 1:
      digit_changed.append(float(np.mean(
          np.argmax(logits, 1) != np.argmax(recon_logits, 1))))
  out = {
      "classifier_test_accuracy": sample_quality.classifier_accuracy(
          real_logits, labels),
      "images": len(rows),
      "kid_samples": sample_quality.kid(sample_features, real_features,
                                        seed=seed),
      "kid_reconstructions": sample_quality.kid(recon_features, real_features,
                                                seed=seed),
      "resampling_shift": sample_quality.resampling_shift(
          recon_features, resampled_features, real_features, seed=seed)}
  if digit_changed:
    out["resampling_digit_change"] = digit_changed
  return out


def measure(run: Run, classifier_steps: int, count: int, metrics: Dict):
  """Trains the feature classifier, records sample quality in
  ``metrics``, and returns ``classify(images) -> logits``."""
  classifier, params = sample_quality.train_classifier(
      run.train_split.images, run.train_split.labels, steps=classifier_steps,
      seed=run.seed)
  metrics["classifier_steps"] = classifier_steps
  metrics["sample_quality"] = sample_quality_metrics(
      run.model, run.variables, classifier, params, run.test, run.key,
      count=count, seed=run.seed)
  return lambda x: sample_quality.features(classifier, params, x)[1]
