"""Train and analyse the MMD variational ladder autoencoder.

Modes (--mode); every mode but train reads only --workdir (its config.json and
newest checkpoint) plus its own flags, and prints the files it wrote:
  train        train into --workdir (resumes from its newest checkpoint);
               writes config.json, checkpoints/, tb/ and progress lines.
  traverse     per rung, under <workdir>/figures/: traverse_rung{l}.png (the
               paper's Fig. 2/3 sweep over [-radius, radius], other rungs
               random), conditional_rung{l}.png (other rungs fixed per row,
               rung l resampled), dims_rung{l}.png (one row per dimension);
               --gif adds traverse_rung{l}.gif.
  sample       figures/samples.png: an 8x8 grid decoded from N(0, I).
  reconstruct  figures/reconstructions.png: --count test images from --start
               above their reconstructions.
  interpolate  figures/interpolate_{a}_{b}.png between test images
               --images=a,b: all --rungs at once, then each rung alone.
  arithmetic   figures/arithmetic.png, the paper's Fig. 4: rows a, b, c and
               decode(z_a - z_b + z_c) for --images=a,b,c[,a,b,c...]; with
               --attribute=NAME (CelebA) figures/edit_NAME.png instead: the
               attribute vector (mean code with minus without) times
               --strength added to the test faces --images, in --rungs.
  evaluate     eval/metrics.json, eval/metrics.txt, eval/probe_heatmap.png:
               test reconstruction, per-rung MMD^2, active units, linear probes.

Examples:
  python main.py                                   # digits, runs/default
  python main.py --mode=traverse                   # figures of runs/default
  python main.py --config=configs/celeba.py --workdir=runs/celeba
  python main.py --mode=arithmetic --workdir=runs/celeba --images=3,8,12
  python main.py --mode=arithmetic --workdir=runs/celeba --attribute=Smiling --images=0,1,2
"""

import json
import logging as std_logging
import os
import shlex
import sys

# Ctrl-C during start-up is recorded, not raised: a KeyboardInterrupt raised
# inside JAX's C++ start-up aborts the process, and some imports swallow it.
# The flag is checked at safe points (runtime.raise_if_interrupted).
from vlae_jax import runtime  # noqa: E402  (imports no JAX)
runtime.record_interrupts()

from absl import app, flags, logging
from ml_collections import config_flags

MODES = ("train", "traverse", "sample", "reconstruct", "interpolate",
         "arithmetic", "evaluate")
CONFIG_ERRORS = (flags.Error, KeyError, AttributeError, ValueError, TypeError)


def fail(message: str, code: int = 2):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def config_error(e: Exception):
  text = (str(e).strip().splitlines() or [""])[0]
  if isinstance(e, (KeyError, AttributeError)):
    text = f"unknown config field '{text.strip(chr(34) + chr(39) + ' ')}'"
  fail(f"{text}; see --helpfull for the flags and configs/default.py for "
       "the config fields.")


FLAGS = flags.FLAGS
try:  # the default config file's --config.x=y overrides are applied here
  config_flags.DEFINE_config_file(
      "config", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             "configs", "default.py"),
      "Training config file; override fields with --config.field=value.",
      lock_config=True)
except CONFIG_ERRORS as e:
  config_error(e)

flags.DEFINE_string("workdir", None,
                    "Run folder (default runs/<config name>; analysis modes "
                    "read its config.json and newest checkpoint).")
flags.DEFINE_string("mode", "train", f"One of {list(MODES)}.")
flags.DEFINE_bool("allow_config_change", False,
                  "train: resume a workdir even though its saved config "
                  "differs.")
flags.DEFINE_float("radius", 3.0, "traverse: sweep codes over [-radius, radius].")
flags.DEFINE_integer("steps", 9, "traverse/interpolate: points per sweep.")
flags.DEFINE_integer("seed", 0, "Analysis modes: seed of the random codes.")
flags.DEFINE_bool("gif", False, "traverse: also write animated GIFs.")
flags.DEFINE_list("rungs", None, "traverse/interpolate/arithmetic: only these "
                  "rungs (e.g. 0,2); default all.")
flags.DEFINE_list("dims", None, "traverse: only these latent dimensions in the "
                  "per-dimension figures (e.g. 0,3).")
flags.DEFINE_integer("count", 16, "reconstruct: number of test images.")
flags.DEFINE_integer("start", 0, "reconstruct: index of the first test image.")
flags.DEFINE_list("images", None, "interpolate: a,b; arithmetic: a,b,c triples "
                  "or, with --attribute, the faces to edit (test indices).")
flags.DEFINE_string("attribute", None, "arithmetic: a CelebA attribute name.")
flags.DEFINE_float("strength", 1.5, "arithmetic: multiple of the attribute "
                   "vector to add.")
flags.DEFINE_integer("probe_train_size", 10000,
                     "evaluate: training images the linear probes fit on.")
flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                  "Multi-process JAX: 'auto' starts jax.distributed only in a "
                  "complete multi-process launch (srun with several tasks, "
                  "mpirun, or JAX_COORDINATOR_ADDRESS with JAX_NUM_PROCESSES "
                  "> 1), 'on' always, 'off' never.")


def int_list(name, values, default=None):
  if values is None:
    return default
  try:
    return [int(v) for v in values]
  except ValueError:
    fail(f"--{name} takes comma-separated integers, got {','.join(values)}.")


