"""Same-person verification: an embedding trained on the train split's
identities, which the identity claim's decoder-side measure uses."""

from __future__ import annotations

from typing import Dict

import numpy as np

from vlae_jax import factors, sample_quality
from vlae_jax.evaluation import encoder
from vlae_jax.evaluation.context import Run

# Identities with fewer train faces than this do not train the verifier.
VERIFIER_MIN_FACES = 5


def identity_verifier(images: np.ndarray, identities: np.ndarray,
                      steps: int = 1000, seed: int = 0):
  """A same-person embedding trained on the train split's identities.

  A ``FeatureClassifier`` learns to tell apart the identities with at least
  ``VERIFIER_MIN_FACES`` faces in ``images [n, H, W, 3]`` (uint8; softmax
  over identities); its features, L2-normalised, embed a face. CelebA's
  splits share no identity, so the test faces are people it never saw.
  Returns ``(embed(images) -> [m, FEATURE_DIM], identities used, faces)``.
  """
  ids, counts = np.unique(identities, return_counts=True)
  kept = ids[counts >= VERIFIER_MIN_FACES]
  rows = np.flatnonzero(np.isin(identities, kept))
  labels = np.searchsorted(kept, identities[rows])
  classifier, params = sample_quality.train_classifier(
      images[rows], labels, steps=steps, seed=seed)

  def embed(x):
    f, _ = sample_quality.features(classifier, params, x)
    return f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-8)
  return embed, len(kept), len(rows)


def measure(run: Run, classifier_steps: int, metrics: Dict):
  """The verifier's embedding (None where the data has no identities or
  too few); records its AUC on the real test faces in ``metrics``."""
  train_identities, identities = encoder.identity_labels(run)
  if train_identities is None or identities is None:
    return None
  _, counts = np.unique(train_identities, return_counts=True)
  if np.sum(counts >= VERIFIER_MIN_FACES) < 2:
    run.skipped.append(
        f"the identity claim: fewer than 2 train identities have "
        f"{VERIFIER_MIN_FACES} or more faces, too few to train the "
        "same-person verifier")
    return None
  embed, people, faces = identity_verifier(
      run.train_split.images, train_identities, steps=classifier_steps,
      seed=run.seed)
  verifier = factors.verification_auc(embed(run.test.images), identities,
                                      seed=run.seed)
  metrics["identity_verifier"] = {
      "train_identities": people, "train_faces": faces,
      "test_auc_real_faces": verifier["auc"],
      "same_pairs": verifier["same_pairs"]}
  return embed
