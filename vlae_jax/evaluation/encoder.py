"""The encoder side: what each rung's posterior means predict, beside
codes that surely hold the pixel factors and codes that surely hold
nothing; and the split's reconstruction, MMD and active units."""

from __future__ import annotations

from typing import Dict, List, Tuple

import jax
import numpy as np

from vlae_jax import factors, inference, objective
from vlae_jax.evaluation.context import Run

ACTIVE_UNIT_THRESHOLD = 0.01


def active_units(means: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD
                 ) -> int:
  """Number of dimensions of ``means [n, dim]`` whose variance exceeds it."""
  return int(np.sum(np.var(means, axis=0) > threshold))


def probe_score(train_codes: np.ndarray, train_labels: np.ndarray,
                test_codes: np.ndarray, test_labels: np.ndarray,
                balanced: bool = False, seed: int = 0) -> float:
  """Test (balanced) accuracy of a logistic-regression probe on the codes.

  With ``balanced`` the classes are weighted inversely to their frequency (so
  a rare attribute is not ignored) and the score is balanced accuracy. A label
  with one class in the training rows gives chance; one with a single class in
  the test rows has no balanced accuracy: NaN.
  """
  from sklearn.linear_model import LogisticRegression
  from sklearn.metrics import accuracy_score, balanced_accuracy_score
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  if (balanced and len(np.unique(test_labels)) < 2) or \
      np.shape(train_codes)[1] == 0:  # or a rung without a code
    return float("nan")
  if len(np.unique(train_labels)) < 2:
    return 0.5 if balanced else float(np.mean(test_labels == train_labels[0]))
  probe = make_pipeline(StandardScaler(), LogisticRegression(
      max_iter=500, random_state=seed,
      class_weight="balanced" if balanced else None))
  probe.fit(train_codes, train_labels)
  predicted = probe.predict(test_codes)
  score = balanced_accuracy_score if balanced else accuracy_score
  return float(score(test_labels, predicted))


def pixel_pca(train_images: np.ndarray, test_images: np.ndarray, dims: int
              ) -> Tuple[np.ndarray, np.ndarray]:
  """Codes ``[n, dims]`` of the first ``dims`` principal components of the
  train images' pixels: a representation that holds whatever the pixels'
  main directions hold (the positive control of the encoder-side scores)."""
  from sklearn.decomposition import PCA
  flat = lambda x: np.asarray(x, np.float32).reshape(len(x), -1)
  pca = PCA(n_components=dims, random_state=0).fit(flat(train_images))
  return pca.transform(flat(train_images)), pca.transform(flat(test_images))


