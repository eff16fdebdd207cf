"""One report of how this project runs on this machine's accelerator.

    python bench/gpu_report.py                 # every config, float32 + bfloat16
    python bench/gpu_report.py --quick         # a minute: digits only, few steps

On an NVIDIA GPU it reports the GPU; elsewhere the CPU (the same report, so it
is tested on CPU-only machines). Sections, each a markdown table:

1. device: kind, platform, count, JAX version; the dense matmul peak measured
   in this process for float32 and bfloat16 (and the vendor's dense peak where
   known), the denominators of useful MFU.
2. throughput: per config and dtype, the jitted train step on a fixed batch:
   compile seconds, images/s (median [min-max] of timed windows), useful
   GFLOP/step (analytic, ``vlae_jax.flops``), XLA's GFLOP/step, useful MFU
   against the measured peak of that dtype.
3. determinism: two runs of the same steps from the same seed, parameters
   compared bitwise (with ``config.deterministic``'s flags, as training sets
   them; ``--nondeterministic`` shows what they buy).
4. resume: ``main.py`` killed with SIGKILL after its first checkpoint and run
   again, against an uninterrupted run: final parameters compared bitwise.

Writes the tables to stdout and everything to ``--out`` (JSON).
"""

import argparse
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import compile_with_cost, matmul_peak, xla_step_flops  # pylint: disable=g-import-not-at-top
from vlae_jax import files, runtime  # pylint: disable=g-import-not-at-top

# Vendor dense (no sparsity) peaks in FLOP/s: float32 via TF32 tensor cores
# when precision allows it, else plain float32; bfloat16 tensor cores.
VENDOR_PEAKS = {
    "H100 80GB HBM3": {"float32": 66.9e12, "tf32": 494.7e12, "bfloat16": 989.4e12},
    "H100 PCIe": {"float32": 51.2e12, "tf32": 378e12, "bfloat16": 756e12},
    "H200": {"float32": 66.9e12, "tf32": 494.7e12, "bfloat16": 989.4e12},
    "A100-SXM4-80GB": {"float32": 19.5e12, "tf32": 156e12, "bfloat16": 312e12},
    "A100-SXM4-40GB": {"float32": 19.5e12, "tf32": 156e12, "bfloat16": 312e12},
}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="default,mnist,celeba_small,celeba")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--steps", type=int, default=0,
                      help="steps per timed window (0: 20 on a GPU, 3 on a CPU)")
  parser.add_argument("--windows", type=int, default=3)
  parser.add_argument("--batch_sizes", default="",
                      help="comma-separated batch sizes to time (default: "
                      "each config's own), e.g. 100,1000 for batch 100 "
                      "and one that fills a GPU")
  parser.add_argument("--determinism_steps", type=int, default=20)
  parser.add_argument("--nondeterministic", action="store_true",
                      help="run without config.deterministic's XLA flags")
  parser.add_argument("--skip_resume", action="store_true")
  parser.add_argument("--quick", action="store_true",
                      help="digits config only, few steps, tiny resume run")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  if args.quick:
    args.configs, args.windows, args.determinism_steps = "default", 2, 5
  return args


def load_config(name, dtype):
  import importlib
  config = importlib.import_module(f"configs.{name}").get_config()
  config.dtype = dtype
  return config


def synthetic_batch(config, shape, seed):
  import numpy as np
  rng = np.random.default_rng(seed)
  return {"image": rng.uniform(size=(config.batch_size,) + shape
                               ).astype(np.float32),
          "label": rng.integers(0, 10, config.batch_size).astype(np.int32)}


def throughput(config, steps, windows):
  """Compile time and images/s of the jitted step on a fixed device batch."""
  import jax
  from vlae_jax import datasets, experiment, flops, train
  shape = datasets.image_shape(config)
  model = experiment.create_model(config, shape)
  state = experiment.create_train_state(config, model)
  batch = jax.device_put(synthetic_batch(config, shape, 0))
  step = jax.jit(functools.partial(train.train_step, model=model,
                                   config=config), donate_argnums=0)
  compiled, compile_seconds, _ = compile_with_cost(step, state, batch)
  xla_flops = xla_step_flops(config, shape, state, batch)
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  rates = []
  for _ in range(windows):
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    rates.append(config.batch_size * steps / (time.perf_counter() - start))
  return {"compile_seconds": compile_seconds,
          "images_per_second": statistics.median(rates),
          "images_per_second_min": min(rates),
          "images_per_second_max": max(rates),
          "useful_flops_per_step": flops.train_step_flops(config, shape),
          "xla_flops_per_step": xla_flops}


