"""Image factors measured from pixels, and how well each rung's code predicts
them: the paper's per-rung claims as numbers.

Every factor is a documented closed-form function of the image alone (no
model), so a rung x factor table says which rung's code holds which visible
property. Images are ``[n, H, W, C]`` floats in [0, 1] (uint8 is scaled).

MNIST (``mnist_factors``), with ink ``x`` (the pixel values), ink mask
``x > 0.5``, rows ``r`` growing downwards and columns ``c``:

- ``thickness``: ``2 * A / P`` with ``A`` the number of ink pixels and ``P``
  the number of pixel edges between ink and background (4-neighbourhood). For
  a stroke of width ``w`` and length ``L >> w``, ``A = w L`` and ``P ~ 2 L``,
  so this is the stroke width in pixels.
- ``inclination``: the second-moment shear ``-mu_rc / mu_rr`` of the ink
  (``mu_rc = sum x (r - r0)(c - c0)``, ``mu_rr = sum x (r - r0)^2``): the
  horizontal shift of the ink per pixel of height, positive when the top
  leans right. It is the shear that MNIST deskewing removes.
- ``ink``: the ink mass ``sum x`` (pixels).
- ``width``, ``height``: the ink's standard deviation along columns / rows
  (``sqrt(mu_cc / m)``, ``sqrt(mu_rr / m)``, pixels).

CelebA (``celeba_factors``), on aligned crops of any size, luminance
``Y = 0.299 R + 0.587 G + 0.114 B``; the face region is the central box rows
[0.35, 0.85) x columns [0.3, 0.7) of the image (cheeks, nose, mouth: skin in
aligned faces), the hair region rows [0, 0.15) x columns [0.3, 0.7):

- lighting: ``brightness`` (mean Y of the image) and ``light_direction``
  (mean Y of the face region's left half minus its right half);
- white balance: ``warmth`` (mean R - mean B of the image), ``tint``
  (mean G - (mean R + mean B) / 2 of the image) and ``warmth_ratio`` (log
  mean R - log mean B of the image: the light's colour apart from its
  strength, which scales R - B);
- face colour: ``face_redness`` (R / (R + G + B) of the face region, mean) and
  ``face_luminance`` (mean Y of the face region);
- hair colour: ``hair_luminance`` (mean Y of the hair region) and
  ``hair_warmth`` (mean R - mean B of the hair region);
- the same, unmoved by the light: ``hair_relative_luminance`` (log mean Y
  of the hair region minus log mean Y of the image; a gain on the whole
  image leaves it as it is) and ``face_relative_redness`` (log mean R /
  mean G of the face region minus the same of the image; so does a gain
  per channel).

The CelebA claims (``CELEBA_CLAIMS``) separate the light from the colours
of the things it falls on, as colour constancy does: lighting is measured by
``brightness``, white balance by ``warmth_ratio`` (a gain on the whole image
leaves it as it is), hair and face colour by the two relative factors (the
face's by both gains, the hair's by the overall one). ``specificity`` gives
the evidence on real faces: each claim's factor answers an edit of its own
cause (``CELEBA_CAUSES``) at least 4x as strongly as the other claims'
causes; warmth, hair_luminance and face_redness, the claims' first factors,
do not (warmth answers the light at half its own response, hair_luminance
at two thirds, face_redness answers white balance as much as the face's
colour).

Any other images (``image_factors``; a folder or TFDS data set), grayscale
or RGB, luminance ``Y`` as above (the pixel value itself for one channel):

- ``brightness`` (mean Y) and ``contrast`` (standard deviation of Y);
- ``left_right`` and ``top_bottom``: mean Y of the left (top) half minus the
  right (bottom) half: where the light or the mass of the picture sits;
- RGB only: ``warmth`` and ``tint`` as for CelebA, and ``saturation`` (mean
  of max(R, G, B) - min(R, G, B)).

Identity (same-person verification) and expression (Smiling,
Mouth_Slightly_Open) come from CelebA's labels, not pixels; see ``evaluate``.

How well a rung predicts a factor: ``regression_scores`` fits on train codes
and scores R^2 on test codes with a k-nearest-neighbour regressor (k = 10,
standardised codes) and a linear regression; ``classification_scores`` gives
kNN and logistic-regression accuracy for digit identity.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

KNN_NEIGHBOURS = 10


def _as_float(images) -> np.ndarray:
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  return images.astype(np.float32)


def mnist_factors(images) -> Dict[str, np.ndarray]:
  """Per image ``[n]`` factors of ``images [n, H, W, 1]`` (module docstring).

  A blank image gets thickness, inclination, width and height 0.
  """
  x = _as_float(images)[..., 0]
  n, height, width = x.shape
  mask = x > 0.5
  area = mask.sum(axis=(1, 2)).astype(np.float64)
  padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
  edges = (np.sum(padded[:, 1:, :] != padded[:, :-1, :], axis=(1, 2))
           + np.sum(padded[:, :, 1:] != padded[:, :, :-1], axis=(1, 2)))
  thickness = np.where(edges > 0, 2.0 * area / np.maximum(edges, 1), 0.0)
  rows = np.arange(height, dtype=np.float64)[None, :, None]
  cols = np.arange(width, dtype=np.float64)[None, None, :]
  mass = x.sum(axis=(1, 2)).astype(np.float64)
  safe = np.maximum(mass, 1e-12)
  r0 = (x * rows).sum(axis=(1, 2)) / safe
  c0 = (x * cols).sum(axis=(1, 2)) / safe
  dr = rows - r0[:, None, None]
  dc = cols - c0[:, None, None]
  mu_rr = (x * dr * dr).sum(axis=(1, 2))
  mu_cc = (x * dc * dc).sum(axis=(1, 2))
  mu_rc = (x * dr * dc).sum(axis=(1, 2))
  blank = mass < 1e-6
  inclination = np.where(blank | (mu_rr <= 0), 0.0,
                         -mu_rc / np.maximum(mu_rr, 1e-12))
  return {
      "thickness": thickness,
      "inclination": inclination,
      "ink": mass,
      "width": np.where(blank, 0.0, np.sqrt(mu_cc / safe)),
      "height": np.where(blank, 0.0, np.sqrt(mu_rr / safe)),
  }


def _box_index(shape, rows, cols):
  """The index of the box ``rows`` x ``cols`` (fractions of the height and
  width) in every image of an array of ``shape [n, H, W, C]``."""
  h, w = shape[1:3]
  return (slice(None), slice(round(rows[0] * h), round(rows[1] * h)),
          slice(round(cols[0] * w), round(cols[1] * w)))


def _box(images, rows, cols):
  return images[_box_index(images.shape, rows, cols)]


FACE_BOX = ((0.35, 0.85), (0.3, 0.7))
HAIR_BOX = ((0.0, 0.15), (0.3, 0.7))


def luminance(images: np.ndarray) -> np.ndarray:
  """``Y = 0.299 R + 0.587 G + 0.114 B`` of ``[..., 3]``: ``[...]``."""
  weights = np.asarray([0.299, 0.587, 0.114], images.dtype)
  return images @ weights


def celeba_factors(images) -> Dict[str, np.ndarray]:
  """Per image ``[n]`` factors of RGB ``images [n, H, W, 3]`` (module
  docstring)."""
  x = _as_float(images)
  mean = lambda a, axes: a.mean(axis=axes, dtype=np.float64)
  mean_rgb = mean(x, (1, 2))
  face = _box(x, *FACE_BOX)
  hair = _box(x, *HAIR_BOX)
  face_y = luminance(face)
  half = face.shape[2] // 2
  face_rgb = mean(face, (1, 2))
  hair_rgb = mean(hair, (1, 2))
  chroma = face[..., 0] / np.maximum(face.sum(axis=-1), 1e-6)
  log = lambda a: np.log(np.maximum(a, 1e-3))  # black regions stay finite
  return {
      "brightness": luminance(mean_rgb),
      "light_direction": (mean(face_y[:, :, :half], (1, 2))
                          - mean(face_y[:, :, half:], (1, 2))),
      "warmth": mean_rgb[:, 0] - mean_rgb[:, 2],
      "tint": mean_rgb[:, 1] - (mean_rgb[:, 0] + mean_rgb[:, 2]) / 2,
      "face_redness": mean(chroma, (1, 2)),
      "face_luminance": luminance(face_rgb),
      "hair_luminance": luminance(hair_rgb),
      "hair_warmth": hair_rgb[:, 0] - hair_rgb[:, 2],
      "hair_relative_luminance": (log(luminance(hair_rgb))
                                  - log(luminance(mean_rgb))),
      "face_relative_redness": (log(face_rgb[:, 0]) - log(face_rgb[:, 1])
                                - log(mean_rgb[:, 0]) + log(mean_rgb[:, 1])),
      "warmth_ratio": log(mean_rgb[:, 0]) - log(mean_rgb[:, 2]),
  }


def _scale_region(images: np.ndarray, region, gains) -> np.ndarray:
  """``images [n, H, W, 3]`` in [0, 1] with the box ``region`` (row and
  column fractions) scaled per channel by ``gains``, clipped to [0, 1]."""
  out = images.copy()
  out[_box_index(out.shape, *region)] *= np.asarray(gains, images.dtype)
  return np.clip(out, 0.0, 1.0)


WHOLE_IMAGE = ((0.0, 1.0), (0.0, 1.0))
HAIR_BAND = ((0.0, 0.2), (0.0, 1.0))  # aligned faces' hair (and background)
# The cause behind each CelebA claim as a closed-form edit of aligned faces
# (``[n, H, W, 3]`` in [0, 1] -> same): a dimmer light, a warmer light,
# darker hair, redder skin. Each moves its claim's factor by 0.5-1.6 of that
# factor's standard deviation over the subset's 660 test faces.
CELEBA_CAUSES = {
    "lighting": lambda x: _scale_region(x, WHOLE_IMAGE, (0.8, 0.8, 0.8)),
    "white balance": lambda x: _scale_region(x, WHOLE_IMAGE, (1.1, 1.0, 0.9)),
    "hair colour": lambda x: _scale_region(x, HAIR_BAND, (0.7, 0.7, 0.7)),
    "face colour": lambda x: _scale_region(x, FACE_BOX, (1.1, 0.95, 0.95)),
}
# Which cause each claim's factor must answer (CELEBA_CLAIMS' factors).
CELEBA_CLAIM_CAUSES = {"brightness": "lighting",
                       "warmth_ratio": "white balance",
                       "hair_relative_luminance": "hair colour",
                       "face_relative_redness": "face colour"}
SPECIFICITY_RATIO = 4.0


def specificity(images) -> Dict[str, Dict[str, float]]:
  """How strongly each CelebA factor answers each of ``CELEBA_CAUSES``:
  ``[factor][cause]`` = mean over ``images [n, H, W, 3]`` of
  ``|f(edit(x)) - f(x)|``, in units of the factor's standard deviation over
  the images (>= 0; 0 when the factor ignores the edit).

  A factor measures its claim's cause specifically when it answers that
  cause at least ``SPECIFICITY_RATIO`` times as strongly as every other.
  """
  x = _as_float(images)
  before = celeba_factors(x)
  after = {cause: celeba_factors(edit(x))
           for cause, edit in CELEBA_CAUSES.items()}
  return {name: {cause: float(np.mean(np.abs(after[cause][name] - values))
                              / max(np.std(values), 1e-12))
                 for cause in CELEBA_CAUSES}
          for name, values in before.items()}


def image_factors(images) -> Dict[str, np.ndarray]:
  """Per image ``[n]`` factors of any ``images [n, H, W, C]`` with C = 1 or
  3 (module docstring)."""
  x = _as_float(images)
  y = luminance(x) if x.shape[-1] == 3 else x[..., 0]
  h, w = y.shape[1:3]
  mean = lambda a: a.mean(axis=(1, 2), dtype=np.float64)
  out = {"brightness": mean(y), "contrast": y.std(axis=(1, 2),
                                                  dtype=np.float64),
         "left_right": mean(y[:, :, :w // 2]) - mean(y[:, :, w - w // 2:]),
         "top_bottom": mean(y[:, :h // 2]) - mean(y[:, h - h // 2:])}
  if x.shape[-1] == 3:
    rgb = x.mean(axis=(1, 2), dtype=np.float64)
    out["warmth"] = rgb[:, 0] - rgb[:, 2]
    out["tint"] = rgb[:, 1] - (rgb[:, 0] + rgb[:, 2]) / 2
    out["saturation"] = mean(x.max(axis=-1) - x.min(axis=-1))
  return out


def _standardised(train_codes, test_codes):
  mean = train_codes.mean(axis=0)
  std = train_codes.std(axis=0) + 1e-8
  return (train_codes - mean) / std, (test_codes - mean) / std


def r_squared(truth: np.ndarray, predicted: np.ndarray) -> float:
  """``1 - SSE / SST`` on the scored rows (negative: worse than the mean)."""
  truth = np.asarray(truth, np.float64)
  total = np.sum((truth - truth.mean()) ** 2)
  if total <= 0:
    return float("nan")
  return float(1.0 - np.sum((truth - predicted) ** 2) / total)


def regression_scores(train_codes, train_values, test_codes, test_values
                      ) -> Dict[str, float]:
  """Test R^2 of a kNN (k = 10) and a linear regression from codes
  ``[n, dim]`` to one factor ``[n]``, fitted on the train rows."""
  if np.shape(train_codes)[1] == 0:  # a rung without a code predicts nothing
    return {"knn": float("nan"), "linear": float("nan")}
  from sklearn.linear_model import LinearRegression
  from sklearn.neighbors import KNeighborsRegressor
  train_codes, test_codes = _standardised(np.asarray(train_codes, np.float64),
                                          np.asarray(test_codes, np.float64))
  knn = KNeighborsRegressor(n_neighbors=min(KNN_NEIGHBOURS, len(
      train_codes))).fit(train_codes, train_values)
  linear = LinearRegression().fit(train_codes, train_values)
  return {"knn": r_squared(test_values, knn.predict(test_codes)),
          "linear": r_squared(test_values, linear.predict(test_codes))}


def classification_scores(train_codes, train_labels, test_codes, test_labels,
                          seed: int = 0) -> Dict[str, float]:
  """Test accuracy of a kNN (k = 10) and a logistic-regression classifier
  from codes ``[n, dim]`` to integer labels ``[n]``."""
  if np.shape(train_codes)[1] == 0:  # a rung without a code predicts nothing
    return {"knn": float("nan"), "linear": float("nan")}
  from sklearn.linear_model import LogisticRegression
  from sklearn.neighbors import KNeighborsClassifier
  train_codes, test_codes = _standardised(np.asarray(train_codes, np.float64),
                                          np.asarray(test_codes, np.float64))
  knn = KNeighborsClassifier(n_neighbors=min(KNN_NEIGHBOURS, len(
      train_codes))).fit(train_codes, train_labels)
  linear = LogisticRegression(max_iter=1000, random_state=seed).fit(
      train_codes, train_labels)
  return {"knn": float(np.mean(knn.predict(test_codes) == test_labels)),
          "linear": float(np.mean(linear.predict(test_codes) == test_labels))}


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
  """Area under the ROC curve of ``scores`` for boolean ``positive``: the
  probability that a random positive outscores a random negative (ties
  count half). NaN without both classes."""
  scores = np.asarray(scores, np.float64)
  positive = np.asarray(positive, bool)
  n_pos, n_neg = positive.sum(), (~positive).sum()
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  order = np.argsort(scores, kind="mergesort")
  ranks = np.empty(len(scores), np.float64)
  sorted_scores = scores[order]
  # Average ranks over ties.
  boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
  starts = np.concatenate([[0], boundaries])
  ends = np.concatenate([boundaries, [len(scores)]])
  for s, e in zip(starts, ends):
    ranks[order[s:e]] = (s + e + 1) / 2.0
  return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2)
               / (n_pos * n_neg))


def verification_pairs(identities: np.ndarray, negatives_per_positive: int = 10,
                       seed: int = 0):
  """Index pairs ``(a [p], b [p], same [p])``: every same-identity pair of
  the rows, plus ``negatives_per_positive`` times as many random
  different-identity pairs."""
  identities = np.asarray(identities)
  first, second = [], []
  order = np.argsort(identities, kind="mergesort")
  sorted_ids = identities[order]
  boundaries = np.flatnonzero(np.diff(sorted_ids)) + 1
  for group in np.split(order, boundaries):
    for i in range(len(group)):
      for j in range(i + 1, len(group)):
        first.append(group[i])
        second.append(group[j])
  positives = len(first)
  rng = np.random.default_rng(seed)
  wanted = negatives_per_positive * max(positives, 1)
  neg_a, neg_b = [], []
  while len(neg_a) < wanted and len(identities) > 1:
    a = rng.integers(0, len(identities), wanted)
    b = rng.integers(0, len(identities), wanted)
    keep = identities[a] != identities[b]
    neg_a.extend(a[keep])
    neg_b.extend(b[keep])
  neg_a, neg_b = neg_a[:wanted], neg_b[:wanted]
  a = np.asarray(first + list(neg_a), np.int64)
  b = np.asarray(second + list(neg_b), np.int64)
  same = np.concatenate([np.ones(positives, bool), np.zeros(len(neg_a), bool)])
  return a, b, same


def verification_auc(codes: np.ndarray, identities: np.ndarray,
                     seed: int = 0) -> Dict[str, float]:
  """Same-person verification from one rung's codes ``[n, dim]``: ROC AUC of
  the negative Euclidean distance between standardised codes, over every
  same-identity pair and 10x as many different-identity pairs."""
  a, b, same = verification_pairs(identities, seed=seed)
  if not same.any() or np.shape(codes)[1] == 0:
    return {"auc": float("nan"), "same_pairs": 0}
  codes = np.asarray(codes, np.float64)
  codes = (codes - codes.mean(axis=0)) / (codes.std(axis=0) + 1e-8)
  distance = np.linalg.norm(codes[a] - codes[b], axis=1)
  return {"auc": roc_auc(-distance, same), "same_pairs": int(same.sum())}


def best_rung(scores: Sequence[float]) -> int:
  """The rung with the highest finite score (-1 if none)."""
  values = np.asarray(scores, np.float64)
  if not np.isfinite(values).any():
    return -1
  return int(np.nanargmax(np.where(np.isfinite(values), values, -np.inf)))


# The paper's claims (seed, Figs. 2 and 3) as (factor, metric, rung) checks:
# "held" when that rung scores best of all rungs on that factor. Rungs are
# counted from the bottom; -1 is the top rung.
MNIST_CLAIMS = (
    ("stroke width lives in the bottom rung", "thickness", "knn_r2", 0),
    ("inclination lives in the middle rung", "inclination", "knn_r2", 1),
    ("digit identity lives in the top rung", "digit", "knn_accuracy", -1),
)
# CelebA's colour claims are measured as the module docstring says: the
# light apart from what it falls on (``specificity``).
CELEBA_CLAIMS = (
    ("lighting lives in the bottom rung", "brightness", "knn_r2", 0),
    ("white balance lives in the bottom rung", "warmth_ratio", "knn_r2", 0),
    ("hair and face colour live in the second rung",
     "hair_relative_luminance", "knn_r2", 1),
    ("face colour lives in the second rung", "face_relative_redness",
     "knn_r2", 1),
    ("identity lives in the third rung", "identity", "verification_auc", 2),
    ("expression lives in the top rung", "Smiling", "balanced_accuracy", -1),
)


def judge_claims(table: Dict[str, Dict[str, List[float]]], claims, num_rungs
                 ) -> List[Dict]:
  """One verdict per claim: the rung each factor is best predicted by.

  ``table[factor][metric]`` is a per-rung list of scores. A claim about rung
  r holds when r scores highest; the verdict names the scores.
  """
  verdicts = []
  for text, factor, metric, rung in claims:
    scores = table.get(factor, {}).get(metric)
    if scores is None:
      verdicts.append({"claim": text, "factor": factor, "metric": metric,
                       "held": None, "why": "not measured"})
      continue
    want = rung % num_rungs
    best = best_rung(scores)
    verdicts.append({
        "claim": text, "factor": factor, "metric": metric,
        "expected_rung": want, "best_rung": best,
        "scores": [None if not np.isfinite(s) else round(float(s), 4)
                   for s in scores],
        "held": bool(best == want) if best >= 0 else None})
  return verdicts
