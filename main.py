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
  evaluate     eval/metrics.json, eval/metrics.txt and heatmaps: test
               reconstruction, per-rung MMD^2, active units, linear probes;
               each paper claim judged on the decoder side (resample one
               rung, decode, measure the factor; bootstrap intervals) and
               the encoder side (what the codes predict, beside pixel-PCA
               and random-code controls); KID; CelebA face arithmetic scored
               against pixel arithmetic (eval/arithmetic.png).

Examples:
  python main.py                                   # digits, runs/default
  python main.py --mode=traverse                   # figures of runs/default
  python main.py --config=configs/celeba.py --workdir=runs/celeba
  python main.py --mode=arithmetic --workdir=runs/celeba --images=3,8,12
  python main.py --mode=arithmetic --workdir=runs/celeba --attribute=Smiling --images=0,1,2
"""

# Ctrl-C during start-up is recorded, not raised (vlae_jax/interrupts.py says
# why and when each phase starts). First of all, so that the window in which
# Python's own handler still raises (the interpreter's start-up, about 0.1 s)
# ends as early as it can.
from vlae_jax import interrupts  # noqa: E402  (imports no JAX)
interrupts.record()

import logging as std_logging  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
from vlae_jax import runtime  # noqa: E402  (imports no JAX)
# Before any thread starts: XLA:CPU's per-step buffers reused, not re-faulted.
runtime.retain_freed_host_memory()

from absl import app, flags, logging
from ml_collections import config_flags

from vlae_jax import distributed  # noqa: E402  (imports no JAX)
from vlae_jax import workdir as workdirs  # noqa: E402  (imports no JAX)

MODES = ("train", "traverse", "sample", "reconstruct", "interpolate",
         "arithmetic", "evaluate")
CONFIG_ERRORS = (flags.Error, KeyError, AttributeError, ValueError, TypeError)


def fail(message: str, code: int = 2, quiet_exit: bool = False):
  """Prints one error line and exits with ``code``. ``quiet_exit`` (after
  JAX and Orbax started threads): stderr goes to /dev/null once the line is
  out, so their shutdown chatter (an aborted save's pending tasks) cannot
  bury it."""
  print(f"error: {message}", file=sys.stderr)
  if quiet_exit and sys.stderr is sys.__stderr__:  # not when called in process
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
  sys.exit(code)


def config_error(e: Exception):
  text = (str(e).strip().splitlines() or [""])[0]
  if isinstance(e, (KeyError, AttributeError)):
    text = f"unknown config field '{text.strip(chr(34) + chr(39) + ' ')}'"
  fail(f"{text}; see --helpfull for the flags and configs/default.py for "
       "the config fields.")


def config_file_path(argv) -> str:
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs",
                      "default.py")
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith("--config="):
      path = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      path = argv[i + 1]
  return path.split(":", 1)[0]  # config_flags' file:argument form


def _raised_in(path: str, error: BaseException) -> bool:
  """Whether a frame of ``error``'s traceback (or its cause's) runs ``path``."""
  while error is not None:
    tb = error.__traceback__
    while tb is not None:
      if os.path.abspath(tb.tb_frame.f_code.co_filename) == os.path.abspath(
          path):
        return True
      tb = tb.tb_next
    error = error.__cause__ or error.__context__
  return False


def config_file_error(argv, error: Exception):
  """One line for a --config file that is missing or fails to load."""
  path = config_file_path(argv)
  if not os.path.isfile(path):
    fail(f"--config file {path!r} does not exist; pass a config file such as "
         "--config=configs/mnist.py.")
  cause = error
  while cause.__cause__ is not None:
    cause = cause.__cause__
  where = ""
  if isinstance(cause, SyntaxError) and cause.lineno:
    where = f" at line {cause.lineno}"
  else:
    tb = cause.__traceback__
    while tb is not None:
      if os.path.abspath(tb.tb_frame.f_code.co_filename) == os.path.abspath(
          path):
        where = f" at line {tb.tb_lineno}"
      tb = tb.tb_next
  text = (str(getattr(cause, "msg", None) or cause).strip().splitlines()
          or [""])[0]
  fail(f"--config file {path!r} failed to load{where}: "
       f"{type(cause).__name__}: {text}; fix the file or pass another "
       "--config.")


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
flags.DEFINE_string("output_dir", None,
                    "Analysis modes: write here instead of <workdir>/figures "
                    "(or <workdir>/eval), e.g. for a read-only workdir.")
flags.DEFINE_enum("split", "test", ["test", "validation"],
                  "evaluate: the held-out images measured. Choose recipes, "
                  "budgets and factor definitions on validation (CelebA's "
                  "official partition; other data: --config.validation_size "
                  "held out at training); read test once per reported run.")
flags.DEFINE_integer("probe_train_size", 10000,
                     "evaluate: training images the probes fit on.")
flags.DEFINE_integer("classifier_steps", 1000,
                     "evaluate: training steps of the feature classifier "
                     "behind KID, the decoder-side classifier factors and "
                     "face arithmetic (and of the CelebA identity verifier); "
                     "0 skips them.")
flags.DEFINE_integer("decoder_images", 500,
                     "evaluate: test images whose rungs are resampled for "
                     "the decoder-side claims.")
flags.DEFINE_integer("decoder_draws", 8,
                     "evaluate: draws per image and rung on the decoder side.")
flags.DEFINE_integer("arithmetic_triples", 200,
                     "evaluate (CelebA): analogy triples per attribute.")
flags.DEFINE_integer("checkpoint_step", None,
                     "Analysis modes: the saved step to analyse instead of "
                     "the newest (config.keep_checkpoint_every keeps a "
                     "curve's steps); outputs go to <eval or figures>/"
                     "step_<N> unless --output_dir is given.")
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


def writable_output_dir(mode, workdir):
  """The folder an analysis mode writes to, checked writable before any
  work: --output_dir, else <workdir>/eval or <workdir>/figures."""
  workdirs.read_saved_config(workdir)  # a training workdir, readable
  output_dir = workdirs.expand_path(FLAGS.output_dir or "")
  if not output_dir and FLAGS.checkpoint_step is not None:
    # An earlier step's outputs beside, not over, the newest's.
    output_dir = os.path.join(workdirs.output_dir(workdir, mode),
                              f"step_{FLAGS.checkpoint_step}")
    if mode == "evaluate" and FLAGS.split != "test":
      # As without the flag: the validation report never over the test's.
      output_dir = os.path.join(output_dir, FLAGS.split)
  folder = output_dir or workdirs.output_dir(workdir, mode)
  probe = os.path.join(folder, f".write-test-{os.getpid()}")
  # The folders this check makes are removed again: the mode makes them
  # when it writes, so a request refused later leaves nothing behind.
  made, parent = [], os.path.abspath(folder)
  while not os.path.exists(parent):
    made.append(parent)
    parent = os.path.dirname(parent)
  try:
    os.makedirs(folder, exist_ok=True)
    with open(probe, "w"):
      pass
    os.remove(probe)
    for path in made:
      os.rmdir(path)
  except OSError as e:
    reason = e.strerror or type(e).__name__
    fail(f"cannot write to {folder} ({reason}); pass --output_dir=<a "
         "writable folder> for the figures.")
  return output_dir or None


def run_mode(mode, config, workdir):
  from vlae_jax import analysis, evaluation, train
  rungs = int_list("rungs", FLAGS.rungs)
  out_dir = None
  if mode == "evaluate":  # checked before the output folder is made
    for name, least in (("classifier_steps", 0), ("decoder_images", 2),
                        ("decoder_draws", 2), ("arithmetic_triples", 1)):
      if getattr(FLAGS, name) < least:
        fail(f"--{name} must be >= {least}, got {getattr(FLAGS, name)}.")
  step = FLAGS.checkpoint_step
  if step is not None and (mode == "train" or step < 0):
    fail(f"--checkpoint_step={step}: " + (
        "training always resumes from the newest checkpoint; drop the flag."
        if mode == "train" else "use a saved step >= 0."))
  if mode != "train":
    out_dir = writable_output_dir(mode, workdir)
  images = int_list("images", FLAGS.images)
  if mode == "train":
    state = train.train_and_evaluate(config, workdir,
                                     FLAGS.allow_config_change)
    if int(state.step) >= config.num_train_steps:  # not stopped by a signal
      print(f"trained into {workdir}; next: python main.py --mode=traverse "
            f"--workdir={shlex.quote(workdir)}")
    return []
  if mode == "traverse":
    return analysis.traverse(workdir, radius=FLAGS.radius, steps=FLAGS.steps,
                             seed=FLAGS.seed, gif=FLAGS.gif, rungs=rungs,
                             dims=int_list("dims", FLAGS.dims), out_dir=out_dir,
                             checkpoint_step=step)
  if mode == "sample":
    return analysis.sample(workdir, seed=FLAGS.seed, out_dir=out_dir,
                           checkpoint_step=step)
  if mode == "reconstruct":
    return analysis.reconstruct_figure(workdir, FLAGS.count, FLAGS.start,
                                       out_dir=out_dir, checkpoint_step=step)
  if mode == "interpolate":
    images = images or [0, 1]
    if len(images) != 2:
      fail(f"--images takes two test indices a,b for interpolate, got "
           f"{images}.")
    return analysis.interpolate(workdir, images[0], images[1],
                                steps=FLAGS.steps, rungs=rungs,
                                out_dir=out_dir, checkpoint_step=step)
  if mode == "arithmetic":
    if FLAGS.attribute:
      return analysis.edit_attribute(workdir, FLAGS.attribute,
                                     images or list(range(8)),
                                     strength=FLAGS.strength, rungs=rungs,
                                     out_dir=out_dir, checkpoint_step=step)
    images = images or [0, 1, 2]
    if len(images) % 3:
      fail(f"--images takes test indices in triples a,b,c for arithmetic, "
           f"got {len(images)} indices.")
    return analysis.arithmetic(
        workdir, [images[i:i + 3] for i in range(0, len(images), 3)], rungs,
        out_dir=out_dir, checkpoint_step=step)
  return evaluation.evaluate(workdir, FLAGS.probe_train_size, FLAGS.seed,
                             out_dir=out_dir,
                             classifier_steps=FLAGS.classifier_steps,
                             decoder_images=FLAGS.decoder_images,
                             decoder_draws=FLAGS.decoder_draws,
                             arithmetic_triples=FLAGS.arithmetic_triples,
                             split=FLAGS.split, checkpoint_step=step)


def main(argv):
  interrupts.raise_if_interrupted()
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}; flags take the form --name=value.")
  if FLAGS.mode not in MODES:
    fail(f"unknown mode {FLAGS.mode!r}; choose one of {list(MODES)}.")
  try:  # config_flags defers a missing --config file's error to first use
    config = FLAGS.config
    config.get("name")
  except Exception as e:  # pylint: disable=broad-except
    config_file_error(sys.argv, e)
  workdir = workdirs.expand_path(
      FLAGS.workdir or os.path.join("runs", config.get("name", "default")))
  workdirs.expand_config_paths(config)
  logging.set_verbosity(logging.WARNING)
  runtime.quiet_library_warnings()
  runtime.quiet_closed_loop_callbacks()
  # Before JAX starts: determinism flags, and no up-front grab of 75% of the
  # GPU's memory by anything but the trainer.
  runtime.configure_jax(
      deterministic=deterministic_setting(FLAGS.mode, config, workdir),
      preallocate=FLAGS.mode == "train")
  quiet_missing_cuda()
  runtime.enable_compilation_cache()
  try:
    distributed.initialize_distributed(FLAGS.distributed)
  except distributed.SetupError as e:
    fail(str(e))
  import jax
  jax.devices()  # JAX's C++ start-up done: Ctrl-C may raise from here on
  interrupts.raise_if_interrupted()
  if FLAGS.mode != "train":  # the trainer records, and polls between steps
    interrupts.raise_at_once()
  # Imported here so --help and flag errors stay fast.
  from vlae_jax import analysis, configuration, files, train
  from vlae_jax.input_pipeline import DataError
  try:
    if FLAGS.mode != "train" and config.get("data_dir"):
      # The run's data moved: --config.data_dir=NEW re-points it.
      from vlae_jax import experiment
      experiment.repoint_data(workdir, config.data_dir)
    for path in run_mode(FLAGS.mode, config, workdir):
      print(path)
  except (configuration.ConfigError, workdirs.WorkdirError, DataError,
          analysis.AnalysisError) as e:
    fail(str(e), quiet_exit=True)
  except (train.NonFiniteError, train.OutOfMemoryError) as e:
    fail(str(e), code=3, quiet_exit=True)
  except files.WriteError as e:  # a full disk while writing an output
    fail(e.strerror, code=1, quiet_exit=True)


def deterministic_setting(mode, config, workdir) -> bool:
  """``config.deterministic`` of the run this mode works on: the command
  line's config when training, else the workdir's saved config.json."""
  if mode == "train":
    return bool(config.get("deterministic", True))
  try:
    return bool(workdirs.read_saved_config(workdir).get("deterministic", True))
  except workdirs.WorkdirError:
    return True  # the mode itself reports a missing or broken config.json


def quiet_missing_cuda():
  """No NVIDIA device node: the CUDA plugin of jax[cuda12] cannot start, and
  its traceback on every command would bury our one-line messages. JAX still
  falls back to the CPU; with a GPU present its errors stay visible."""
  if "JAX_PLATFORMS" not in os.environ and not os.path.exists("/dev/nvidiactl"):
    std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.CRITICAL)


def expand_config_argument(argv):
  """``argv`` with ``~`` and ``$VARS`` expanded in the --config file's path
  (a shell leaves them after ``--config=``)."""
  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith("--config="):
      out[i] = "--config=" + workdirs.expand_path(arg.split("=", 1)[1])
    elif arg == "--config" and i + 1 < len(out):
      out[i + 1] = workdirs.expand_path(out[i + 1])
  return out


def parse_flags(argv):
  """absl's parser, with a one-line message and exit code 2 on bad flags;
  --help and --helpfull print the flags and exit 0."""
  expanded = expand_config_argument(argv)
  if list(sys.argv) == list(argv):  # config_flags reads overrides there
    sys.argv[:] = expanded
  argv = expanded
  try:
    return FLAGS(argv)
  except CONFIG_ERRORS as e:
    if _raised_in(config_file_path(argv), e):
      config_file_error(argv, e)
    config_error(e)
  except Exception as e:  # pylint: disable=broad-except
    config_file_error(argv, e)
  except SystemExit:  # absl exits 1 after printing help
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
    message, code = interrupts.exit_status()
    fail(message, code=code)


if __name__ == "__main__":
  app.run(main_interruptible, flags_parser=parse_flags)