def run_mode(mode, config, workdir):
  from vlae_jax import analysis, configuration, evaluate, train
  rungs = int_list("rungs", FLAGS.rungs)
  images = int_list("images", FLAGS.images)
  if mode == "train":
    configuration.validate(config)
    state = train.train_and_evaluate(config, workdir,
                                     FLAGS.allow_config_change)
    if int(state.step) >= config.num_train_steps:  # not stopped by a signal
      print(f"trained into {workdir}; next: python main.py --mode=traverse "
            f"--workdir={shlex.quote(workdir)}")
    return []
  if mode == "traverse":
    return analysis.traverse(workdir, radius=FLAGS.radius, steps=FLAGS.steps,
                             seed=FLAGS.seed, gif=FLAGS.gif, rungs=rungs,
                             dims=int_list("dims", FLAGS.dims))
  if mode == "sample":
    return analysis.sample(workdir, seed=FLAGS.seed)
  if mode == "reconstruct":
    return analysis.reconstruct_figure(workdir, FLAGS.count, FLAGS.start)
  if mode == "interpolate":
    images = images or [0, 1]
    if len(images) != 2:
      fail(f"--images takes two test indices a,b for interpolate, got "
           f"{images}.")
    return analysis.interpolate(workdir, images[0], images[1],
                                steps=FLAGS.steps, rungs=rungs)
  if mode == "arithmetic":
    if FLAGS.attribute:
      return analysis.edit_attribute(workdir, FLAGS.attribute,
                                     images or list(range(8)),
                                     strength=FLAGS.strength, rungs=rungs)
    images = images or [0, 1, 2]
    if len(images) % 3:
      fail(f"--images takes test indices in triples a,b,c for arithmetic, "
           f"got {len(images)} indices.")
    return analysis.arithmetic(
        workdir, [images[i:i + 3] for i in range(0, len(images), 3)], rungs)
  return evaluate.evaluate(workdir, FLAGS.probe_train_size, FLAGS.seed)


def main(argv):
  runtime.raise_if_interrupted()
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}; flags take the form --name=value.")
  if FLAGS.mode not in MODES:
    fail(f"unknown mode {FLAGS.mode!r}; choose one of {list(MODES)}.")
  config = FLAGS.config
  workdir = FLAGS.workdir or os.path.join("runs", config.get("name", "default"))
  logging.set_verbosity(logging.WARNING)
  # Before JAX starts: determinism flags, and no up-front grab of 75% of the
  # GPU's memory by anything but the trainer.
  runtime.configure_jax(
      deterministic=deterministic_setting(FLAGS.mode, config, workdir),
      preallocate=FLAGS.mode == "train")
  quiet_missing_cuda()
  runtime.enable_compilation_cache()
  try:
    runtime.initialize_distributed(FLAGS.distributed)
  except runtime.RuntimeSetupError as e:
    fail(str(e))
  import jax
  jax.devices()  # JAX's C++ start-up done: Ctrl-C may raise from here on
  runtime.raise_if_interrupted()
  if FLAGS.mode != "train":  # the trainer checks at its own safe points
    runtime.interrupts_raise()
  # Imported here so --help and flag errors stay fast.
  from vlae_jax import analysis, configuration, train
  from vlae_jax.checkpoints import WorkdirError
  from vlae_jax.input_pipeline import DataError
  try:
    for path in run_mode(FLAGS.mode, config, workdir):
      print(path)
  except (configuration.ConfigError, WorkdirError, DataError,
          analysis.AnalysisError) as e:
    fail(str(e))
  except train.NonFiniteError as e:
    fail(str(e), code=3)


def deterministic_setting(mode, config, workdir) -> bool:
  """``config.deterministic`` of the run this mode works on: the command
  line's config when training, else the workdir's saved config.json."""
  if mode == "train":
    return bool(config.get("deterministic", True))
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      return bool(json.load(f).get("deterministic", True))
  except (OSError, ValueError, AttributeError):
    return True  # the mode itself reports a missing or broken config.json


def quiet_missing_cuda():
  """No NVIDIA device node: the CUDA plugin of jax[cuda12] cannot start, and
  its traceback on every command would bury our one-line messages. JAX still
  falls back to the CPU; with a GPU present its errors stay visible."""
  if "JAX_PLATFORMS" not in os.environ and not os.path.exists("/dev/nvidiactl"):
    std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.CRITICAL)


def parse_flags(argv):
  """absl's parser, with a one-line message and exit code 2 on bad flags;
  --help and --helpfull print the flags and exit 0."""
  try:
    return FLAGS(argv)
  except CONFIG_ERRORS as e:
    config_error(e)
  except SystemExit as e:  # absl exits 1 after printing help
    if any(a in ("--help", "-h", "--helpfull", "-?", "--helpshort")
           for a in argv[1:]):
      sys.exit(0)
    raise


def main_interruptible(argv):
  """``main``, with Ctrl-C outside the training loop (start-up, data
  loading, compiling, an analysis mode) a one-line exit 130; inside the loop
  the trainer saves the current step and exits 0 itself."""
  try:
    main(argv)
  except KeyboardInterrupt:
    fail("interrupted (Ctrl-C) before training started or outside the "
         "training loop; nothing was saved. Run the same command again.",
         code=130)


if __name__ == "__main__":
  app.run(main_interruptible, flags_parser=parse_flags)
