"""Claims along training: one run's decoder-side margins at several steps.

    python main.py --mode=evaluate --workdir=RUN --split=validation --checkpoint_step=N
    python bench/training_curve.py RUN/eval/step_*/metrics.json \
        --figure curve.png --out curve.json

Reads the metrics.json files ``main.py --mode=evaluate --checkpoint_step``
wrote for one run (one per step, one split), prints a Markdown table (per
claim and step the margin of the paper's rung over the best other rung with
its 95% interval, and whether it held; per step L1 and KID) and draws one
panel per claim: the margin against the step with its interval, 0 marked
(above 0 the paper's rung moves the factor most). ``--out`` writes the same
as JSON; both files are written atomically.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from seed_table import load, report  # noqa: E402  pylint: disable=g-import-not-at-top
from vlae_jax import files  # noqa: E402  pylint: disable=g-import-not-at-top


def summarise(runs):
  """``{"split", "steps", "claims": [{claim, expected_rung, per_step}],
  "per_step": [{step, l1, kid_samples}]}``, ordered by step."""
  runs = sorted(runs, key=lambda r: r["step"])
  steps = [r["step"] for r in runs]
  if len(set(steps)) != len(steps):
    sys.exit(f"two files measure the same step ({steps}); give one file per "
             "step of one run.")
  claims = []
  for k, first in enumerate(runs[0].get("decoder_claims", [])):
    verdicts = [r["decoder_claims"][k] for r in runs]
    assert all(v["claim"] == first["claim"] for v in verdicts)
    claims.append({
        "claim": first["claim"], "factor": first["factor"],
        "expected_rung": first["expected_rung"],
        "held_at": [s for s, v in zip(steps, verdicts) if v.get("held")],
        "per_step": [{"step": s, "held": v.get("held"),
                      "best_rung": v.get("best_rung"), "margin": v.get("margin"),
                      "margin_interval": v.get("margin_interval")}
                     for s, v in zip(steps, verdicts)]})
  per_step = []
  for r in runs:
    quality = r.get("sample_quality") or {}
    per_step.append({"step": r["step"], "l1": r["l1"],
                     "kid_samples": quality.get("kid_samples", {}).get("mean"),
                     "active_units": sum(r["active_units"])})
  return {"split": runs[0].get("split", "test"), "steps": steps,
          "claims": claims, "per_step": per_step}


def markdown(summary) -> str:
  steps = summary["steps"]
  lines = ["| claim (paper's rung) | " + " | ".join(
      f"{s:,}" for s in steps) + " |", "| --- |" + " --- |" * len(steps)]
  for c in summary["claims"]:
    cells = []
    for s in c["per_step"]:
      if s["margin"] is None:
        cells.append("n/a")
        continue
      low, high = s["margin_interval"]
      mark = ("held" if s["held"] else
              "interval reaches 0" if s["best_rung"] == c["expected_rung"]
              else f"rung {s['best_rung']}")
      cells.append(f"{s['margin']:+.2f} [{low:+.2f}, {high:+.2f}] {mark}")
    lines.append(f"| {c['claim']} ({c['expected_rung']}) | "
                 + " | ".join(cells) + " |")
  lines.append("| L1 / KID / active units | " + " | ".join(
      f"{p['l1']:.4f} / " + ("n/a" if p["kid_samples"] is None
                             else f"{p['kid_samples']:.3f}")
      + f" / {p['active_units']}" for p in summary["per_step"]) + " |")
  return "\n".join(lines)


def figure(summary, title: str) -> bytes:
  """PNG bytes: a panel per claim, margin against step, interval shaded."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  claims = summary["claims"]
  cols = min(3, len(claims))
  rows = -(-len(claims) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows),
                           squeeze=False, sharex=True)
  for ax, c in zip(axes.flat, claims):
    points = [s for s in c["per_step"] if s["margin"] is not None]
    steps = [s["step"] for s in points]
    ax.fill_between(steps, [s["margin_interval"][0] for s in points],
                    [s["margin_interval"][1] for s in points], alpha=0.3)
    ax.plot(steps, [s["margin"] for s in points], "o-")
    for s in points:
      if not s["held"] and s["best_rung"] != c["expected_rung"]:
        ax.annotate(f"r{s['best_rung']}", (s["step"], s["margin"]),
                    textcoords="offset points", xytext=(0, 6), ha="center",
                    fontsize=8)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_title(f"{c['claim']}", fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel(f"margin of rung {c['expected_rung']}")
  for ax in list(axes.flat)[len(claims):]:
    ax.axis("off")
  fig.suptitle(f"{title} ({summary['split']}; above 0: the paper's rung "
               "moves the factor most; rN: rung N does)", fontsize=10)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=110)
  plt.close(fig)
  return buffer.getvalue()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("metrics", nargs="+",
                      help="metrics.json of one run, one per step")
  parser.add_argument("--figure", help="write the curve as a PNG here")
  parser.add_argument("--title", default="claims along training")
  parser.add_argument("--out", help="also write the summary as JSON here")
  args = parser.parse_args()
  summary = summarise(load(args.metrics))
  report(summary["split"], markdown(summary), args.out, summary)
  if args.figure:
    files.write_atomically(args.figure, figure(summary, args.title))


if __name__ == "__main__":
  main()
