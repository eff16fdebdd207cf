"""Shared fixtures: tiny configs and the real data in ../shared/data."""

import atexit
import contextlib
import importlib.util
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import NamedTuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Before any test imports JAX. The suite's tolerances assume full float32
# matrix products and convolutions (no TF32 on a GPU) and bitwise-repeatable
# runs, so it runs deterministic; and neither it nor the main.py processes it
# starts (which inherit this environment) takes 75% of a GPU's memory.
from vlae_jax import runtime  # noqa: E402  (imports no JAX)
# The suite's time is mostly XLA:CPU compiling tiny programs: with LLVM at
# optimisation level 0 a tiny model's init and train step compile in 11 s
# instead of 24 s here. The programs compute the same functions (every
# tolerance is against an independent reference, every bitwise comparison
# between runs under these same flags), only run slower, which tiny tests do
# not feel. The main.py processes the suite starts inherit it.
SUITE_XLA_FLAGS = "--xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), SUITE_XLA_FLAGS]).strip()
runtime.configure_jax(deterministic=True, preallocate=False)
# One compilation cache for the whole suite, in process and in the main.py
# processes it starts (they inherit the environment): a program compiled by
# one test is read back by the next. Fresh per run, so no test depends on
# what an earlier run left.
if "VLAE_JAX_COMPILATION_CACHE" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="vlae_jax_test_compile_cache_")
  os.environ["VLAE_JAX_COMPILATION_CACHE"] = _CACHE
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
runtime.enable_compilation_cache()
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
MNIST_DIR = os.path.join(SHARED_DATA, "mnist")
CELEBA_DIR = os.path.join(SHARED_DATA, "celeba")

needs_mnist = pytest.mark.skipif(not os.path.isdir(MNIST_DIR),
                                 reason="../shared/data/mnist not present")
needs_celeba = pytest.mark.skipif(not os.path.isdir(CELEBA_DIR),
                                  reason="../shared/data/celeba not present")


def tiny_config(tmp_path=None, **overrides):
  """The default (digits) config, shrunk so a step takes milliseconds."""
  from configs import default
  config = default.get_config()
  config.model.rung_widths = ((8, 16), (32,), (32,))
  config.batch_size = 16
  config.num_train_steps = 20
  config.log_every = 5
  config.eval_every = 10
  config.num_eval_batches = 2
  config.image_every = 10
  config.checkpoint_every = 10
  if tmp_path is not None:
    config.cache_dir = str(tmp_path / "cache")
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


@pytest.fixture
def tiny():
  return tiny_config


class MainResult(NamedTuple):
  """What a ``main.py`` run left: its exit code and what it printed."""
  returncode: int
  stdout: str
  stderr: str


_MAIN_MODULE = []


def _main_module():
  """main.py imported once into this process (its flags live in absl's
  global FLAGS); the signal handlers it installs at import are undone."""
  if not _MAIN_MODULE:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    spec = importlib.util.spec_from_file_location(
        "vlae_main", os.path.join(ROOT, "main.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for sig, handler in handlers.items():
      signal.signal(sig, handler)
    from absl import app
    app.define_help_flags()
    _MAIN_MODULE.append(module)
  return _MAIN_MODULE[0]


def run_main(*args, cwd=None) -> MainResult:
  """``python main.py ARGS`` run in this process: the same parser, checks
  and modes as the command line, its exit code and printed lines, without a
  new interpreter, JAX start-up and compile per call. What only a process
  shows (signals, locks, SIGKILL, the environment before JAX starts, --help)
  is tested with ``run_main_process``."""
  main = _main_module()
  args = [str(a) for a in args]
  if not any(a.startswith("--config=") for a in args):
    # main.py's default, given explicitly: the default config file is
    # parsed only once per process otherwise, with the first run's argv.
    args.insert(0, f"--config={os.path.join(ROOT, 'configs', 'default.py')}")
  main.FLAGS.unparse_flags()
  for name in [n for n in main.FLAGS if n.startswith("config.")]:
    delattr(main.FLAGS, name)  # the last run's --config.x=y overrides
  handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  saved_argv, saved_cwd = sys.argv, os.getcwd()
  out, err = io.StringIO(), io.StringIO()
  code = 0
  try:
    sys.argv = ["main.py", *args]  # ml_collections reads overrides there
    if cwd is not None:
      os.chdir(cwd)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      try:
        main.main_interruptible(main.parse_flags(sys.argv))
      except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(
            exit_.code is not None)
  finally:
    sys.argv = saved_argv
    os.chdir(saved_cwd)
    for sig, handler in handlers.items():
      signal.signal(sig, handler)
  return MainResult(code, out.getvalue(), err.getvalue())


def run_main_process(*args, cwd=ROOT, timeout=300, env=None):
  """``python main.py ARGS`` in a new process, as a user runs it."""
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3",
             **(env or {}))
  return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"),
                         *map(str, args)], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout)


