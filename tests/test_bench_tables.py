"""The bench scripts the published results are read from (seed_table,
training_curve, ablation_table, choose_recipe), on metrics shaped as
evaluate writes them and on the recorded files under results/."""

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_module(name):
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(ROOT, "bench", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def metrics(step, margins, best_rungs, split="validation"):
  """A metrics.json's fields these scripts read: two claims, rung 0 and 2."""
  claims = []
  for (name, rung), margin, best in zip(
      (("lighting lives in the bottom rung", 0),
       ("identity lives in the third rung", 2)), margins, best_rungs):
    claims.append({"claim": name, "factor": name.split()[0],
                   "expected_rung": rung, "best_rung": best,
                   "margin": margin,
                   "margin_interval": [margin - 0.02, margin + 0.02],
                   "held": best == rung and margin - 0.02 > 0,
                   "share": [0.7, 0.1, 0.1, 0.1]})
  return {"step": step, "split": split, "l1": 0.05, "decoder_claims": claims,
          "active_units": [10, 10, 10, 10], "latent_dims": [10, 10, 10, 10],
          "sample_quality": {"kid_samples": {"mean": 0.2}}}


def write(tmp_path, runs):
  paths = []
  for i, run in enumerate(runs):
    path = tmp_path / f"m{i}.json"
    path.write_text(json.dumps(run))
    paths.append(str(path))
  return paths


def test_training_curve_marks_each_step(tmp_path, capsys, monkeypatch):
  curve = bench_module("training_curve")
  paths = write(tmp_path, [metrics(4000, [0.8, -0.3], [0, 0]),
                           metrics(2000, [0.7, 0.01], [0, 2])])
  monkeypatch.setattr("sys.argv", ["training_curve", *paths, "--figure",
                                   str(tmp_path / "c.png"), "--out",
                                   str(tmp_path / "c.json")])
  curve.main()
  table = capsys.readouterr().out
  assert "| lighting lives in the bottom rung (0) | +0.70 [+0.68, +0.72] " \
         "held | +0.80 [+0.78, +0.82] held |" in table  # ordered by step
  # Identity: the paper's rung best but its interval reaches 0, then rung 0.
  assert "+0.01 [-0.01, +0.03] interval reaches 0 | -0.30 [-0.32, -0.28] " \
         "rung 0 |" in table
  assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  summary = json.loads((tmp_path / "c.json").read_text())
  assert summary["steps"] == [2000, 4000]
  assert summary["claims"][0]["held_at"] == [2000, 4000]
  assert summary["claims"][1]["held_at"] == []


def test_training_curve_refuses_two_files_of_one_step(tmp_path, monkeypatch):
  curve = bench_module("training_curve")
  paths = write(tmp_path, [metrics(2000, [0.8, 0.1], [0, 2])] * 2)
  monkeypatch.setattr("sys.argv", ["training_curve", *paths])
  with pytest.raises(SystemExit, match="same step"):
    curve.main()


def test_seed_table_counts_the_seeds_that_hold(tmp_path, capsys, monkeypatch):
  table = bench_module("seed_table")
  paths = write(tmp_path, [metrics(8086, [0.8, 0.1], [0, 2]),
                           metrics(8086, [0.9, -0.2], [0, 1]),
                           metrics(8086, [0.7, 0.01], [0, 2])])
  monkeypatch.setattr("sys.argv", ["seed_table", *paths])
  table.main()
  out = capsys.readouterr().out
  assert "| lighting lives in the bottom rung (0) | 3/3 |" in out
  assert "| identity lives in the third rung (2) | 1/3 |" in out
  assert "(rung 1)" in out and "(interval reaches 0)" in out


def test_seed_table_refuses_mixed_splits(tmp_path, monkeypatch):
  table = bench_module("seed_table")
  paths = write(tmp_path, [metrics(8086, [0.8, 0.1], [0, 2]),
                           metrics(8086, [0.8, 0.1], [0, 2], split="test")])
  monkeypatch.setattr("sys.argv", ["seed_table", *paths])
  with pytest.raises(SystemExit, match="different splits"):
    table.main()


def test_ablation_table_rows_per_model(tmp_path, capsys, monkeypatch):
  ablation = bench_module("ablation_table")
  ladder = [metrics(8086, [0.8, 0.1], [0, 2]), metrics(8086, [0.9, -0.2],
                                                        [0, 1])]
  ladder[0]["l1"], ladder[1]["l1"] = 0.05, 0.07
  single = metrics(8086, [-1.0, -1.0], [3, 3])
  single.update(latent_dims=[0, 0, 0, 40], active_units=[0, 0, 0, 39])
  (tmp_path / "ladder").mkdir()
  (tmp_path / "single").mkdir()
  for i, run in enumerate(ladder):
    (tmp_path / "ladder" / f"s{i}.json").write_text(json.dumps(run))
  (tmp_path / "single" / "s0.json").write_text(json.dumps(single))
  monkeypatch.setattr("sys.argv", [
      "ablation_table", f"MMD ladder={tmp_path}/ladder/*.json",
      f"single code={tmp_path}/single/*.json", "--out",
      str(tmp_path / "t.json")])
  ablation.main()
  out = capsys.readouterr().out
  assert ("| MMD ladder | 2 | 10/10 / 10/10 / 10/10 / 10/10 | 0.0600 "
          "(0.0500-0.0700) | 0.200 (0.200-0.200) | n/a | 2/2 | 1/2 |") in out
  assert "| single code | 1 | - / - / - / 39/40 | 0.0500 |" in out
  assert out.rstrip().endswith("| no code | no code |")
  rows = json.loads((tmp_path / "t.json").read_text())
  assert [r["model"] for r in rows] == ["MMD ladder", "single code"]
  assert rows[1]["claims"][0]["held"] is None


def test_a_claim_in_the_only_coded_rung_is_not_counted(tmp_path, capsys,
                                                       monkeypatch):
  # MNIST's single code: the claim's rung (2) is the only one with a code,
  # so every factor moves with it and its margin is 1 whatever it learnt.
  ablation = bench_module("ablation_table")
  single = metrics(6939, [-1.0, 1.0], [2, 2])
  single.update(latent_dims=[0, 0, 8], active_units=[0, 0, 8])
  (tmp_path / "s0.json").write_text(json.dumps(single))
  monkeypatch.setattr("sys.argv", ["ablation_table",
                                   f"single code={tmp_path}/s*.json"])
  ablation.main()
  assert capsys.readouterr().out.rstrip().endswith("| no code | one code |")


def test_ablation_table_refuses_a_pattern_that_matches_nothing(tmp_path,
                                                               monkeypatch):
  ablation = bench_module("ablation_table")
  monkeypatch.setattr("sys.argv", ["ablation_table",
                                   f"KL={tmp_path}/none*.json"])
  with pytest.raises(SystemExit, match="no file matched"):
    ablation.main()


def test_choose_recipe_reproduces_the_published_choices(tmp_path, capsys,
                                                        monkeypatch):
  """The recorded validation files give the choices the ledger reports:
  the std ceiling among the MNIST tries, KL weight 1 among 0.1-3."""
  choose = bench_module("choose_recipe")
  results = os.path.join(ROOT, "results")
  for inputs, chosen in (
      (["mnist_hierarchy_tries_seed0_validation.json",
        "mnist_hierarchy=mnist_hierarchy_seed0/validation_metrics.json"],
       "mnist_hierarchy_ceil0.5"),
      (["mnist_hierarchy_ceil_tries_seed2_validation.json",
        "mnist_hierarchy_ceil=mnist_hierarchy_ceil_seed2/validation_metrics.json"],
       "mnist_hierarchy_ceil0.5_top6"),
      (["mnist_hierarchy_top_wide_tries_seed2_validation.json",
        "mnist_hierarchy_top6=mnist_hierarchy_top6_seed2/validation_metrics.json"],
       "mnist_hierarchy_ceil0.5_top10"),
      (["mnist_hierarchy_kl_w0.1_w3_seed0_validation.json",
        "mnist_hierarchy_kl_w0.3_seed0_validation.json",
        "mnist_hierarchy_kl=mnist_hierarchy_kl_seed0/validation_metrics.json"],
       "mnist_hierarchy_kl")):
    paths = [p.replace("=", f"={results}/") if "=" in p else
             os.path.join(results, p) for p in inputs]
    monkeypatch.setattr("sys.argv", ["choose_recipe", *paths, "--out",
                                     str(tmp_path / "c.json")])
    choose.main()
    assert capsys.readouterr().out.rstrip().endswith(f"chosen: {chosen}")
    assert json.loads((tmp_path / "c.json").read_text())["chosen"] == chosen


def test_choose_recipe_ranks_by_the_rule_in_order():
  choose = bench_module("choose_recipe")
  held = lambda n: [{"held": i < n} for i in range(3)]
  rows = [{"recipe": "a", "decoder_claims": held(3), "l1": 0.05},
          {"recipe": "b", "decoder_claims": held(3), "l1": 0.04},
          {"recipe": "c", "decoder_claims": held(2), "l1": 0.01},
          {"recipe": "d", "decoder_claims": None, "l1": 0.001}]
  assert [r["recipe"] for r in choose.rank(rows, ["claims", "l1"])] == [
      "b", "a", "c", "d"]  # claims first; a missing key ranks last
  assert [r["recipe"] for r in choose.rank(rows, ["l1"])] == [
      "d", "c", "b", "a"]


def test_choose_recipe_refuses_test_numbers_and_doubles(tmp_path,
                                                        monkeypatch):
  choose = bench_module("choose_recipe")
  test_run = tmp_path / "test.json"
  test_run.write_text(json.dumps(metrics(100, [0.1, 0.1], [0, 2],
                                         split="test")))
  for argv, message in (
      ([f"seed0={test_run}"], "measure the test split"),
      ([str(test_run)], "name it"),
      ([f"a={tmp_path / 'none.json'}"], "cannot read")):
    monkeypatch.setattr("sys.argv", ["choose_recipe", *argv])
    with pytest.raises(SystemExit, match=message):
      choose.main()
  valid = tmp_path / "valid.json"
  valid.write_text(json.dumps(metrics(100, [0.1, 0.1], [0, 2])))
  monkeypatch.setattr("sys.argv", ["choose_recipe", f"a={valid}",
                                   f"a={valid}"])
  with pytest.raises(SystemExit, match="given twice"):
    choose.main()


# The ledger's table commands (results/README.md), each run again here with
# its --out redirected: the recorded file must be what the command makes
# from the recorded per-run files, so no table is edited by hand or left
# behind when a run is replaced. (recipe_study's rows train; they are not
# rerun here.)
TABLE_SCRIPTS = ("seed_table", "ablation_table", "choose_recipe",
                 "training_curve")
# A ledger command in backticks: (the whole command, its script, its --out).
LEDGER_COMMAND = re.compile(r"`(python bench/(\w+)\.py [^`]*--out "
                            r"(results/[^` ]+\.json)[^`]*)`")


def ledger_commands():
  with open(os.path.join(ROOT, "results", "README.md")) as f:
    return LEDGER_COMMAND.findall(f.read())


def ledger_table_commands():
  return sorted({(command, out) for command, script, out in ledger_commands()
                 if script in TABLE_SCRIPTS})


def test_every_table_under_results_has_its_command_in_the_ledger():
  """Each results/*.json is the --out of a command the ledger spells out in
  full (no "the same for validation" a reader must guess)."""
  named = {out for _, _, out in ledger_commands()}
  tables = {f"results/{name}" for name in os.listdir(
      os.path.join(ROOT, "results")) if name.endswith(".json")}
  assert tables - named == set()
  assert {out for _, out in ledger_table_commands()} >= {
      "results/celeba_small_ablation_test.json",
      "results/mnist_ablation_test.json",
      "results/celeba_small_kl_w0.1_seeds_validation.json"}


@pytest.mark.parametrize("command,out", ledger_table_commands())
def test_every_ledger_table_is_what_its_command_makes(command, out, tmp_path):
  fresh = str(tmp_path / os.path.basename(out))
  command = command.replace(f"--out {out}", f"--out {shlex.quote(fresh)}")
  # The figure a curve command draws is not compared; keep it out of
  # results/.
  command = re.sub(r"--figure \S+", f"--figure {tmp_path}/curve.png", command)
  # bash expands the seeds' braces and globs as a user's shell does.
  done = subprocess.run(
      ["bash", "-c", command.replace("python ", f"{sys.executable} ", 1)],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  with open(os.path.join(ROOT, out)) as f:
    recorded = json.load(f)
  with open(fresh) as f:
    assert json.load(f) == recorded, out
