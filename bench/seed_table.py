"""Claims over seeds: per claim "held in k of n", each seed's decoder-side
margin with its 95% interval, and the share of the paper's rung pooled over
seeds; beside it each seed's reconstruction, KID and active units.

    python bench/seed_table.py results/celeba_small_seed{0,1,2}/test_metrics.json

Reads the metrics.json files ``main.py --mode=evaluate`` wrote (one per
seed, same recipe, same split) and prints a Markdown table; ``--out``
writes the same as JSON (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vlae_jax import files  # noqa: E402  pylint: disable=g-import-not-at-top


def load(paths):
  runs = []
  for path in paths:
    try:
      with open(path) as f:
        runs.append(json.load(f))
    except (OSError, ValueError) as e:
      sys.exit(f"cannot read {path}: {e}; give metrics.json files written "
               "by main.py --mode=evaluate.")
  splits = {r.get("split", "test") for r in runs}
  if len(splits) > 1:
    sys.exit(f"the files measure different splits {sorted(splits)}; give "
             "one split's files.")
  return runs


def summarise(runs, names):
  """``{"claims": [...], "runs": [...]}`` over the seeds."""
  claims = []
  for k, verdict in enumerate(runs[0].get("decoder_claims", [])):
    per_seed = [r["decoder_claims"][k] for r in runs]
    assert all(v["claim"] == verdict["claim"] for v in per_seed)
    rung = verdict["expected_rung"]
    shares = [v["share"][rung] for v in per_seed if v.get("share")]
    claims.append({
        "claim": verdict["claim"], "factor": verdict["factor"],
        "expected_rung": rung,
        "held": sum(bool(v.get("held")) for v in per_seed),
        "seeds": len(per_seed),
        "per_seed": [{"run": n, "held": v.get("held"),
                      "best_rung": v.get("best_rung"),
                      "margin": v.get("margin"),
                      "margin_interval": v.get("margin_interval")}
                     for n, v in zip(names, per_seed)],
        "share_of_expected_rung": {
            "mean": float(np.mean(shares)) if shares else None,
            "min": float(np.min(shares)) if shares else None,
            "max": float(np.max(shares)) if shares else None}})
  per_run = []
  for name, r in zip(names, runs):
    row = {"run": name, "step": r["step"], "l1": r["l1"],
           "active_units": r["active_units"], "latent_dims": r["latent_dims"]}
    quality = r.get("sample_quality")
    if quality:
      row["kid_samples"] = quality["kid_samples"]["mean"]
    top = r.get("digit_knn_rungs_and_above") or r.get(
        "class_knn_rungs_and_above")
    if r.get("factors", {}).get("digit"):
      row["top_rung_digit_knn"] = r["factors"]["digit"]["knn_accuracy"][-1]
    if top:
      row["class_knn_all_rungs"] = top[0]
    per_run.append(row)
  return {"split": runs[0].get("split", "test"), "claims": claims,
          "runs": per_run}


def markdown(summary) -> str:
  lines = ["| claim (paper's rung) | held | margin per seed [95% interval] "
           "| share of the paper's rung, mean (min-max) |",
           "| --- | --- | --- | --- |"]
  for c in summary["claims"]:
    margins = "; ".join(
        ("n/a" if s["margin"] is None else
         f"{s['margin']:+.2f} [{s['margin_interval'][0]:+.2f}, "
         f"{s['margin_interval'][1]:+.2f}]"
         + ("" if s["held"] else
            " (interval reaches 0)" if s["best_rung"] == c["expected_rung"]
            else f" (rung {s['best_rung']})"))
        for s in c["per_seed"])
    share = c["share_of_expected_rung"]
    share_text = ("n/a" if share["mean"] is None else
                  f"{share['mean']:.2f} ({share['min']:.2f}-{share['max']:.2f})")
    lines.append(f"| {c['claim']} ({c['expected_rung']}) | "
                 f"{c['held']}/{c['seeds']} | {margins} | {share_text} |")
  lines += ["", "| run | step | L1 | KID of samples | active units | "
            "top-rung digit kNN |", "| --- | --- | --- | --- | --- | --- |"]
  for r in summary["runs"]:
    kid = r.get("kid_samples")
    knn = r.get("top_rung_digit_knn")
    lines.append(
        f"| {r['run']} | {r['step']} | {r['l1']:.4f} | "
        f"{'n/a' if kid is None else f'{kid:.3f}'} | "
        f"{sum(r['active_units'])}/{sum(r['latent_dims'])} | "
        f"{'n/a' if knn is None else f'{knn:.3f}'} |")
  return "\n".join(lines)


def report(split, table, out, data):
  """Prints the split and the table; with ``out``, writes ``data`` there as
  JSON (atomically). Shared by the bench scripts that read metrics.json."""
  print(f"split: {split}\n")
  print(table)
  if out:
    files.write_atomically(out, json.dumps(data, indent=1))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("metrics", nargs="+", help="metrics.json, one per seed")
  parser.add_argument("--out", help="also write the summary as JSON here")
  args = parser.parse_args()
  names = [os.path.basename(os.path.dirname(os.path.abspath(p)))
           for p in args.metrics]
  summary = summarise(load(args.metrics), names)
  report(summary["split"], markdown(summary), args.out, summary)


if __name__ == "__main__":
  main()
