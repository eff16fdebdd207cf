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
  the 40 attributes for CelebA.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence

import jax
import numpy as np

from vlae_jax import analysis, input_pipeline, plotting, train

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


def _sampled_codes(model, variables, images, key, batch_size=256):
  fn = jax.jit(lambda v, x, k: model.apply(
      v, x, train=False, sample=True, method=model.encode,
      rngs={"noise": k})[2])
  chunks = [fn(variables, images[i:i + batch_size], jax.random.fold_in(key, i))
            for i in range(0, len(images), batch_size)]
  return [np.concatenate([np.asarray(c[l]) for c in chunks])
          for l in range(model.num_rungs)]


def _reconstruction(model, variables, config, images, batch_size=256):
  fn = jax.jit(lambda v, x: model.apply(
      v, model.apply(v, x, train=False, sample=False, method=model.encode)[0],
      train=False, method=model.decode))
  configured, l1 = [], []
  for i in range(0, len(images), batch_size):
    x = np.asarray(images[i:i + batch_size])
    logits = fn(variables, x)
    configured.append(np.asarray(train.reconstruction_loss(
        config.loss.reconstruction, logits, x)))
    l1.append(np.asarray(train.reconstruction_loss("l1", logits, x)))
  return float(np.mean(np.concatenate(configured))), float(
      np.mean(np.concatenate(l1)))


def format_table(metrics: Dict) -> str:
  rungs = len(metrics["mmd"])
  lines = [f"workdir: {metrics['workdir']}  step: {metrics['step']}  "
           f"test images: {metrics['test_images']}",
           f"reconstruction ({metrics['reconstruction_loss']}): "
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
  return "\n".join(lines) + "\n"


def evaluate(workdir: str, probe_train_size: int = 10000, seed: int = 0
             ) -> List[str]:
  """Writes ``eval/metrics.json``, ``eval/metrics.txt`` and the heatmap."""
  config, model, state = analysis.load_experiment(workdir)
  variables = analysis.variables_of(state)
  test = input_pipeline.load_split(config, "test")
  train_split = input_pipeline.load_split(config, "train")
  test_images = np.asarray(test.images, np.float32) / 255.0
  key = jax.random.PRNGKey(seed)
  recon, l1 = _reconstruction(model, variables, config, test_images)
  samples = _sampled_codes(model, variables, test_images, key)
  mmds = [float(v) for v in jax.device_get(train.aggregate_mmd(
      samples, config.loss.kernel, jax.random.fold_in(key, 1)))]
  test_means = analysis.encode_means(model, variables, test_images)
  rows = np.random.default_rng(seed).permutation(len(train_split))[
      :probe_train_size]
  rows.sort()
  train_means = analysis.encode_means(model, variables,
                                      train_split.batch(rows)["image"])
  train_labels = train_split.labels[rows]
  probe: Dict[str, List[float]] = {}
  if test.label_key == "label":
    probe["digit accuracy"] = [
        probe_score(tr, train_labels, te, test.labels, seed=seed)
        for tr, te in zip(train_means, test_means)]
  else:
    for a, name in enumerate(test.label_names):
      probe[name] = [probe_score(tr, train_labels[:, a], te, test.labels[:, a],
                                 balanced=True, seed=seed)
                     for tr, te in zip(train_means, test_means)]
  metrics = {
      "workdir": workdir, "step": int(state.step),
      "test_images": len(test), "reconstruction_loss":
      config.loss.reconstruction, "reconstruction": recon, "l1": l1,
      "mmd": mmds, "latent_dims": list(model.latent_dims),
      "active_units": [active_units(m) for m in test_means],
      "probe_metric": ("accuracy" if test.label_key == "label"
                       else "balanced accuracy"),
      "probe_train_images": len(rows), "probe": probe}
  out = os.path.join(workdir, "eval")
  os.makedirs(out, exist_ok=True)
  paths = [os.path.join(out, "metrics.json"), os.path.join(out, "metrics.txt")]
  with open(paths[0], "w") as f:
    # NaN (an attribute absent from the test split) is written as null.
    json.dump(json.loads(json.dumps(metrics).replace("NaN", "null")), f,
              indent=1)
  table = format_table(metrics)
  with open(paths[1], "w") as f:
    f.write(table)
  print(table)
  values = np.array(list(probe.values()))
  low = 0.0 if test.label_key == "label" else 0.5
  paths.append(plotting.save_heatmap(
      os.path.join(out, "probe_heatmap.png"), values, list(probe),
      [f"rung {l}" for l in range(model.num_rungs)],
      title=f"linear probe {metrics['probe_metric']} per rung",
      vmin=low, vmax=1.0))
  return paths
