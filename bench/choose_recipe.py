"""Choose among recipes scored on the validation split, by a rule fixed
before the runs: the ranked table and the choice, from the files alone.

    python bench/choose_recipe.py \
        results/mnist_hierarchy_kl_w0.1_w3_seed0_validation.json \
        results/mnist_hierarchy_kl_w0.3_seed0_validation.json \
        "mnist_hierarchy_kl=results/mnist_hierarchy_kl_seed0/validation_metrics.json" \
        --rule claims,knn,l1

Each argument is a JSON list bench/recipe_study.py wrote (one row per
recipe), or ``NAME=PATH`` of a metrics.json ``main.py --mode=evaluate
--split=validation`` wrote (a run trained outside the study, such as a
published seed). The rule is a comma-separated order of keys, each breaking
the ties of the ones before it:

  claims  decoder-side claims held (more is better; the verdict, see
          docs/FIDELITY.md)
  knn     the top rung's digit kNN accuracy (higher is better; MNIST)
  l1      validation reconstruction L1 (lower is better)
  kid     KID of prior samples (lower is better)

A key a row lacks ranks it last on that key. Every file must measure the
validation split: test numbers never choose (the claims issue's rule).
``--out`` writes the ranking as JSON (atomically).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vlae_jax import files  # noqa: E402  pylint: disable=g-import-not-at-top

# Each key: how to read it from a row, and whether more is better.
KEYS = {
    "claims": (lambda r: (None if r.get("decoder_claims") is None else
                          sum(bool(c["held"]) for c in r["decoder_claims"])),
               True),
    "knn": (lambda r: (r.get("digit_knn_rungs_and_above") or [None])[-1],
            True),
    "l1": (lambda r: r.get("l1"), False),
    "kid": (lambda r: r.get("kid_samples"), False),
}


def row_of_metrics(name, metrics):
  """A metrics.json as the study's row: the fields the rule reads."""
  quality = metrics.get("sample_quality") or {}
  return {"recipe": name, "step": metrics.get("step"),
          "split": metrics.get("split", "test"), "l1": metrics.get("l1"),
          "decoder_claims": metrics.get("decoder_claims"),
          "digit_knn_rungs_and_above": metrics.get("digit_knn_rungs_and_above"),
          "kid_samples": quality.get("kid_samples", {}).get("mean")}


def load(arguments):
  rows = []
  for argument in arguments:
    # NAME=PATH splits at the first "=": a path may hold one, a name not.
    name, _, path = argument.partition("=") if "=" in argument else (
        "", "", argument)
    try:
      with open(path) as f:
        data = json.load(f)
    except (OSError, ValueError) as e:
      sys.exit(f"cannot read {path}: {e}; give recipe_study.py's --out JSON "
               "or NAME=metrics.json of main.py --mode=evaluate.")
    if isinstance(data, list):
      # recipe_study evaluates on validation only (evaluate_command).
      rows += [dict(row, split="validation") for row in data]
    elif name:
      rows.append(row_of_metrics(name, data))
    else:
      sys.exit(f"{path} is one run's metrics.json: name it, NAME={path}.")
  test = [r["recipe"] for r in rows if r["split"] != "validation"]
  if test:
    sys.exit(f"{test} measure the test split; choose on validation "
             "(main.py --mode=evaluate --split=validation).")
  names = [r["recipe"] for r in rows]
  if len(set(names)) != len(names):
    sys.exit(f"a recipe is given twice: {names}; give each once.")
  return rows


def rank(rows, rule):
  """``rows`` best first under ``rule`` (a list of KEYS names)."""
  def sort_key(row):
    key = []
    for name in rule:
      read, more_is_better = KEYS[name]
      value = read(row)
      if value is None or (isinstance(value, float) and math.isnan(value)):
        key.append(math.inf)  # missing ranks last
      else:
        key.append(-value if more_is_better else value)
    return key
  return sorted(rows, key=sort_key)


def markdown(ranked, rule):
  lines = ["| rank | recipe | " + " | ".join(rule) + " |",
           "| --- " * (2 + len(rule)) + "|"]
  for i, row in enumerate(ranked, 1):
    cells = []
    for name in rule:
      value = KEYS[name][0](row)
      cells.append("n/a" if value is None else
                   str(value) if name == "claims" else f"{value:.4f}")
    lines.append(f"| {i} | {row['recipe']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("inputs", nargs="+",
                      help="recipe_study JSON, or NAME=metrics.json")
  parser.add_argument("--rule", default="claims,knn,l1",
                      help=f"comma-separated order of {sorted(KEYS)}")
  parser.add_argument("--out", help="also write the ranking as JSON here")
  args = parser.parse_args()
  rule = args.rule.split(",")
  unknown = [k for k in rule if k not in KEYS]
  if unknown:
    parser.error(f"unknown rule keys {unknown}; choose from {sorted(KEYS)}")
  ranked = rank(load(args.inputs), rule)
  print(markdown(ranked, rule))
  print(f"\nchosen: {ranked[0]['recipe']}")
  if args.out:
    files.write_atomically(args.out, json.dumps(
        {"rule": rule, "chosen": ranked[0]["recipe"],
         "ranking": [r["recipe"] for r in ranked]}, indent=1))


if __name__ == "__main__":
  main()