def determinism(config, steps):
  """Two runs of ``steps`` steps from one seed: are the params bitwise equal?"""
  import jax
  import numpy as np
  from vlae_jax import datasets, experiment, train
  shape = datasets.image_shape(config)
  model = experiment.create_model(config, shape)
  step = jax.jit(functools.partial(train.train_step, model=model,
                                   config=config), donate_argnums=0)
  finals = []
  for _ in range(2):
    state = experiment.create_train_state(config, model)
    for s in range(steps):
      state, _ = step(state, synthetic_batch(config, shape, s))
    finals.append(jax.device_get(state.params))
  leaves = zip(jax.tree_util.tree_leaves(finals[0]),
               jax.tree_util.tree_leaves(finals[1]))
  differing = sum(int(not np.array_equal(a, b)) for a, b in leaves)
  return {"steps": steps, "arrays": len(jax.tree_util.tree_leaves(finals[0])),
          "differing_arrays": differing, "bitwise_equal": differing == 0}


RESUME_ARGS = ["--config.num_train_steps=300", "--config.checkpoint_every=50",
               "--config.log_every=50", "--config.eval_every=100000",
               "--config.image_every=100000"]
QUICK_RESUME_ARGS = ["--config.model.rung_widths=((8, 16), (32,), (32,))",
                     "--config.batch_size=16", "--config.num_train_steps=120",
                     "--config.checkpoint_every=20", "--config.log_every=20",
                     "--config.eval_every=100000", "--config.image_every=100000"]


