"""The ablation table: several models (the MMD ladder, the KL ladder, the
single code) over their seeds, one row each.

    python bench/ablation_table.py \
        "MMD ladder=results/mnist_hierarchy_seed*/test_metrics.json" \
        "single code=results/mnist_vae_seed*/test_metrics.json" --out table.json

Each argument is ``NAME=GLOB``: the metrics.json files ``main.py
--mode=evaluate`` wrote for one model's seeds (one split for all). Per model:
the seeds, active units per rung (the paper's "under-used latent features":
a unit is active when its posterior mean's variance over the split's images
exceeds 0.01; mean over seeds), reconstruction L1, KID of prior samples,
top-rung digit kNN (MNIST), each as mean (min-max) over seeds, and per claim
of the paper how many seeds hold it on the decoder side ("no code" where
the model has no code in the claim's rung, "one code" where the claim's rung
holds the model's only code: it moves every factor the model keeps, so the
claim's margin is 1 by construction and says nothing). ``--out`` writes it
as JSON (atomically).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from seed_table import load, report  # noqa: E402  pylint: disable=g-import-not-at-top


def spread(values):
  """``{"mean", "min", "max", "n"}`` of the values that exist, or None."""
  values = [float(v) for v in values if v is not None]
  if not values:
    return None
  return {"mean": float(np.mean(values)), "min": float(np.min(values)),
          "max": float(np.max(values)), "n": len(values)}


def summarise_model(name, runs):
  dims = runs[0]["latent_dims"]
  if any(r["latent_dims"] != dims for r in runs):
    sys.exit(f"{name}: the files hold models of different rungs "
             f"({[r['latent_dims'] for r in runs]}); give one model's seeds.")
  coded_rungs = [rung for rung, size in enumerate(dims) if size > 0]
  claims = []
  for k, first in enumerate(runs[0].get("decoder_claims", [])):
    rung = first["expected_rung"]
    untestable = ("no code" if dims[rung] == 0 else
                  "one code" if len(coded_rungs) == 1 else None)
    claims.append({
        "claim": first["claim"], "expected_rung": rung,
        "held": (None if untestable else
                 sum(bool(r["decoder_claims"][k].get("held")) for r in runs)),
        "untestable": untestable, "seeds": len(runs)})
  def top_knn(r):
    knn = r.get("factors", {}).get("digit", {}).get("knn_accuracy")
    return knn[-1] if knn else None
  return {
      "model": name, "seeds": len(runs), "latent_dims": dims,
      "steps": sorted({r["step"] for r in runs}),
      "active_units": [float(np.mean([r["active_units"][l] for r in runs]))
                       for l in range(len(dims))],
      "l1": spread([r["l1"] for r in runs]),
      "kid_samples": spread([(r.get("sample_quality") or {}).get(
          "kid_samples", {}).get("mean") for r in runs]),
      "top_rung_digit_knn": spread([top_knn(r) for r in runs]),
      "claims": claims}


def _cell(stats, digits=3):
  if stats is None:
    return "n/a"
  text = f"{stats['mean']:.{digits}f}"
  if stats["n"] > 1:
    text += f" ({stats['min']:.{digits}f}-{stats['max']:.{digits}f})"
  return text


def markdown(models) -> str:
  claim_names = [c["claim"] for c in models[0]["claims"]]
  lines = ["| model | seeds | active units per rung | L1 | KID of samples "
           "| top-rung digit kNN | " + " | ".join(
               f"{c} ({r['expected_rung']})" for c, r in
               zip(claim_names, models[0]["claims"])) + " |",
           "| --- " * (6 + len(claim_names)) + "|"]
  for m in models:
    units = " / ".join("-" if d == 0 else f"{u:g}/{d}" for u, d in
                       zip(m["active_units"], m["latent_dims"]))
    held = [c["untestable"] or f"{c['held']}/{c['seeds']}"
            for c in m["claims"]]
    lines.append(f"| {m['model']} | {m['seeds']} | {units} | "
                 f"{_cell(m['l1'], 4)} | {_cell(m['kid_samples'])} | "
                 f"{_cell(m['top_rung_digit_knn'])} | " + " | ".join(held)
                 + " |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("models", nargs="+",
                      help="NAME=GLOB of one model's metrics.json files")
  parser.add_argument("--out", help="also write the table as JSON here")
  args = parser.parse_args()
  models, splits = [], set()
  for spec in args.models:
    name, sep, pattern = spec.partition("=")
    paths = sorted(glob.glob(pattern)) if sep else []
    if not paths:
      sys.exit(f"{spec!r}: give NAME=GLOB matching metrics.json files (no "
               "file matched).")
    runs = load(paths)
    splits |= {r.get("split", "test") for r in runs}
    models.append(summarise_model(name, runs))
  if len(splits) > 1:
    sys.exit(f"the models were measured on different splits "
             f"{sorted(splits)}; give one split's files.")
  if len({tuple(c["claim"] for c in m["claims"]) for m in models}) > 1:
    sys.exit("the models were judged on different claims (other data "
             "sets?); give one data set's files.")
  report(splits.pop(), markdown(models), args.out, models)


if __name__ == "__main__":
  main()