# The suite's one trained run: a tiny digits model, 10 steps, checkpoints
# (with their manifests) at steps 5 and 10, test metrics and image grids
# at both.
TRAINED_ARGS = ("--config.model.rung_widths=((8, 16), (32,), (32,))",
                "--config.batch_size=16", "--config.num_train_steps=10",
                "--config.log_every=5", "--config.eval_every=5",
                "--config.num_eval_batches=2", "--config.image_every=5",
                "--config.checkpoint_every=5")


class TrainedRun(NamedTuple):
  workdir: "os.PathLike"  # read-only use; copy it (shutil.copytree) to change it
  config: object  # the tiny_config the run was trained with
  params: object  # its final parameters, on the host
  result: MainResult  # what main.py printed while training it


def suite_folder(tmp_path_factory, worker_id):
  """One folder for the whole suite run, shared by its pytest-xdist workers
  (their base folders' common parent), for what is made once under a file
  lock and read by all."""
  return (tmp_path_factory.getbasetemp() if worker_id == "master"
          else tmp_path_factory.getbasetemp().parent)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, worker_id):
  """Trained once for the whole suite through main.py's train mode (once
  for all pytest-xdist workers: the first to ask trains under a file lock,
  the others read its workdir). Tests that only read it (figures,
  evaluation) share it; tests that damage, resume or retrain it work on
  their own copy."""
  import json
  import jax
  from filelock import FileLock
  from vlae_jax import experiment
  shared = suite_folder(tmp_path_factory, worker_id)
  base = shared / "trained"
  workdir = base / "run"
  with FileLock(str(shared / "trained.lock")):
    if not (base / "result.json").exists():
      result = run_main(f"--workdir={workdir}", *TRAINED_ARGS,
                        f"--config.cache_dir={base / 'cache'}")
      assert result.returncode == 0, result.stderr[-3000:]
      (base / "result.json").write_text(json.dumps(result._asdict()))
  result = MainResult(**json.loads((base / "result.json").read_text()))
  config = tiny_config(base, num_train_steps=10, log_every=5, eval_every=5,
                       image_every=5, checkpoint_every=5)
  _, _, state = experiment.load_experiment(str(workdir))
  return TrainedRun(workdir, config, jax.device_get(state.params), result)


# The suite's longest tests (40-190 s of CPU each on the development
# machine; `pytest --durations=30` lists them), longest first. They are
# dealt round-robin to the front of each worker's first share of the
# collection, so that no worker starts one near the end while the others
# run out of work. Tests are still collected and run as pytest finds them;
# only their order changes, and a name not collected is ignored.
LONGEST_FIRST = (
    "tests/test_gpu_run.py::test_gpu_run_smoke_runs_every_stage_and_returns_at_most_8_files",
    "tests/test_compatibility.py::test_a_workdir_of_the_last_version_resumes_on_the_same_batches",
    "tests/test_faults.py::test_tfds_own_mnist_builder_from_local_files_then_training",
    "tests/test_faults.py::test_out_of_memory_in_the_step_is_one_line_and_the_rerun_works",
    "tests/test_distributed.py::test_two_processes_train_like_one",
    "tests/test_analysis.py::test_attribute_editing_on_a_tiny_celeba",
    "tests/test_single_code.py::test_a_single_code_run_trains_traverses_and_evaluates",
    "tests/test_reliability.py::test_training_further_equals_training_that_long_from_the_start",
    "tests/test_parallel.py::test_two_devices_match_one_device",
    "tests/test_reliability.py::test_sigkill_then_rerun_equals_an_uninterrupted_run_bitwise",
)


def longest_first(items, workers):
  """``items`` reordered for ``workers`` workers: xdist's work-stealing
  scheduler first hands each worker, in turn, the next ``remaining //
  workers_left`` items; LONGEST_FIRST's tests open those shares,
  round-robin, and the others keep their order."""
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  longest = sorted((it for it in items if it.nodeid in rank),
                   key=lambda it: rank[it.nodeid])
  rest = iter([it for it in items if it.nodeid not in rank])
  heads = [longest[w::workers] for w in range(workers)]
  ordered, remaining = [], len(items)
  for w in range(workers):
    share = remaining // (workers - w)
    remaining -= share
    ordered += heads[w] + [next(rest) for _ in range(share - len(heads[w]))]
  return ordered + list(rest)


def pytest_collection_modifyitems(config, items):
  workers = getattr(config, "workerinput", {}).get("workercount", 1)
  if workers > 1:  # every worker computes the same order from the same items
    items[:] = longest_first(items, workers)
