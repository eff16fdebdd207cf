"""Numbers for what each rung learned, on the test split.

``evaluate(workdir)`` writes ``<workdir>/eval/metrics.json``, a readable
``metrics.txt`` and heatmaps. On a folder or TFDS data set
(``datasets.kind`` "images") the pixel factors are ``factors.image_factors``,
the probes and classifier need its labels, and the paper's claims are
skipped; every skipped part is one ``skipped:`` line saying why.
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
from typing import Dict, List, Optional, Sequence, Tuple

import jax
import numpy as np

from vlae_jax import (datasets, experiment, factors, files, inference,
                      intervention, objective, plotting, sample_quality)
from vlae_jax import workdir as workdirs

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


# Attributes scored by face arithmetic (paper Fig. 4).
ARITHMETIC_ATTRIBUTES = ("Male", "Pale_Skin", "Smiling", "Blond_Hair",
                         "Eyeglasses", "Black_Hair", "Mouth_Slightly_Open")
# Identities with fewer train faces than this do not train the verifier.
VERIFIER_MIN_FACES = 5


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


EVALUATION_SPLITS = ("test", "validation")

# Fewer test images than this on the decoder side: a bootstrap interval
# over so few is printed with a caveat.
MIN_IMAGES_FOR_INTERVALS = 20

PIXEL_FACTORS = {"digits": factors.mnist_factors,
                 "faces": factors.celeba_factors,
                 "images": factors.image_factors}


def decoder_measure(pixel_factors, classify=None, class_name=None,
                    label_names=(), attribute_names=(), embed=None):
  """The factors measured on decoded images for ``vlae_jax.intervention``:
  the pixel factors (``pixel_factors(images) -> {name: [n]}``); with a
  classifier (``classify(images) -> logits``), the class probabilities
  under ``class_name`` (a class-labelled set: "digit", "class") or each
  of ``attribute_names``' probability (an attribute-labelled set whose
  attributes are ``label_names``); with ``embed``, the identity
  embedding."""
  def measure(images):
    out = dict(pixel_factors(images))
    if classify is not None:
      logits = np.asarray(classify(images), np.float64)
      if class_name:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        out[class_name] = e / e.sum(axis=1, keepdims=True)
      else:
        for name in attribute_names:
          if name in label_names:
            k = list(label_names).index(name)
            out[name] = 1.0 / (1.0 + np.exp(-logits[:, k]))
    if embed is not None:
      out["identity"] = embed(images)
    return out
  return measure


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


def _cell(value, width=10, digits=3) -> str:
  if value is None or not np.isfinite(value):
    return f"{'n/a':>{width}}"
  return f"{value:{width}.{digits}f}"


def _interval_cell(value, interval, width=18) -> str:
  if value is None or not np.isfinite(value):
    return f"{'n/a':>{width}}"
  low, high = interval
  return f"{value:.2f} [{low:.2f},{high:.2f}]".rjust(width)


def format_factors(metrics: Dict) -> List[str]:
  """The rung x factor tables (encoder side with its controls, decoder
  side with intervals), both sides of each claim, sample quality and the
  face arithmetic table."""
  lines = []
  rungs = len(metrics["mmd"])
  controls = metrics.get("factor_controls")
  if "factors" in metrics:
    columns = [f"rung {l}" for l in range(rungs)]
    if controls:
      columns += controls["columns"]
    lines += ["", "encoder side: what each rung's codes predict "
              "(controls: pixel PCA holds the pixels, random codes nothing)",
              "factor (metric)".ljust(32)
              + "".join(f"{c[:12]:>13}" for c in columns)]
    for factor, by_metric in metrics["factors"].items():
      for metric, scores in by_metric.items():
        if metric == "same_pairs":
          continue
        row = list(scores)
        if controls:
          row += list(controls["table"].get(factor, {}).get(
              metric, [None] * (len(controls["columns"]) - 1)))
          noisy = controls["factor_plus_noise"].get(factor)
          row.append(noisy if metric == "knn_r2" else None)
        lines.append(f"{factor} ({metric})"[:32].ljust(32)
                     + "".join(_cell(v, 13) for v in row))
  for name in ("digit", "class"):
    if f"{name}_knn_rungs_and_above" in metrics:
      lines.append(f"{name} (knn, this rung and above)"[:32].ljust(32)
                   + "".join(_cell(v, 13) for v in
                             metrics[f"{name}_knn_rungs_and_above"]))
  verifier = metrics.get("identity_verifier")
  if verifier:
    lines.append(
        f"identity verifier (trained on {verifier['train_faces']} train faces "
        f"of {verifier['train_identities']} people): AUC on real test faces "
        f"{verifier['test_auc_real_faces']:.3f} over "
        f"{verifier['same_pairs']} same-person pairs")
  decoder = metrics.get("decoder", {}).get("resample")
  if decoder:
    lines += ["", f"decoder side: share of each factor's change when one rung "
              f"is resampled ({decoder['images']} test images x "
              f"{decoder['draws']} draws; 95% bootstrap interval); "
              f"'all' = spread of prior samples / spread of real images",
              "factor".ljust(22) + "".join(f"{f'rung {l}':>18}"
                                           for l in range(rungs))
              + f"{'all':>7}"]
    for factor, stats in decoder["factors"].items():
      lines.append(factor[:22].ljust(22) + "".join(
          _interval_cell(v, i) for v, i in zip(stats["share"],
                                               stats["share_interval"]))
          + _cell(stats["all_rungs"], 7, 2))
    c = decoder["controls"]
    lines.append("statistic controls: a rung's own code held by that rung "
                 + " ".join("yes" if p["held"] else "NO"
                            for p in c["positive"])
                 + "; independent noise held by a rung: "
                 + ("YES" if c["negative"]["held_by_any"] else "no"))
  if metrics.get("claims"):
    lines.append("")
    decoder_claims = {v["claim"]: v for v in metrics.get("decoder_claims", [])}
    name = {True: "HELD", False: "NOT HELD", None: "n/a"}
    for verdict in metrics["claims"]:
      side = decoder_claims.get(verdict["claim"])
      if side is not None and side.get("held") is not None:
        low, high = side["margin_interval"]
        lines.append(
            f"claim: {verdict['claim']}: {name[side['held']]} "
            f"(decoder: most control in rung {side['best_rung']}, "
            f"margin {side['margin']:+.2f} [{low:+.2f},{high:+.2f}])")
      else:
        lines.append(f"claim: {verdict['claim']}: n/a on the decoder side")
      detail = ("" if verdict.get("best_rung") is None else
                f" (best: rung {verdict['best_rung']}; "
                f"{verdict['metric']} {verdict['scores']})")
      lines.append(f"       encoder side: {name[verdict['held']]}{detail}")
  specificity = metrics.get("factor_specificity")
  if specificity:
    causes = list(next(iter(specificity.values())))
    lines += ["", "each claim factor's response to an edit of each claim's "
              "cause, on the real test faces (std units; its own cause >= "
              f"{factors.SPECIFICITY_RATIO:g}x the others)",
              "factor".ljust(24) + "".join(f"{c:>15}" for c in causes)]
    for factor in factors.CELEBA_CLAIM_CAUSES:
      lines.append(factor.ljust(24) + "".join(
          _cell(specificity[factor][c], 15, 3) for c in causes))
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
      thing = ("digit" if datasets.kind(metrics.get("dataset", "digits"))
               == "digits" else "class")
      lines.append(f"resampling one rung: {thing} changes".ljust(32)
                   + "".join(
          _cell(v) for v in quality["resampling_digit_change"]))
  arithmetic = metrics.get("arithmetic")
  if arithmetic and arithmetic["attributes"]:
    methods = list(next(iter(arithmetic["attributes"].values()))["methods"])
    lines += ["", "face arithmetic z_c + z_a - z_b (a has X, b lacks it, c "
              "lacks it): rate the result shows X / agreement with c on the "
              "other attributes",
              "attribute".ljust(20) + "".join(f"{m:>13}" for m in methods)]
    for attribute, entry in arithmetic["attributes"].items():
      lines.append(f"{attribute} ({entry['triples']})"[:20].ljust(20) + "".join(
          f"{r['transfer']:.2f} / {r['kept']:.2f}".rjust(13)
          for r in entry["methods"].values()))
  return lines


def format_table(metrics: Dict) -> str:
  rungs = len(metrics["mmd"])
  lines = [f"workdir: {metrics['workdir']}  step: {metrics['step']}  "
           f"{metrics.get('split', 'test')} images: "
           f"{metrics['test_images']}",
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
  lines += [f"skipped: {reason}." for reason in metrics.get("skipped", ())]
  lines += [f"caveat: {text}." for text in metrics.get("caveats", ())]
  return "\n".join(lines) + "\n"


def evaluate(workdir: str, probe_train_size: int = 10000, seed: int = 0,
             out_dir: Optional[str] = None, classifier_steps: int = 1000,
             quality_images: int = 5000, decoder_images: int = 500,
             decoder_draws: int = 8, arithmetic_triples: int = 200,
             split: str = "test") -> List[str]:
  """Writes ``eval/metrics.json``, ``eval/metrics.txt``, the probe, factor
  and decoder-control heatmaps (under ``out_dir`` instead of
  ``<workdir>/eval`` if given); returns their paths. ``classifier_steps=0``
  skips everything that needs the trained classifier (KID, the classifier
  factors of the decoder side, face arithmetic).

  ``split``: the held-out images measured, "test" (reported results) or
  "validation" (choosing recipes, budgets and factor definitions; written
  under ``eval/validation/``). Below, "test" names whichever it is.
  """
  if split not in EVALUATION_SPLITS:
    raise ValueError(f"split {split!r}: use one of {EVALUATION_SPLITS}.")
  config, model, state = experiment.load_experiment(workdir)
  variables = inference.variables_of(state)
  test = datasets.load_split(config, split)
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
  data_kind = datasets.kind(config.dataset)
  is_digits = data_kind == "digits"
  pixel_factors = PIXEL_FACTORS[data_kind]
  has_classes = test.label_key == "label"
  has_attributes = test.label_key == "attributes"
  class_name = ("digit" if is_digits else "class") if has_classes else None
  # The attributes of the factor table, the decoder side and arithmetic.
  attribute_names = ((CELEBA_ATTRIBUTE_FACTORS if data_kind == "faces"
                      else tuple(test.label_names)) if has_attributes else ())
  skipped = []
  if not (has_classes or has_attributes):
    skipped.append("probes, KID and the classifier's factors: the data set "
                   "has no labels (a labels CSV adds them, configs/folder.py)")
  if data_kind == "images":
    skipped.append(f"the paper's claims: they are about MNIST and CelebA, "
                   f"not {config.dataset}")
  controls = control_codes(train_images, test_images,
                           max(model.latent_dims), seed)
  control_names = list(controls)

  def probes(train_codes, test_codes, names):
    if has_classes:
      return {f"{class_name} accuracy": [
          probe_score(tr, train_labels, te, test.labels, seed=seed)
          for tr, te in zip(train_codes, test_codes)]}
    return {name: [probe_score(tr, train_labels[:, a], te, test.labels[:, a],
                               balanced=True, seed=seed)
                   for tr, te in zip(train_codes, test_codes)]
            for a, name in enumerate(test.label_names) if name in names}

  probe = probes(train_means, test_means, test.label_names)
  control_train = [controls[c][0] for c in control_names]
  control_test = [controls[c][1] for c in control_names]
  # The controls only for the attributes of the factor table.
  control_probe = probes(control_train, control_test, attribute_names)
  identities = train_identities = None
  if data_kind == "faces" and config.get("data_dir"):
    identities = datasets.celeba_identities(config.data_dir, split,
                                            len(test))
    train_identities = datasets.celeba_identities(
        config.data_dir, "train", len(train_split))
  table = factor_table(pixel_factors, train_means, train_images,
                       train_labels, test_means, test_images, test.labels,
                       probe, class_name, attribute_names,
                       identities=identities, seed=seed)
  control_table = factor_table(pixel_factors, control_train, train_images,
                               train_labels, control_test, test_images,
                               test.labels, control_probe, class_name,
                               attribute_names, identities=identities,
                               seed=seed)
  noisy = noisy_factor_scores(table, pixel_factors(train_images),
                              pixel_factors(test_images), seed)
  upper_rungs = None
  if has_classes:
    # Whether the class is in the model but split over rungs: the class
    # kNN of rungs l..top concatenated, for each l.
    upper_rungs = [factors.classification_scores(
        np.concatenate(train_means[l:], axis=1), train_labels,
        np.concatenate(test_means[l:], axis=1), test.labels,
        seed=seed)["knn"] for l in range(model.num_rungs)]
  claim_list = {"digits": factors.MNIST_CLAIMS,
                "faces": factors.CELEBA_CLAIMS}.get(data_kind, ())
  claims = factors.judge_claims(table, claim_list, model.num_rungs)
  metrics = {
      "workdir": workdir, "step": int(state.step),
      "dataset": config.dataset, "skipped": skipped,
      "split": split, "test_images": len(test), "reconstruction_loss":
      config.loss.reconstruction, "reconstruction": recon, "l1": l1,
      "mmd": mmds, "latent_dims": list(model.latent_dims),
      "active_units": [active_units(m) for m in test_means],
      "probe_metric": ("accuracy" if has_classes else "balanced accuracy"),
      "probe_train_images": len(rows), "probe": probe,
      "factors": table, "claims": claims,
      "factor_controls": {"columns": control_names + ["factor + noise"],
                          "table": control_table, "factor_plus_noise": noisy}}
  if upper_rungs is not None:
    metrics[f"{class_name}_knn_rungs_and_above"] = upper_rungs
  if data_kind == "faces":
    metrics["factor_specificity"] = factors.specificity(test_images)
  classify = embed = None
  if classifier_steps > 0 and (has_classes or has_attributes):
    classifier, params = sample_quality.train_classifier(
        train_split.images, train_split.labels, steps=classifier_steps,
        seed=seed)
    metrics["classifier_steps"] = classifier_steps
    classify = lambda x: sample_quality.features(classifier, params, x)[1]
    metrics["sample_quality"] = sample_quality_metrics(
        model, variables, classifier, params, test, key,
        count=quality_images, seed=seed)
    verifiable = train_identities is not None and identities is not None
    if verifiable:
      _, counts = np.unique(train_identities, return_counts=True)
      if np.sum(counts >= VERIFIER_MIN_FACES) < 2:
        verifiable = False
        skipped.append(
            f"the identity claim: fewer than 2 train identities have "
            f"{VERIFIER_MIN_FACES} or more faces, too few to train the "
            "same-person verifier")
    if verifiable:
      embed, people, faces = identity_verifier(
          train_split.images, train_identities, steps=classifier_steps,
          seed=seed)
      verifier = factors.verification_auc(embed(test.images), identities,
                                          seed=seed)
      metrics["identity_verifier"] = {
          "train_identities": people, "train_faces": faces,
          "test_auc_real_faces": verifier["auc"],
          "same_pairs": verifier["same_pairs"]}
  # The decoder side: what resampling (and sweeping) each rung changes.
  count = min(decoder_images, len(test))
  chosen = np.sort(np.random.default_rng(seed + 7).permutation(len(test))[
      :count])
  # An attribute no train image has (or every one has) teaches the
  # classifier nothing: its probability on decoded images means nothing,
  # and its spread over real images is rounding, so it is not measured.
  constant_attributes = []
  if has_attributes:
    names = list(train_split.label_names)
    constant_attributes = [
        n for n in attribute_names if n in names and np.unique(
            np.asarray(train_split.labels)[:, names.index(n)]).size < 2]
  measure = decoder_measure(
      pixel_factors, classify, class_name, test.label_names,
      [n for n in attribute_names if n not in constant_attributes], embed)
  decoder = {}
  for mode in intervention.MODES:
    decoder[mode] = intervention.rung_control(
        model, variables, [m[chosen] for m in test_means], test_images,
        measure, jax.random.fold_in(key, 11), draws=decoder_draws,
        mode=mode, seed=seed)
  metrics["decoder_claims"] = intervention.judge_claims(decoder["resample"],
                                                        claim_list)
  caveats = []
  if constant_attributes:
    caveats.append(
        f"{', '.join(constant_attributes)} "
        f"{'is' if len(constant_attributes) == 1 else 'are'} constant over "
        f"the {len(train_split)} train images: not measured on the decoder "
        "side")
  constant = sorted(name for name, stats in
                    decoder["resample"]["factors"].items()
                    if stats.get("constant_over_real_images"))
  if constant:
    caveats.append(
        f"{', '.join(constant)} {'is' if len(constant) == 1 else 'are'} "
        f"constant over the {len(test_images)} real test images: "
        "decoder-side values unscaled, no claim judged on them")
  if count < MIN_IMAGES_FOR_INTERVALS:
    caveats.append(
        f"the decoder side uses {count} test images: its 95% intervals "
        f"need at least {MIN_IMAGES_FOR_INTERVALS} to mean much")
  metrics["caveats"] = caveats
  metrics["decoder"] = {m: intervention.public(t) for m, t in decoder.items()}
  if classify is not None and has_attributes:
    metrics["arithmetic"] = intervention.arithmetic_table(
        model, variables, test_images, test_means, test.labels,
        test.label_names,
        ARITHMETIC_ATTRIBUTES if data_kind == "faces"
        else attribute_names[:len(ARITHMETIC_ATTRIBUTES)], classify,
        triples_per_attribute=arithmetic_triples, seed=seed)
  out = out_dir or workdirs.output_dir(workdir, "evaluate")
  if split != "test" and not out_dir:
    out = os.path.join(out, split)  # eval/validation/: never over eval/
  paths = [os.path.join(out, "metrics.json"), os.path.join(out, "metrics.txt")]
  # NaN (an attribute absent from the test split) is written as null.
  files.write_atomically(paths[0], json.dumps(
      json.loads(json.dumps(metrics).replace("NaN", "null")), indent=1))
  text = format_table(metrics)
  files.write_atomically(paths[1], text)
  print(text)
  rung_names = [f"rung {l}" for l in range(model.num_rungs)]
  if probe:
    paths.append(plotting.save_heatmap(
        os.path.join(out, "probe_heatmap.png"),
        np.array(list(probe.values())), list(probe), rung_names,
        title=f"linear probe {metrics['probe_metric']} per rung",
        vmin=0.0 if has_classes else 0.5, vmax=1.0))
  names, heat = factor_heatmap_rows(table)
  paths.append(plotting.save_heatmap(
      os.path.join(out, "factor_heatmap.png"), heat, names, rung_names,
      title="what each rung predicts (kNN R^2 / accuracy / AUC)",
      vmin=0.0, vmax=1.0))
  factor_names = list(decoder["resample"]["factors"])
  paths.append(plotting.save_heatmap(
      os.path.join(out, "decoder_heatmap.png"),
      np.asarray([decoder["resample"]["factors"][f]["share"]
                  for f in factor_names]), factor_names, rung_names,
      title="share of each factor that resampling a rung changes",
      vmin=0.0, vmax=1.0))
  if "arithmetic" in metrics and metrics["arithmetic"]["attributes"]:
    paths.append(arithmetic_figure(
        os.path.join(out, "arithmetic.png"), model, variables, test_images,
        test_means, metrics["arithmetic"]))
  return paths


def arithmetic_figure(path: str, model, variables, images: np.ndarray,
                      means: Sequence[np.ndarray], arithmetic: Dict,
                      per_attribute: int = 2) -> str:
  """Paper Fig. 4 from the scored triples (fixed seed, not picked by hand):
  per row a, b, c, c decoded, decode(z_c + z_a - z_b) and the pixel
  arithmetic, for the first ``per_attribute`` triples of each attribute."""
  rows = [t for a in arithmetic["attributes"].values()
          for t in a["first_triples"][:per_attribute]]
  a, b, c = np.asarray(rows).T
  decoded_c = inference.decode_images(model, variables,
                                      [m[c] for m in means])
  result = inference.decode_images(
      model, variables, [m[c] + m[a] - m[b] for m in means])
  pixels = np.clip(images[a] - images[b] + images[c], 0.0, 1.0)
  grid = np.stack([images[a], images[b], images[c], decoded_c, result,
                   pixels], axis=1)
  return plotting.save_png(path, plotting.image_grid(grid))


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
