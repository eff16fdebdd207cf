"""Numbers for what each rung learned, on the test split.

``evaluate(workdir)`` writes ``<workdir>/eval/metrics.json``, a readable
``metrics.txt`` and ``probe_heatmap.png``:
- reconstruction error of the posterior means (the configured loss, and L1);
- per rung, MMD^2 between the aggregated posterior samples of the whole test
  split and as many N(0, I) samples (blockwise, so any split size fits);
- per rung, active units: dimensions whose posterior mean varies (variance
  over the test split > 0.01);
- per rung, a linear probe (logistic regression fitted on train codes, scored
  on test codes): digit accuracy for MNIST/digits, balanced accuracy of each of
  the 40 attributes for CelebA;
- the paper's per-rung claims as numbers (``vlae_jax.factors``): per rung and
  measured factor, kNN and linear scores (MNIST: digit identity, stroke
  thickness, inclination, ink, width, height; CelebA: lighting, white
  balance, face and hair colour, same-person verification AUC, expression
  attributes), drawn as ``factor_heatmap.png``, and one held / not-held line
  per claim;
- sample quality (``vlae_jax.sample_quality``): KID between decoded prior
  samples and test images in the features of a classifier trained here on
  the train split (and KID of the reconstructions, the floor a perfect
  sampler of this decoder would reach); per rung, how far resampling that
  rung alone moves the features, and (MNIST) how often it changes the
  classifier's digit.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import jax
import numpy as np

from vlae_jax import (datasets, experiment, factors, inference, objective,
                      plotting, sample_quality)

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
  if balanced and len(np.unique(test_labels)) < 2:
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


# CelebA attributes shown beside the pixel factors (hair colour, face colour,
# expression); every attribute's probe is in metrics["probe"].
CELEBA_ATTRIBUTE_FACTORS = ("Smiling", "Mouth_Slightly_Open", "Black_Hair",
                            "Blond_Hair", "Gray_Hair", "Pale_Skin", "Male")


def factor_table(is_digits: bool, train_means, train_images, train_labels,
                 test_means, test_images, test_labels, probe,
                 identities=None, seed: int = 0
                 ) -> Dict[str, Dict[str, List[float]]]:
  """``table[factor][metric]``: one score per rung (``vlae_jax.factors``).

  Codes are posterior means; regressions and classifiers are fitted on the
  train rows and scored on the test rows. Metrics: ``knn_r2`` /
  ``linear_r2`` (measured factors), ``knn_accuracy`` / ``linear_accuracy``
  (digit), ``verification_auc`` (CelebA identity), ``balanced_accuracy``
  (CelebA attributes, the linear probes).
  """
  table: Dict[str, Dict[str, List[float]]] = {}
  if is_digits:
    scores = [factors.classification_scores(tr, train_labels, te, test_labels,
                                            seed=seed)
              for tr, te in zip(train_means, test_means)]
    table["digit"] = {"knn_accuracy": [s["knn"] for s in scores],
                      "linear_accuracy": [s["linear"] for s in scores]}
    measure = factors.mnist_factors
  else:
    measure = factors.celeba_factors
  train_values, test_values = measure(train_images), measure(test_images)
  for name in train_values:
    scores = [factors.regression_scores(tr, train_values[name], te,
                                        test_values[name])
              for tr, te in zip(train_means, test_means)]
    table[name] = {"knn_r2": [s["knn"] for s in scores],
                   "linear_r2": [s["linear"] for s in scores]}
  if not is_digits:
    if identities is not None:
      results = [factors.verification_auc(te, identities, seed=seed)
                 for te in test_means]
      table["identity"] = {"verification_auc": [r["auc"] for r in results],
                           "same_pairs": [r["same_pairs"] for r in results]}
    for name in CELEBA_ATTRIBUTE_FACTORS:
      if name in probe:
        table[name] = {"balanced_accuracy": list(probe[name])}
  return table


def sample_quality_metrics(model, variables, train_split, test_split, key,
                           classifier_steps: int = 1000, count: int = 5000,
                           seed: int = 0) -> Dict:
  """KID of prior samples and of reconstructions against test images, and the
  per-rung resampling shift (``vlae_jax.sample_quality``), on up to
  ``count`` test images."""
  classifier, params = sample_quality.train_classifier(
      train_split.images, train_split.labels, steps=classifier_steps,
      seed=seed)
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
      "classifier_steps": classifier_steps,
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


def _cell(value, width=10, digits=3) -> str:
  if value is None or not np.isfinite(value):
    return f"{'n/a':>{width}}"
  return f"{value:{width}.{digits}f}"


def format_factors(metrics: Dict) -> List[str]:
  """The rung x factor table, the claims and the sample quality lines."""
  lines = []
  rungs = len(metrics["mmd"])
  if "factors" in metrics:
    lines += ["", "factor (metric)".ljust(32)
              + "".join(f"{f'rung {l}':>10}" for l in range(rungs))]
    for factor, by_metric in metrics["factors"].items():
      for metric, scores in by_metric.items():
        if metric == "same_pairs":
          continue
        lines.append(f"{factor} ({metric})"[:32].ljust(32)
                     + "".join(_cell(v) for v in scores))
  if "digit_knn_rungs_and_above" in metrics:
    lines.append("digit (knn, this rung and above)"[:32].ljust(32) + "".join(
        _cell(v) for v in metrics["digit_knn_rungs_and_above"]))
  if metrics.get("claims"):
    lines.append("")
    for verdict in metrics["claims"]:
      held = {True: "HELD", False: "NOT HELD", None: "n/a"}[verdict["held"]]
      detail = ("" if verdict.get("best_rung") is None else
                f" (best: rung {verdict['best_rung']}; "
                f"{verdict['metric']} {verdict['scores']})")
      lines.append(f"claim: {verdict['claim']}: {held}{detail}")
  quality = metrics.get("sample_quality")
  if quality:
    kid = quality["kid_samples"]
    floor = quality["kid_reconstructions"]
    lines += ["", f"KID, prior samples vs test: {kid['mean']:.4f} "
              f"+- {kid['std']:.4f}; reconstructions vs test: "
              f"{floor['mean']:.4f} +- {floor['std']:.4f} "
              f"({quality['images']} images; classifier test accuracy "
              f"{quality['classifier_test_accuracy']:.3f})",
              "resampling one rung moves features".ljust(32) + "".join(
                  _cell(v) for v in quality["resampling_shift"])]
    if "resampling_digit_change" in quality:
      lines.append("resampling one rung: digit changes".ljust(32) + "".join(
          _cell(v) for v in quality["resampling_digit_change"]))
  return lines


def format_table(metrics: Dict) -> str:
  rungs = len(metrics["mmd"])
  lines = [f"workdir: {metrics['workdir']}  step: {metrics['step']}  "
           f"test images: {metrics['test_images']}",
           f"reconstruction of posterior means "
           f"({metrics['reconstruction_loss']}): "
           f"{metrics['reconstruction']:.4f}   L1: {metrics['l1']:.4f}", "",
           f"{'':24}" + "".join(f"{f'rung {l}':>10}" for l in range(rungs))]
  lines.append(f"{'MMD^2 (test vs prior)':24}"
               + "".join(f"{v:10.5f}" for v in metrics["mmd"]))
  lines.append(f"{'active units':24}" + "".join(
      f"{f'{a}/{d}':>10}" for a, d in zip(metrics["active_units"],
                                          metrics["latent_dims"])))
  for name, scores in metrics["probe"].items():
    lines.append(f"{name[:24]:24}" + "".join(
        f"{v:10.3f}" if np.isfinite(v) else f"{'n/a':>10}" for v in scores))
  lines += format_factors(metrics)
  return "\n".join(lines) + "\n"


def evaluate(workdir: str, probe_train_size: int = 10000, seed: int = 0,
             out_dir: Optional[str] = None, classifier_steps: int = 1000,
             quality_images: int = 5000) -> List[str]:
  """Writes ``eval/metrics.json``, ``eval/metrics.txt``, the probe and
  factor heatmaps (under ``out_dir`` instead of ``<workdir>/eval`` if
  given); returns their paths. ``classifier_steps=0`` skips the sample
  quality metrics (KID)."""
  config, model, state = experiment.load_experiment(workdir)
  variables = inference.variables_of(state)
  test = datasets.load_split(config, "test")
  train_split = datasets.load_split(config, "train")
  test_images = np.asarray(test.images, np.float32) / 255.0
  key = jax.random.PRNGKey(seed)
  configured, l1 = inference.reconstruction_errors(
      model, variables, test_images, config.loss.reconstruction)
  recon, l1 = float(np.mean(configured)), float(np.mean(l1))
  samples = inference.sample_codes(model, variables, test_images, key)
  mmds = [float(v) for v in jax.device_get(objective.aggregate_mmd(
      samples, config.loss.kernel, jax.random.fold_in(key, 1)))]
  test_means = inference.encode_means(model, variables, test_images)
  rows = np.random.default_rng(seed).permutation(len(train_split))[
      :probe_train_size]
  rows.sort()
  train_images = train_split.batch(rows)["image"]
  train_means = inference.encode_means(model, variables, train_images)
  train_labels = train_split.labels[rows]
  is_digits = test.label_key == "label"
  probe: Dict[str, List[float]] = {}
  if is_digits:
    probe["digit accuracy"] = [
        probe_score(tr, train_labels, te, test.labels, seed=seed)
        for tr, te in zip(train_means, test_means)]
  else:
    for a, name in enumerate(test.label_names):
      probe[name] = [probe_score(tr, train_labels[:, a], te, test.labels[:, a],
                                 balanced=True, seed=seed)
                     for tr, te in zip(train_means, test_means)]
  identities = None
  if not is_digits and config.get("data_dir"):
    identities = datasets.celeba_identities(config.data_dir, "test",
                                                  len(test))
  table = factor_table(is_digits, train_means, train_images, train_labels,
                       test_means, test_images, test.labels, probe,
                       identities=identities, seed=seed)
  upper_rungs = None
  if is_digits:
    # Whether identity is in the model but split over rungs: the digit kNN
    # of rungs l..top concatenated, for each l.
    upper_rungs = [factors.classification_scores(
        np.concatenate(train_means[l:], axis=1), train_labels,
        np.concatenate(test_means[l:], axis=1), test.labels,
        seed=seed)["knn"] for l in range(model.num_rungs)]
  claims = factors.judge_claims(
      table, factors.MNIST_CLAIMS if is_digits else factors.CELEBA_CLAIMS,
      model.num_rungs)
  metrics = {
      "workdir": workdir, "step": int(state.step),
      "test_images": len(test), "reconstruction_loss":
      config.loss.reconstruction, "reconstruction": recon, "l1": l1,
      "mmd": mmds, "latent_dims": list(model.latent_dims),
      "active_units": [active_units(m) for m in test_means],
      "probe_metric": ("accuracy" if is_digits else "balanced accuracy"),
      "probe_train_images": len(rows), "probe": probe,
      "factors": table, "claims": claims}
  if upper_rungs is not None:
    metrics["digit_knn_rungs_and_above"] = upper_rungs
  if classifier_steps > 0:
    metrics["sample_quality"] = sample_quality_metrics(
        model, variables, train_split, test, key,
        classifier_steps=classifier_steps, count=quality_images, seed=seed)
  out = out_dir or os.path.join(workdir, "eval")
  os.makedirs(out, exist_ok=True)
  paths = [os.path.join(out, "metrics.json"), os.path.join(out, "metrics.txt")]
  with open(paths[0], "w") as f:
    # NaN (an attribute absent from the test split) is written as null.
    json.dump(json.loads(json.dumps(metrics).replace("NaN", "null")), f,
              indent=1)
  text = format_table(metrics)
  with open(paths[1], "w") as f:
    f.write(text)
  print(text)
  values = np.array(list(probe.values()))
  low = 0.0 if is_digits else 0.5
  paths.append(plotting.save_heatmap(
      os.path.join(out, "probe_heatmap.png"), values, list(probe),
      [f"rung {l}" for l in range(model.num_rungs)],
      title=f"linear probe {metrics['probe_metric']} per rung",
      vmin=low, vmax=1.0))
  names, heat = factor_heatmap_rows(table)
  paths.append(plotting.save_heatmap(
      os.path.join(out, "factor_heatmap.png"), heat, names,
      [f"rung {l}" for l in range(model.num_rungs)],
      title="what each rung predicts (kNN R^2 / accuracy / AUC)",
      vmin=0.0, vmax=1.0))
  return paths


def factor_heatmap_rows(table) -> Tuple[List[str], np.ndarray]:
  """One row per factor, its kNN score where it has one (else its only
  score); the row name says which metric."""
  names, rows = [], []
  for factor, by_metric in table.items():
    for metric in ("knn_r2", "knn_accuracy", "verification_auc",
                   "balanced_accuracy"):
      if metric in by_metric:
        names.append(f"{factor} ({metric})")
        rows.append(by_metric[metric])
        break
  return names, np.asarray(rows, np.float64)
