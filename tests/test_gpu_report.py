"""bench/gpu_report.py on this machine (the CPU report), as a user runs it."""

import json
import os
import subprocess
import sys

from conftest import ROOT, tiny_config
from vlae_jax import flops


def test_quick_report_runs_and_checks_determinism(tmp_path):
  """The report's throughput and determinism sections. Its SIGKILL-resume
  section drives main.py exactly as tests/test_reliability.py's SIGKILL test
  does, so it is skipped here (one bitwise-resume test in the suite)."""
  out = tmp_path / "report.json"
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "bench", "gpu_report.py"), "--quick",
       "--dtypes=float32", "--skip_resume", f"--out={out}"], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
  text = result.stdout
  for heading in ("## Device", "## Train step throughput", "## Determinism"):
    assert heading in text
  assert "## SIGKILL and resume" not in text
  assert "| default | float32 | 100 |" in text
  assert text.count("-> PASS") == 1
  report = json.loads(out.read_text())
  assert report["platform"] == "cpu" and report["deterministic"] is True
  row = report["throughput"][0]
  config = tiny_config()
  config.batch_size = 100
  config.model.rung_widths = ((32, 64), (256,), (256,))  # the default config
  assert row["useful_flops_per_step"] == flops.train_step_flops(config)
  assert row["images_per_second"] > 0 and 0 < row["useful_mfu"] < 1
  assert report["determinism"]["bitwise_equal"] and "resume" not in report