def control_codes(train_images, test_images, dims: int, seed: int = 0
                  ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """Codes that surely hold the pixel factors (``pixel PCA``, ``dims``
  components) and that surely hold nothing (``random``: N(0, I) codes of
  the same size, independent of the images)."""
  rng = np.random.default_rng(seed)
  pca = pixel_pca(train_images, test_images, dims)
  return {"pixel PCA": pca,
          "random": (rng.standard_normal((len(train_images), dims)),
                     rng.standard_normal((len(test_images), dims)))}


def noisy_factor_scores(table, train_values, test_values, seed: int = 0
                        ) -> Dict[str, float]:
  """kNN R^2 of a 1-D code equal to the factor plus Gaussian noise of the
  factor's own standard deviation (signal-to-noise 1): the score of a code
  that surely holds the factor, with R^2 near 0.5."""
  rng = np.random.default_rng(seed)
  out = {}
  for name in table:
    if name not in train_values:
      continue
    tr, te = train_values[name], test_values[name]
    sd = float(np.std(tr)) or 1.0
    out[name] = factors.regression_scores(
        (tr + sd * rng.standard_normal(len(tr)))[:, None], tr,
        (te + sd * rng.standard_normal(len(te)))[:, None], te)["knn"]
  return out


def factor_table(pixel_factors, train_means, train_images, train_labels,
                 test_means, test_images, test_labels, probe,
                 class_name=None, attribute_names=(), identities=None,
                 seed: int = 0) -> Dict[str, Dict[str, List[float]]]:
  """``table[factor][metric]``: one score per rung (``vlae_jax.factors``).

  Codes are posterior means; regressions and classifiers are fitted on the
  train rows and scored on the test rows. Metrics: ``knn_r2`` /
  ``linear_r2`` (the ``pixel_factors``), ``knn_accuracy`` /
  ``linear_accuracy`` (the class, named ``class_name``, of a class-labelled
  set), ``verification_auc`` (with ``identities``), ``balanced_accuracy``
  (``attribute_names``' linear probes, from ``probe``).
  """
  table: Dict[str, Dict[str, List[float]]] = {}
  if class_name:
    scores = [factors.classification_scores(tr, train_labels, te, test_labels,
                                            seed=seed)
              for tr, te in zip(train_means, test_means)]
    table[class_name] = {"knn_accuracy": [s["knn"] for s in scores],
                         "linear_accuracy": [s["linear"] for s in scores]}
  train_values = pixel_factors(train_images)
  test_values = pixel_factors(test_images)
  for name in train_values:
    scores = [factors.regression_scores(tr, train_values[name], te,
                                        test_values[name])
              for tr, te in zip(train_means, test_means)]
    table[name] = {"knn_r2": [s["knn"] for s in scores],
                   "linear_r2": [s["linear"] for s in scores]}
  if identities is not None:
    results = [factors.verification_auc(te, identities, seed=seed)
               for te in test_means]
    table["identity"] = {"verification_auc": [r["auc"] for r in results],
                         "same_pairs": [r["same_pairs"] for r in results]}
  for name in attribute_names:
    if name in probe:
      table[name] = {"balanced_accuracy": list(probe[name])}
  return table


def measure(run: Run) -> Dict:
  """Reconstruction (the configured loss and L1) of the posterior means,
  per-rung MMD^2 of the aggregated posterior samples against N(0, I),
  active units, linear probes, the factor table with its controls (pixel
  PCA, random codes, factor + noise), the class kNN of rungs l..top, and
  the paper's claims judged on the encoder side."""
  model, variables, config, seed = run.model, run.variables, run.config, \
      run.seed
  configured, l1 = inference.reconstruction_errors(
      model, variables, run.test_images, config.loss.reconstruction)
  samples = inference.sample_codes(model, variables, run.test_images,
                                   run.key)
  mmds = [float(v) for v in jax.device_get(objective.aggregate_mmd(
      samples, config.loss.kernel, jax.random.fold_in(run.key, 1)))]
  controls = control_codes(run.train_images, run.test_images,
                           max(model.latent_dims), seed)
  control_names = list(controls)
  test = run.test

  def probes(train_codes, test_codes, names):
    if run.has_classes:
      return {f"{run.class_name} accuracy": [
          probe_score(tr, run.train_labels, te, test.labels, seed=seed)
          for tr, te in zip(train_codes, test_codes)]}
    return {name: [probe_score(tr, run.train_labels[:, a], te,
                               test.labels[:, a], balanced=True, seed=seed)
                   for tr, te in zip(train_codes, test_codes)]
            for a, name in enumerate(test.label_names) if name in names}

  probe = probes(run.train_means, run.test_means, test.label_names)
  control_train = [controls[c][0] for c in control_names]
  control_test = [controls[c][1] for c in control_names]
  # The controls only for the attributes of the factor table.
  control_probe = probes(control_train, control_test, run.attribute_names)
  identities = identity_labels(run)[1]
  pixel_factors = run.domain.pixel_factors
  table, control_table = (
      factor_table(pixel_factors, train, run.train_images, run.train_labels,
                   tests, run.test_images, test.labels, probes_, run.class_name,
                   run.attribute_names, identities=identities, seed=seed)
      for train, tests, probes_ in ((run.train_means, run.test_means, probe),
                                    (control_train, control_test,
                                     control_probe)))
  noisy = noisy_factor_scores(table, pixel_factors(run.train_images),
                              pixel_factors(run.test_images), seed)
  metrics = {
      "reconstruction_loss": config.loss.reconstruction,
      "reconstruction": float(np.mean(configured)),
      "l1": float(np.mean(l1)), "mmd": mmds,
      "latent_dims": list(model.latent_dims),
      "active_units": [active_units(m) for m in run.test_means],
      "probe_metric": ("accuracy" if run.has_classes
                       else "balanced accuracy"),
      "probe_train_images": len(run.train_rows), "probe": probe,
      "factors": table,
      "claims": factors.judge_claims(table, run.domain.claims,
                                     model.num_rungs),
      "factor_controls": {"columns": control_names + ["factor + noise"],
                          "table": control_table, "factor_plus_noise": noisy}}
  if run.has_classes:
    # Whether the class is in the model but split over rungs: the class
    # kNN of rungs l..top concatenated, for each l.
    metrics[f"{run.class_name}_knn_rungs_and_above"] = [
        factors.classification_scores(
            np.concatenate(run.train_means[l:], axis=1), run.train_labels,
            np.concatenate(run.test_means[l:], axis=1), test.labels,
            seed=seed)["knn"] for l in range(model.num_rungs)]
  if run.domain.claim_causes:
    metrics["factor_specificity"] = factors.specificity(run.test_images)
  return metrics


def identity_labels(run: Run):
  """``(train identities, test identities)`` of a local CelebA-layout run
  (None each where the data has none)."""
  if not (run.domain.identities and run.config.get("data_dir")):
    return None, None
  from vlae_jax import datasets
  return (datasets.celeba_identities(run.config.data_dir, "train",
                                     len(run.train_split)),
          datasets.celeba_identities(run.config.data_dir, run.split,
                                     len(run.test)))