def sigkill_resume(quick, nondeterministic):
  """main.py killed by SIGKILL after its first checkpoint, then rerun, against
  an uninterrupted run: are the final parameters bitwise equal?"""
  import jax
  import numpy as np
  from vlae_jax import experiment
  args = list(QUICK_RESUME_ARGS if quick else RESUME_ARGS)
  if nondeterministic:
    args.append("--config.deterministic=False")
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3",
             XLA_PYTHON_CLIENT_PREALLOCATE="false")
  command = [sys.executable, os.path.join(ROOT, "main.py")]
  with tempfile.TemporaryDirectory() as tmp:
    a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    subprocess.run(command + [f"--workdir={a}"] + args, env=env, check=True,
                   capture_output=True, cwd=ROOT)
    proc = subprocess.Popen(command + [f"--workdir={b}"] + args, env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    every = next(a.split("=")[1] for a in args
                 if a.startswith("--config.checkpoint_every="))
    first = os.path.join(b, "checkpoints", every)
    deadline = time.time() + 300
    while not os.path.exists(first) and proc.poll() is None and \
        time.time() < deadline:
      time.sleep(0.02)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = sorted(int(s) for s in os.listdir(os.path.join(b, "checkpoints"))
                   if s.isdigit())
    subprocess.run(command + [f"--workdir={b}"] + args, env=env, check=True,
                   capture_output=True, cwd=ROOT)
    finals = []
    for workdir in (a, b):
      _, _, state = experiment.load_experiment(workdir)
      finals.append((int(state.step), jax.device_get(state.params)))
  equal = finals[0][0] == finals[1][0] and all(
      np.array_equal(x, y) for x, y in zip(
          jax.tree_util.tree_leaves(finals[0][1]),
          jax.tree_util.tree_leaves(finals[1][1])))
  return {"killed_while_running": killed,
          "checkpoints_at_kill": saved, "final_step": finals[0][0],
          "bitwise_equal": bool(equal)}


def table(headers, rows):
  lines = ["| " + " | ".join(headers) + " |",
           "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def main(argv=None):
  args = parse_args(argv)
  # Before JAX starts, as main.py does for training.
  runtime.configure_jax(deterministic=not args.nondeterministic,
                        preallocate=True)
  import jax
  if "JAX_PLATFORMS" not in os.environ and not os.path.exists("/dev/nvidiactl"):
    import logging
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.CRITICAL)
  runtime.enable_compilation_cache()
  device = jax.devices()[0]
  on_gpu = device.platform == "gpu"
  steps = args.steps or (20 if on_gpu else 3)
  dtypes = args.dtypes.split(",")
  peak_size = 8192 if on_gpu else 2048
  report = {"device_kind": device.device_kind, "platform": device.platform,
            "device_count": jax.device_count(), "jax": jax.__version__,
            "deterministic": not args.nondeterministic,
            "matmul_precision": str(jax.config.jax_default_matmul_precision),
            "peaks": {d: matmul_peak(d, peak_size) for d in dtypes}}
  vendor = next((v for k, v in VENDOR_PEAKS.items()
                 if k in device.device_kind), None)
  report["vendor_peaks"] = vendor
  print(f"## Device\n\n{device.device_kind} ({device.platform}, "
        f"{jax.device_count()} device(s)), JAX {jax.__version__}, "
        f"deterministic={report['deterministic']} (matmul precision "
        f"{report['matmul_precision']})\n")
  print(table(["dtype", f"measured matmul peak ({peak_size}^2), TFLOP/s",
               "vendor dense peak, TFLOP/s"],
              [[d, f"{p / 1e12:.3f}",
                f"{vendor[d] / 1e12:.1f}" if vendor and d in vendor else "-"]
               for d, p in report["peaks"].items()]))

  rows, report["throughput"] = [], []
  batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
  # One row per config, dtype and batch size (0: the config's own).
  for name, dtype, batch in [(n, d, b) for n in args.configs.split(",")
                             for d in dtypes for b in batch_sizes or [0]]:
    config = load_config(name, dtype)
    config.batch_size = batch or config.batch_size
    r = throughput(config, steps, args.windows)
    r.update(config=name, dtype=dtype, batch=config.batch_size,
             useful_mfu=r["images_per_second"] / config.batch_size
             * r["useful_flops_per_step"] / report["peaks"][dtype])
    report["throughput"].append(r)
    if args.out:  # after every row: a run stopped by its time limit keeps it
      files.write_atomically(args.out, json.dumps(report, indent=1))
    rows.append([name, dtype, config.batch_size,
                 f"{r['compile_seconds']:.1f}",
                 f"{r['images_per_second']:.1f} "
                 f"[{r['images_per_second_min']:.1f}-"
                 f"{r['images_per_second_max']:.1f}]",
                 f"{r['useful_flops_per_step'] / 1e9:.2f}",
                 f"{r['xla_flops_per_step'] / 1e9:.2f}",
                 f"{r['useful_mfu']:.1%}"])
    print(f"  measured {name} {dtype} batch {config.batch_size}",
          file=sys.stderr, flush=True)
  print("\n## Train step throughput\n")
  print(table(["config", "dtype", "batch", "compile s", "images/s median "
               "[min-max]", "useful GFLOP/step", "XLA GFLOP/step",
               "useful MFU"], rows))

  first = args.configs.split(",")[0]
  report["determinism"] = determinism(load_config(first, "float32"),
                                      args.determinism_steps)
  d = report["determinism"]
  print(f"\n## Determinism\n\n{first}, float32, {d['steps']} steps twice from "
        f"one seed: {d['arrays'] - d['differing_arrays']}/{d['arrays']} "
        f"parameter arrays bitwise equal -> "
        f"{'PASS' if d['bitwise_equal'] else 'FAIL'}")
  if not args.skip_resume:
    report["resume"] = r = sigkill_resume(args.quick, args.nondeterministic)
    print(f"\n## SIGKILL and resume\n\nmain.py (digits) killed at checkpoints "
          f"{r['checkpoints_at_kill']} (still running: "
          f"{r['killed_while_running']}), rerun to step {r['final_step']}: "
          f"parameters bitwise equal to an uninterrupted run -> "
          f"{'PASS' if r['bitwise_equal'] else 'FAIL'}")
  if args.out:
    files.write_atomically(args.out, json.dumps(report, indent=1))
    print(f"\nwrote {args.out}")
  ok = report["determinism"]["bitwise_equal"] and report.get(
      "resume", {"bitwise_equal": True})["bitwise_equal"]
  return 0 if ok or args.nondeterministic else 1


if __name__ == "__main__":
  sys.exit(main())
