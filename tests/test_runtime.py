"""Process set-up before JAX starts: SLURM, determinism, GPU memory, TF."""

import ast
import glob
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, run_main_process
from test_main import TINY
from vlae_jax import distributed, objective, runtime, tf_gate
from vlae_jax.discrepancy import mmd

SALLOC_SHELL = {  # what `salloc -N1` exports: a job, no job step
    "SLURM_JOB_ID": "4242", "SLURM_JOBID": "4242", "SLURM_JOB_NODELIST": "gpu7",
    "SLURM_NODELIST": "gpu7", "SLURM_NNODES": "1", "SLURM_JOB_NUM_NODES": "1",
    "SLURM_NTASKS": "1", "SLURM_CLUSTER_NAME": "lab", "SLURM_SUBMIT_DIR": "/tmp",
}


@pytest.mark.parametrize("environ,launch", [
    ({}, None),
    (SALLOC_SHELL, None),
    (dict(SALLOC_SHELL, SLURM_STEP_ID="0", SLURM_PROCID="0",
          SLURM_STEP_NUM_TASKS="1"), None),  # srun with one task
    (dict(SALLOC_SHELL, SLURM_STEP_ID="0", SLURM_PROCID="1",
          SLURM_STEP_NUM_TASKS="2"), "slurm"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1234", "JAX_NUM_PROCESSES": "2",
      "JAX_PROCESS_ID": "0"}, "jax"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1234", "JAX_NUM_PROCESSES": "1"}, None),
    ({"OMPI_COMM_WORLD_SIZE": "4"}, "mpi"),
])
def test_only_a_complete_multi_process_launch_counts(environ, launch):
  assert distributed.multi_process_launch(environ) == launch
  if launch is None:  # "auto" leaves jax.distributed alone
    assert distributed.initialize_distributed("auto", environ) is False
  assert distributed.initialize_distributed("off", environ) is False


def test_training_inside_an_salloc_shell(tmp_path):
  """Before: ValueError: coordinator_address should be defined."""
  env = dict(os.environ, **SALLOC_SHELL)
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "main.py"),
       f"--workdir={tmp_path / 'w'}", *TINY, "--config.num_train_steps=4",
       "--config.checkpoint_every=4"], cwd=ROOT, env=env, capture_output=True,
      text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "step 4/4" in result.stdout


def test_distributed_on_without_a_cluster_is_one_line():
  result = run_main_process("--distributed=on", "--mode=sample",
                            "--workdir=/nonexistent")
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert lines[-1].startswith("error: jax.distributed.initialize() failed")
  assert "--distributed=off" in lines[-1]


