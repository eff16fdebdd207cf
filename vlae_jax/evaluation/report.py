"""The report: ``metrics.json``, a readable ``metrics.txt`` and the
heatmaps, written atomically."""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from vlae_jax import factors, files, plotting
from vlae_jax import workdir as workdirs
from vlae_jax.evaluation import arithmetic, domains
from vlae_jax.evaluation.context import Run


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
  split = metrics.get("split", "test")  # reports before splits said "test"
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
        f"of {verifier['train_identities']} people): AUC on real {split} faces "
        f"{verifier['test_auc_real_faces']:.3f} over "
        f"{verifier['same_pairs']} same-person pairs")
  decoder = metrics.get("decoder", {}).get("resample")
  if decoder:
    lines += ["", f"decoder side: share of each factor's change when one rung "
              f"is resampled ({decoder['images']} {split} images x "
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
                 + " ".join({True: "yes", False: "NO", None: "n/a"}[p["held"]]
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
              f"cause, on the real {split} faces (std units; its own cause >= "
              f"{factors.SPECIFICITY_RATIO:g}x the others)",
              "factor".ljust(24) + "".join(f"{c:>15}" for c in causes)]
    for factor in domains.of(metrics["dataset"]).claim_causes:
      lines.append(factor.ljust(24) + "".join(
          _cell(specificity[factor][c], 15, 3) for c in causes))
  quality = metrics.get("sample_quality")
  if quality:
    kid = quality["kid_samples"]
    floor = quality["kid_reconstructions"]

    def kid_text(entry):
      if "interval" not in entry:  # written before intervals existed
        return f"{entry['mean']:.4f} +- {entry['std']:.4f}"
      low, high = entry["interval"]
      return f"{entry['mean']:.4f} [{low:.4f}, {high:.4f}]"

    lines += ["", f"KID, prior samples vs {split}: {kid_text(kid)}; "
              f"reconstructions vs {split}: {kid_text(floor)} "
              f"({quality['images']} images; interval: 95% of "
              f"{kid.get('interval_subset_size', 0)}-image subsets; "
              f"classifier accuracy on the {split} images "
              f"{quality['classifier_test_accuracy']:.3f})",
              "resampling one rung moves features".ljust(32) + "".join(
                  _cell(v) for v in quality["resampling_shift"])]
    if "resampling_digit_change" in quality:
      thing = domains.of(metrics.get("dataset", "digits")).class_name
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
  lines.append(f"{'MMD^2 (codes vs prior)':24}"
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


def write(run: Run, metrics: Dict, out_dir: Optional[str] = None
          ) -> List[str]:
  """Writes the report under ``out_dir`` (default ``<workdir>/eval``, and
  ``eval/validation/`` for the validation split, never over ``eval/``);
  prints the table; returns the paths written."""
  out = out_dir or workdirs.output_dir(run.workdir, "evaluate")
  if run.split != "test" and not out_dir:
    out = os.path.join(out, run.split)
  paths = [os.path.join(out, "metrics.json"), os.path.join(out, "metrics.txt")]
  # NaN (an attribute absent from the test split) is written as null.
  files.write_atomically(paths[0], json.dumps(
      json.loads(json.dumps(metrics).replace("NaN", "null")), indent=1))
  text = format_table(metrics)
  files.write_atomically(paths[1], text)
  print(text)
  rung_names = [f"rung {l}" for l in range(run.model.num_rungs)]
  probe = metrics["probe"]
  if probe:
    paths.append(plotting.save_heatmap(
        os.path.join(out, "probe_heatmap.png"),
        np.array(list(probe.values())), list(probe), rung_names,
        title=f"linear probe {metrics['probe_metric']} per rung",
        vmin=0.0 if run.has_classes else 0.5, vmax=1.0))
  names, heat = factor_heatmap_rows(metrics["factors"])
  paths.append(plotting.save_heatmap(
      os.path.join(out, "factor_heatmap.png"), heat, names, rung_names,
      title="what each rung predicts (kNN R^2 / accuracy / AUC)",
      vmin=0.0, vmax=1.0))
  resample = metrics["decoder"]["resample"]["factors"]
  paths.append(plotting.save_heatmap(
      os.path.join(out, "decoder_heatmap.png"),
      np.asarray([resample[f]["share"] for f in resample]), list(resample),
      rung_names, title="share of each factor that resampling a rung changes",
      vmin=0.0, vmax=1.0))
  if "arithmetic" in metrics and metrics["arithmetic"]["attributes"]:
    paths.append(arithmetic.arithmetic_figure(
        os.path.join(out, "arithmetic.png"), run.model, run.variables,
        run.test_images, run.test_means, metrics["arithmetic"]))
  return paths
