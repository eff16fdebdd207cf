"""Train and analyse the MMD variational ladder autoencoder.

Modes (--mode):
  train     train into --workdir (resumes from its newest checkpoint); writes
            config.json, checkpoints/, tb/ (TensorBoard) and progress lines.
  traverse  per-rung figures from a trained --workdir, under <workdir>/figures/:
            traverse_rung{l}.png (the paper's Fig. 2/3 sweep over [-radius,
            radius]), conditional_rung{l}.png (other rungs fixed, rung l
            resampled), dims_rung{l}.png (one row per latent dimension), and
            with --gif an animated traverse_rung{l}.gif.
  sample    <workdir>/figures/samples.png: an 8x8 grid decoded from N(0, I).
  reconstruct  <workdir>/figures/reconstructions.png: --count test images
            from --start (top row) above their reconstructions.

Examples:
  python main.py                                   # digits, runs/default
  python main.py --mode=traverse                   # figures of runs/default
  python main.py --config=configs/celeba.py --workdir=runs/celeba
  python main.py --config=configs/mnist.py --config.data_dir=../shared/data/mnist
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

MODES = ("train", "traverse", "sample", "reconstruct")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "configs", "default.py"),
    "Training config file; override fields with --config.field=value.",
    lock_config=True)
flags.DEFINE_string("workdir", None,
                    "Run folder (default runs/<config name>; analysis modes "
                    "read its config.json and newest checkpoint).")
flags.DEFINE_string("mode", "train", f"One of {list(MODES)}.")
flags.DEFINE_bool("allow_config_change", False,
                  "Resume a workdir even though its saved config differs.")
flags.DEFINE_float("radius", 3.0, "traverse: sweep codes over [-radius, radius].")
flags.DEFINE_integer("steps", 9, "traverse: grid points per swept dimension.")
flags.DEFINE_integer("seed", 0, "Analysis modes: seed of the random codes.")
flags.DEFINE_bool("gif", False, "traverse: also write animated GIFs.")
flags.DEFINE_list("rungs", None, "traverse: only these rungs (e.g. 0,2).")
flags.DEFINE_integer("count", 16, "reconstruct: number of test images.")
flags.DEFINE_integer("start", 0, "reconstruct: index of the first test image.")


def fail(message: str):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}; flags take the form --name=value.")
  if FLAGS.mode not in MODES:
    fail(f"unknown mode {FLAGS.mode!r}; choose one of {list(MODES)}.")
  config = FLAGS.config
  workdir = FLAGS.workdir or os.path.join("runs", config.get("name", "default"))
  logging.set_verbosity(logging.WARNING)
  # Imported here so --help and flag errors stay fast.
  from vlae_jax import analysis, configuration, train
  from vlae_jax.checkpoints import WorkdirError
  from vlae_jax.input_pipeline import DataError
  try:
    if FLAGS.mode == "train":
      configuration.validate(config)
      train.train_and_evaluate(config, workdir, FLAGS.allow_config_change)
      print(f"trained into {workdir}; next: python main.py --mode=traverse "
            f"--workdir={workdir}")
    elif FLAGS.mode == "traverse":
      rungs = None if FLAGS.rungs is None else [int(r) for r in FLAGS.rungs]
      for path in analysis.traverse(workdir, radius=FLAGS.radius,
                                    steps=FLAGS.steps, seed=FLAGS.seed,
                                    gif=FLAGS.gif, rungs=rungs):
        print(path)
    elif FLAGS.mode == "sample":
      for path in analysis.sample(workdir, seed=FLAGS.seed):
        print(path)
    elif FLAGS.mode == "reconstruct":
      for path in analysis.reconstruct_figure(workdir, FLAGS.count,
                                              FLAGS.start):
        print(path)
  except (configuration.ConfigError, WorkdirError, DataError,
          analysis.AnalysisError) as e:
    fail(str(e))
  except train.NonFiniteError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(3)


if __name__ == "__main__":
  app.run(main)