def test_configure_jax_sets_flags_and_keeps_the_users_values():
  env = {"XLA_FLAGS": "--xla_cpu_foo=1", "XLA_PYTHON_CLIENT_PREALLOCATE": "true"}
  changed = runtime.configure_jax(deterministic=True, preallocate=False,
                                  environ=env)
  assert env["XLA_FLAGS"] == "--xla_cpu_foo=1 " + runtime.GPU_DETERMINISM_FLAG
  assert env["JAX_DEFAULT_MATMUL_PRECISION"] == "highest"
  assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"  # the user's choice
  assert set(changed) == {"XLA_FLAGS", "JAX_DEFAULT_MATMUL_PRECISION"}
  runtime.configure_jax(deterministic=True, environ=env)  # idempotent
  assert env["XLA_FLAGS"].count("deterministic") == 1
  env = {"XLA_FLAGS": "--xla_gpu_deterministic_ops=false"}
  runtime.configure_jax(deterministic=True, environ=env)
  assert env["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=false"
  env = {}
  assert runtime.configure_jax(deterministic=False, preallocate=True,
                               environ=env) == {} and env == {}


MAIN_SETUP_PROBE = """
import os, sys
sys.path.insert(0, {root!r})
sys.argv = ["main.py", *{args!r}]
import main
assert "jax" not in sys.modules, "JAX imported before main() configured it"
def report(mode, config, workdir):
  import jax
  print("PREALLOCATE", os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"))
  print("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
  print("PRECISION", jax.config.jax_default_matmul_precision)
  return []
main.run_mode = report
from absl import app
app.run(main.main, flags_parser=main.parse_flags)
"""


def probe_main_setup(*args, workdir=None, keep_environment=False):
  env = {k: v for k, v in os.environ.items()
         if keep_environment or k not in (
             "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_FLAGS",
             "JAX_DEFAULT_MATMUL_PRECISION")}
  args = list(args) + ([f"--workdir={workdir}"] if workdir else [])
  result = subprocess.run(
      [sys.executable, "-c", MAIN_SETUP_PROBE.format(root=ROOT, args=args)],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  return dict(line.split(" ", 1) if " " in line else (line, "")
              for line in result.stdout.splitlines())


def test_main_sets_up_jax_before_it_starts(tmp_path):
  train_mode = probe_main_setup("--mode=train")
  assert train_mode["PREALLOCATE"] == "None"  # the trainer may take the GPU
  assert runtime.GPU_DETERMINISM_FLAG in train_mode["XLA_FLAGS"]
  assert train_mode["PRECISION"] == "highest"
  fast = probe_main_setup("--mode=train", "--config.deterministic=False")
  assert runtime.GPU_DETERMINISM_FLAG not in fast["XLA_FLAGS"]
  assert fast["PRECISION"] == "None"
  # Analysis modes never preallocate, and follow the workdir's saved setting.
  (tmp_path / "config.json").write_text('{"deterministic": false}')
  for mode in ("traverse", "evaluate", "sample"):
    analysis = probe_main_setup(f"--mode={mode}", workdir=tmp_path)
    assert analysis["PREALLOCATE"] == "false"
    assert runtime.GPU_DETERMINISM_FLAG not in analysis["XLA_FLAGS"]


def test_the_users_preallocation_setting_wins_even_when_training():
  """main.py's train mode lets JAX preallocate only where the user has not
  said otherwise: a main.py process started by this suite (which sets
  XLA_PYTHON_CLIENT_PREALLOCATE=false) keeps it."""
  assert probe_main_setup("--mode=train", keep_environment=True)[
      "PREALLOCATE"] == "false"


def test_deterministic_flags_are_accepted_by_the_installed_xla():
  code = ("from vlae_jax import runtime; runtime.configure_jax(True); "
          "import jax, jax.numpy as jnp; "
          "print(float((jnp.ones((4, 4)) @ jnp.ones((4, 4))).sum()), "
          "jax.config.jax_default_matmul_precision)")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ["64.0", "highest"]


def test_tensorflow_is_imported_only_through_the_gate():
  """TensorFlow must have its GPUs hidden before anything else imports it."""
  offenders = []
  files = (glob.glob(os.path.join(ROOT, "vlae_jax", "**", "*.py"), recursive=True)
           + glob.glob(os.path.join(ROOT, "bench", "*.py"))
           + [os.path.join(ROOT, "main.py")])
  for path in files:
    if path.endswith(os.path.join("vlae_jax", "tf_gate.py")):
      continue
    for node in ast.walk(ast.parse(open(path).read())):
      names = []
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module:
        names = [node.module]
      if any(n.split(".")[0] in ("tensorflow", "tensorflow_datasets")
             for n in names):
        offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
  assert not offenders, offenders


def test_tensorflow_sees_no_gpu_after_the_gates_import():
  tf = tf_gate.import_tfds() and tf_gate.import_tensorflow()
  assert tf.config.get_visible_devices("GPU") == []


def test_aggregate_mmd_is_one_compiled_program_equal_to_eager_mmd():
  key = jax.random.PRNGKey(3)
  codes = [jax.random.normal(jax.random.fold_in(key, 10 + l), (300, d)) * s
           for l, (d, s) in enumerate([(2, 1.0), (3, 1.5), (5, 0.5)])]
  values = objective.aggregate_mmd(codes, "reference", key, block_size=128)
  assert isinstance(values, jax.Array) and values.shape == (3,)
  expected = [mmd(z, jax.random.normal(jax.random.fold_in(key, l), z.shape),
                  kernel="reference") for l, z in enumerate(codes)]
  np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-7)
  # One program for all rungs: it lowers and compiles as a whole.
  compiled = objective.aggregate_mmd.lower(codes, "reference", key).compile()
  np.testing.assert_allclose(compiled(codes, key), expected, rtol=1e-5,
                             atol=1e-7)


_FAULTS_SCRIPT = r"""
import resource, sys
sys.path.insert(0, {root!r})
from vlae_jax import runtime
applied = runtime.retain_freed_host_memory()
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
def faults_of_a_fresh_buffer():  # as XLA:CPU's per-step temporary buffer
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  size = 200 * 2**20
  buffer = libc.malloc(size)
  ctypes.memset(buffer, 1, size)
  libc.free(buffer)
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_a_fresh_buffer()
print(applied, faults_of_a_fresh_buffer())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_retained_host_memory_reuses_freed_buffers_without_page_faults():
  """The second 200 MiB buffer is served from memory the first one left: no
  page faults, where glibc's default unmaps and faults all 51,200 pages in
  again (what XLA:CPU's per-step temporary buffer went through)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = _FAULTS_SCRIPT.format(root=root)
  results = {}
  for setting in ("0", "1"):
    env = dict(os.environ, VLAE_JAX_SYSTEM_MALLOC=setting)
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    results[setting] = (out[0] == "True", int(out[1]))
  assert results["1"] == (False, results["1"][1])
  assert results["1"][1] > 40_000  # glibc's default: every page again
  assert results["0"][0] is True
  assert results["0"][1] < 1_000
