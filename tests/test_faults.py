"""Faults a user meets, injected for real: flipped bytes in checkpoints, a
changed model, broken start-up inputs, a read-only workdir, a full disk, a
changed or truncated decode cache, TFDS offline and TFDS's own builder.

Each CLI case checks the exit code, one line on stderr, no traceback, and
the workdir's files hashed before and after.
"""

import errno
import gzip
import hashlib
import json
import os
import re
import resource
import shutil
import socket
import struct
import time
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import (MNIST_DIR, ROOT, needs_mnist, run_main,
                      run_main_process, tiny_config)
from test_main import TINY
from vlae_jax import checkpoints, datasets, experiment, train
from vlae_jax import workdir as workdirs


def tree_hashes(folder):
  """``{relative path: sha256}`` of every file under ``folder`` but the
  trainer lock (which holds the pid of the last trainer)."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      if name == ".lock":
        continue
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


def assert_one_line_error(result, code=2, *texts):
  lines = result.stderr.strip().splitlines()
  assert result.returncode == code, (result.returncode, result.stderr[-3000:])
  assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), lines
  for text in texts:
    assert text in lines[0], (text, lines[0])
  return lines[0]


def flip_byte(path, offset=None):
  size = os.path.getsize(path)
  offset = size // 2 if offset is None else offset
  with open(path, "r+b") as f:
    f.seek(offset)
    byte = f.read(1)
    f.seek(offset)
    f.write(bytes([byte[0] ^ 0xFF]))


def data_files(step_folder):
  """The files holding array bytes (not Orbax's small metadata files)."""
  return sorted(
      os.path.join(root, name) for root, _, files in os.walk(step_folder)
      for name in files if os.sep + "d" + os.sep in os.path.join(root, name))


def test_a_flipped_byte_anywhere_in_the_array_files_never_goes_unnoticed(
    trained_run, tmp_path, capsys):
  """Every flip is either caught (the step is skipped with a warning naming
  it, the older verified step used) or provably harmless (it hit bytes no
  array is read from: the restored state equals the saved one bitwise)."""
  workdir = trained_run.workdir
  _, _, original = experiment.load_experiment(str(workdir))
  original = checkpoints.state_manifest(original)
  files = data_files(workdir / "checkpoints" / "10")
  assert len(files) >= 2
  biggest = max(files, key=os.path.getsize)  # the parameters' bytes
  detected, detected_in_biggest = 0, 0
  for i, target in enumerate(files):
    for fraction in ((0.25, 0.5, 0.75) if target == biggest else (0.5,)):
      copy = tmp_path / f"w{i}"
      shutil.copytree(workdir, copy)
      path = copy / os.path.relpath(target, workdir)
      flip_byte(path, int(os.path.getsize(path) * fraction))
      before = tree_hashes(copy)
      capsys.readouterr()
      _, _, state = experiment.load_experiment(str(copy))
      out = capsys.readouterr().out
      if int(state.step) == 5:
        assert f"skipping damaged checkpoint {copy / 'checkpoints' / '10'}" \
            in out
        detected += 1
        detected_in_biggest += target == biggest
      else:
        assert checkpoints.state_manifest(state) == original, (target, out)
      assert tree_hashes(copy) == before  # analysis renames nothing
      shutil.rmtree(copy)
  # Not vacuous: flips are caught, in the parameters' file too. (A flip in
  # bytes that restoring never reads is harmless: checked bitwise above.)
  assert detected_in_biggest >= 1 and detected >= 2


def test_flipped_checkpoint_on_the_cli_resumes_from_the_verified_one(
    trained_run, tmp_path):
  workdir, config, expected, _ = trained_run
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  # The middle byte of every array file of step 10: Orbax's layout of a
  # step varies from save to save, and the middle of one file is not always
  # bytes an array reads (a harmless flip, see the test above).
  for path in data_files(copy / "checkpoints" / "10"):
    flip_byte(path)
  args = [f"--workdir={copy}", f"--config.cache_dir={config.cache_dir}",
          "--config.model.rung_widths=((8, 16), (32,), (32,))",
          "--config.batch_size=16", "--config.num_train_steps=10",
          "--config.log_every=5", "--config.eval_every=1000",
          "--config.num_eval_batches=2", "--config.image_every=1000",
          "--config.checkpoint_every=5"]
  sample = run_main("--mode=sample", f"--workdir={copy}")
  assert sample.returncode == 0, sample.stderr[-2000:]
  assert "skipping damaged checkpoint" in sample.stdout
  assert f"{os.sep}10 (" in sample.stdout
  resumed = run_main(*args)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "resuming from step 5" in resumed.stdout
  assert (copy / "checkpoints" / "10.unreadable-0").is_dir()  # kept
  _, _, state = experiment.load_experiment(str(copy))
  assert int(state.step) == 10
  jax.tree_util.tree_map(np.testing.assert_array_equal, expected,
                         jax.device_get(state.params))


def test_a_checkpoint_without_its_manifest_is_never_trusted(
    trained_run, tmp_path, capsys):
  """The manifest of the newest step deleted and a byte of that step
  flipped: the step is skipped as unverifiable (analysis renames nothing,
  training keeps it as .unreadable-0) and the verified older step is used,
  so the damage is never trained on or re-saved under a fresh manifest."""
  workdir, config, _, _ = trained_run
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  os.remove(copy / "checkpoints" / "manifests" / "10.json")
  flip_byte(max(data_files(copy / "checkpoints" / "10"), key=os.path.getsize))
  before = tree_hashes(copy)
  capsys.readouterr()
  _, _, state = experiment.load_experiment(str(copy))
  out, err = capsys.readouterr()
  assert int(state.step) == 5 and "skipping" not in err  # said once
  assert (f"skipping damaged checkpoint {copy / 'checkpoints' / '10'} (no "
          "checksum manifest") in out and out.count("warning:") == 1
  assert tree_hashes(copy) == before
  train.train_and_evaluate(config, str(copy))
  out = capsys.readouterr().out
  assert os.path.isdir(copy / "checkpoints" / "10.unreadable-0")
  assert "kept as" in out and "no verified checkpoint is left" not in out
  assert os.path.exists(copy / "checkpoints" / "manifests" / "10.json")


@pytest.mark.parametrize("damage", ["cut", "not a manifest"])
def test_a_damaged_manifest_skips_its_checkpoint(trained_run, tmp_path,
                                                 capsys, damage):
  """The newest step's checksum manifest cut in half, or valid JSON of
  another shape: that step cannot be verified, the older one is used."""
  workdir, _, _, _ = trained_run
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  manifest = copy / "checkpoints" / "manifests" / "10.json"
  text = manifest.read_text()
  manifest.write_text(text[:len(text) // 2] if damage == "cut" else "[1, 2]")
  capsys.readouterr()
  _, _, state = experiment.load_experiment(str(copy))
  out = capsys.readouterr().out
  assert int(state.step) == 5
  assert (f"skipping damaged checkpoint {copy / 'checkpoints' / '10'} "
          "(unreadable manifest: ") in out and out.count("warning:") == 1
  if damage == "not a manifest":
    assert "10.json is not a checkpoint manifest" in out


def test_workdirs_without_a_usable_checkpoint_and_a_schedule_note(
    trained_run, tmp_path, capsys):
  workdir, _, _, _ = trained_run
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  # A run still inside its progressive schedule: figures decode every rung
  # at full scale, and say so.
  saved = json.loads((copy / "config.json").read_text())
  saved["rung_start_steps"] = [0, 5, 20]
  (copy / "config.json").write_text(json.dumps(saved))
  capsys.readouterr()
  _, _, state = experiment.load_experiment(str(copy))
  assert int(state.step) == 10
  assert ("note: step 10 is inside the progressive schedule (every rung "
          "fully in from step 20)") in capsys.readouterr().out
  # Checkpoints that all fail verification, then none at all.
  for step in ("5", "10"):
    os.remove(copy / "checkpoints" / "manifests" / f"{step}.json")
  with pytest.raises(workdirs.WorkdirError,
                     match=r"has no readable checkpoint; train first with "
                     r"`python main.py --workdir="):
    experiment.load_experiment(str(copy))
  shutil.rmtree(copy / "checkpoints")
  with pytest.raises(workdirs.WorkdirError,
                     match=r"has no checkpoint; train first"):
    experiment.load_experiment(str(copy))
  # A config.json that parses but is no config.
  (copy / "config.json").write_text("[1, 2]")
  with pytest.raises(workdirs.WorkdirError,
                     match=r"config.json is not a config \(a JSON object\); "
                     r"rerun training with the run's --config and "
                     r"--allow_config_change"):
    experiment.load_experiment(str(copy))


def test_the_only_checkpoint_damaged_says_the_run_starts_over(
    trained_run, tmp_path, capsys):
  workdir, config, _, _ = trained_run
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  shutil.rmtree(copy / "checkpoints" / "5")
  os.remove(copy / "checkpoints" / "manifests" / "10.json")
  capsys.readouterr()
  state = train.train_and_evaluate(config, str(copy))
  out = capsys.readouterr().out
  assert int(state.step) == 10
  assert out.count("skipping damaged checkpoint") == 1
  assert ("no verified checkpoint is left in "
          f"{copy / 'checkpoints'}; training starts over from step 0") in out
  assert os.path.isdir(copy / "checkpoints" / "10.unreadable-0")


def test_a_changed_model_shape_is_refused_and_nothing_is_renamed(
    trained_run, tmp_path):
  workdir, config, _, _ = trained_run
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  before = tree_hashes(copy)
  result = run_main(f"--workdir={copy}", f"--config.cache_dir={config.cache_dir}",
                    "--config.model.rung_widths=((8, 24), (32,), (32,))",
                    "--config.batch_size=16", "--config.num_train_steps=20",
                    "--allow_config_change")
  line = assert_one_line_error(result, 2, "holds a model of another shape",
                               "model.rung_widths", "new --workdir")
  assert "saved (" in line and "now (" in line
  assert tree_hashes(copy) == before


def test_a_transient_restore_error_renames_nothing(trained_run, tmp_path,
                                                   monkeypatch):
  # Out of memory while reading: not damage, so the checkpoint is kept as is.
  workdir, config, _, _ = trained_run
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  before = tree_hashes(copy)

  def out_of_memory(*args, **kwargs):
    raise MemoryError("cannot allocate 12 GiB")

  monkeypatch.setattr(checkpoints.ocp.CheckpointManager, "restore",
                      out_of_memory)
  with pytest.raises(checkpoints.CheckpointAccessError,
                     match="cannot read checkpoint .*nothing was changed"):
    train.train_and_evaluate(config, str(copy))
  assert tree_hashes(copy) == before
  # Real OS errors are classified by their errno, damage by the rest: the
  # process's open-file limit set to 0 makes the next open fail for real
  # (EMFILE), root or not.
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
  resource.setrlimit(resource.RLIMIT_NOFILE, (0, hard))
  try:
    with pytest.raises(OSError) as too_many_files:
      open(os.path.join(copy, "config.json"))
  finally:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
  assert too_many_files.value.errno == errno.EMFILE
  assert checkpoints.is_transient(too_many_files.value)
  assert not checkpoints.is_transient(ValueError("bad zstd frame"))
  assert not checkpoints.is_transient(FileNotFoundError(2, "missing"))


def test_start_up_faults_are_one_line_exit_2(trained_run, tmp_path):
  workdir, config, _, _ = trained_run
  # A --config file that is missing, has a syntax error, or raises.
  missing = run_main(f"--config={tmp_path / 'nope.py'}")
  assert_one_line_error(missing, 2, "does not exist", "nope.py")
  (tmp_path / "syntax.py").write_text("def get_config(:\n  pass\n")
  syntax = run_main(f"--config={tmp_path / 'syntax.py'}")
  assert_one_line_error(syntax, 2, "at line 1", "SyntaxError")
  (tmp_path / "raises.py").write_text(
      "def get_config():\n  return {}['x']\n")
  raises = run_main(f"--config={tmp_path / 'raises.py'}")
  assert_one_line_error(raises, 2, "at line 2", "KeyError")
  # A workdir path that is a regular file.
  (tmp_path / "a_file").write_text("x")
  for mode in ("train", "traverse"):
    result = run_main(f"--workdir={tmp_path / 'a_file'}", f"--mode={mode}")
    assert_one_line_error(result, 2, "is a file, not a folder")
  assert (tmp_path / "a_file").read_text() == "x"
  # A truncated config.json: one line with the way out, and the way out works.
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  text = (copy / "config.json").read_text()
  (copy / "config.json").write_text(text[:len(text) // 2])
  before = tree_hashes(copy)
  args = [f"--workdir={copy}", f"--config.cache_dir={config.cache_dir}",
          "--config.model.rung_widths=((8, 16), (32,), (32,))",
          "--config.batch_size=16", "--config.num_train_steps=12",
          "--config.log_every=6", "--config.eval_every=1000",
          "--config.num_eval_batches=2", "--config.image_every=1000",
          "--config.checkpoint_every=6"]
  for mode_args in (["--mode=traverse"], args):
    result = run_main(f"--workdir={copy}", *mode_args)
    assert_one_line_error(result, 2, "config.json is damaged",
                          "--allow_config_change")
  assert tree_hashes(copy) == before
  fixed = run_main(*args, "--allow_config_change")
  assert fixed.returncode == 0, fixed.stderr[-2000:]
  assert "resuming from step 10" in fixed.stdout
  assert '"batch_size": 16' in (copy / "config.json").read_text()


def read_only_mount(folder):
  """Runs shell commands with ``folder`` bind-mounted read-only in a private
  mount namespace (root), or with its write bits removed (other users)."""
  if os.geteuid() != 0:
    for root, dirs, files in os.walk(folder):
      for name in dirs + files + [""]:
        path = os.path.join(root, name)
        os.chmod(path, os.stat(path).st_mode & ~0o222)
    return lambda command: command
  probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
  if probe.returncode != 0:
    pytest.skip(f"cannot make a mount namespace: {probe.stderr[-200:]}")
  q = f"'{folder}'"
  return lambda command: (
      f"unshare -m sh -c \"mount --bind {q} {q} && "
      f"mount -o remount,bind,ro {q} && {command}\"")


def run_shell(command):
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  return subprocess.run(["sh", "-c", command], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


def test_a_read_only_workdir(trained_run, tmp_path):
  workdir, config, _, _ = trained_run
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  before = tree_hashes(copy)
  wrap = read_only_mount(copy)
  main = f"{sys.executable} {os.path.join(ROOT, 'main.py')} --workdir='{copy}'"
  train_args = (f"--config.cache_dir='{config.cache_dir}' "
                "--config.model.rung_widths='((8, 16), (32,), (32,))' "
                "--config.batch_size=16 --config.num_train_steps={steps} "
                "--config.log_every=5 --config.eval_every=1000 "
                "--config.num_eval_batches=2 --config.image_every=1000 "
                "--config.checkpoint_every=5")
  # Re-running the finished run needs no write.
  done = run_shell(wrap(f"{main} {train_args.format(steps=10)}"))
  assert done.returncode == 0, done.stderr[-2000:]
  assert "already trained for 10 steps" in done.stdout
  # Training further cannot: one line.
  more = run_shell(wrap(f"{main} {train_args.format(steps=20)}"))
  assert_one_line_error(more, 2, "is read-only", "writable folder")
  # A figure mode says where it can write, and writes there.
  figures = run_shell(wrap(f"{main} --mode=sample"))
  assert_one_line_error(figures, 2, "cannot write to", "--output_dir")
  out = tmp_path / "elsewhere"
  elsewhere = run_shell(wrap(f"{main} --mode=sample --output_dir='{out}'"))
  assert elsewhere.returncode == 0, elsewhere.stderr[-2000:]
  assert (out / "samples.png").exists()
  if os.geteuid() == 0:
    assert tree_hashes(copy) == before


def test_a_full_disk_stops_at_the_failed_save(tmp_path):
  """A 24 MiB tmpfs workdir that fills up after the first checkpoint."""
  if os.geteuid() != 0 or subprocess.run(
      ["unshare", "-m", "true"], capture_output=True).returncode != 0:
    pytest.skip("needs root and a mount namespace to mount a small tmpfs")
  disk = tmp_path / "disk"
  disk.mkdir()
  result_dir = tmp_path / "result"
  workdir = disk / "w"
  main = (f"{sys.executable} {os.path.join(ROOT, 'main.py')} "
          f"--workdir='{workdir}' --config.cache_dir='{tmp_path / 'cache'}' "
          "--config.model.rung_widths='((8, 16), (32,), (32,))' "
          "--config.batch_size=16 --config.num_train_steps=100000 "
          "--config.log_every=10 --config.eval_every=100000 "
          "--config.image_every=100000 --config.checkpoint_every=20")
  # Start training, wait for checkpoint 20, pause the run while the disk
  # fills (on loaded cores it would otherwise save more meanwhile), go on.
  script = f"""
set -u
mount -t tmpfs -o size=24m tmpfs '{disk}'
{main} > '{tmp_path}/out.txt' 2> '{tmp_path}/err.txt' &
pid=$!
for i in $(seq 1 3000); do
  [ -d '{workdir}/checkpoints/20' ] && break; sleep 0.05
done
[ -d '{workdir}/checkpoints/20' ] || {{ echo 'no checkpoint 20 in 150 s' >&2; kill $pid; exit 3; }}
kill -STOP $pid
dd if=/dev/zero of='{disk}/filler' bs=1M 2>/dev/null
kill -CONT $pid
wait $pid; echo $? > '{tmp_path}/rc.txt'
rm '{disk}/filler'
cp -r '{workdir}' '{result_dir}'
"""
  done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, PYTHONUNBUFFERED="1"))
  assert done.returncode == 0, done.stderr[-2000:]
  rc = int((tmp_path / "rc.txt").read_text())
  err = (tmp_path / "err.txt").read_text()
  out = (tmp_path / "out.txt").read_text()
  assert rc == 2, (rc, err[-2000:], out[-1000:])
  assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
  # Whichever write meets the full disk first (a checkpoint or the
  # TensorBoard events) stops the run with one line naming its folder.
  assert (("saving checkpoint " in err and " to " in err) or
          "cannot write TensorBoard events to" in err), err
  assert str(workdir) in err and "No space left on device" in err
  # Between seeing checkpoint 20 and the pause the run may have saved
  # one more; the newest saved one is named, and it is what restores.
  newest = re.search(r"earlier checkpoints are intact \(newest: step (\d+)\)",
                     err)
  assert newest, err
  newest = int(newest.group(1))
  assert newest >= 20 and newest % 20 == 0, err
  stopped = int(err.split("training stopped at step ")[1].split(",")[0])
  assert newest < stopped <= newest + 40, err  # at the failed write
  # The earlier checkpoint is intact: it restores and verifies.
  _, _, state = experiment.load_experiment(str(result_dir))
  assert int(state.step) == newest


def test_decode_cache_follows_the_source_files(tmp_path):
  from test_analysis import write_celeba_folder
  folder = tmp_path / "celeba"
  write_celeba_folder(folder, count=12, size=(89, 109))
  config = tiny_config(tmp_path, dataset="celeba", image_size=16,
                       data_dir=str(folder))
  first = datasets.load_split(config, "train")
  again = datasets.load_split(config, "train")
  assert isinstance(again.images, np.memmap)  # served from the cache
  np.testing.assert_array_equal(first.images, again.images)
  # Removing an image changes the key: the split is read again.
  train_names = datasets.celeba_index(str(folder), "train")[0]
  os.remove(folder / "img_align_celeba" / train_names[0])
  fewer = datasets.load_split(config, "train")
  assert len(fewer) == len(first) - 1
  # Changing an image's bytes (same name) changes it too.
  target = folder / "img_align_celeba" / train_names[1]
  from PIL import Image
  Image.new("RGB", (89, 109), (255, 0, 0)).save(target)
  changed = datasets.load_split(config, "train")
  assert not np.array_equal(changed.images[0], fewer.images[0])
  # (a JPEG: red within rounding)
  np.testing.assert_allclose(changed.images[0, 8, 8], [255, 0, 0], atol=3)
  # An emptied folder no longer trains from the cache.
  for name in os.listdir(folder / "img_align_celeba"):
    os.remove(folder / "img_align_celeba" / name)
  with pytest.raises(datasets.DataError, match="holds no .jpg files"):
    datasets.load_split(config, "train")


@needs_mnist
def test_an_unwritable_decode_cache_warns_and_the_data_still_loads(
    tmp_path, capsys):
  """--config.cache_dir under a regular file (ENOTDIR, as a mistyped path
  gives): the split is decoded and returned, once a warning says so."""
  blocker = tmp_path / "not_a_folder"
  blocker.write_text("a file")
  config = tiny_config(tmp_path, dataset="mnist", data_dir=MNIST_DIR)
  config.cache_dir = str(blocker / "cache")
  capsys.readouterr()
  split = datasets.load_split(config, "test")
  out = capsys.readouterr().out
  assert ("warning: cannot write the decode cache under "
          f"{blocker / 'cache'}") in out and "Not a directory" in out
  assert "set --config.cache_dir to a writable folder" in out
  assert out.count("\n") == 1
  np.testing.assert_array_equal(
      split.images, datasets.read_mnist_idx(MNIST_DIR, "test").images)
  assert blocker.read_text() == "a file"


@needs_mnist
def test_a_truncated_decode_cache_is_rebuilt_with_a_warning(tmp_path, capsys):
  config = tiny_config(tmp_path, dataset="mnist", data_dir=MNIST_DIR)
  expected = np.asarray(datasets.load_split(config, "test").images)
  folder = datasets.cache.cache_folder(config, datasets.source_for(config.dataset), "test")
  images = os.path.join(folder, "images.npy")
  with open(images, "r+b") as f:
    f.truncate(os.path.getsize(images) // 3)
  capsys.readouterr()
  rebuilt = datasets.load_split(config, "test")
  out = capsys.readouterr().out
  assert f"warning: decode cache {folder} is damaged" in out
  np.testing.assert_array_equal(np.asarray(rebuilt.images), expected)
  again = datasets.load_split(config, "test")  # the rebuilt cache
  assert isinstance(again.images, np.memmap)
  np.testing.assert_array_equal(np.asarray(again.images), expected)


def test_tfds_offline_is_one_line_within_seconds(tmp_path):
  if not datasets.tfds_source.unreachable_download_hosts(
      ["https://storage.googleapis.com/cvdf-datasets/mnist/"], timeout=3):
    pytest.skip("this machine can reach the TFDS download host")
  import time
  start = time.time()
  result = run_main("--config=configs/mnist.py", f"--workdir={tmp_path / 'w'}",
                    f"--config.tfds_data_dir={tmp_path / 'tfds'}",
                    f"--config.cache_dir={tmp_path / 'cache'}")
  assert_one_line_error(result, 2, "cannot download TFDS mnist",
                        "--config.data_dir", "--config.tfds_data_dir")
  assert time.time() - start < 60
  assert not (tmp_path / "w").exists()


@needs_mnist
def test_tfds_own_mnist_builder_from_local_files_then_training(tmp_path,
                                                              monkeypatch):
  """TFDS's real mnist builder (checksums, generation, TFRecords) with only
  its download step served from ../shared/data/mnist; no network is touched.

  The shared files hold the official IDX bytes re-gzipped, so the checksum
  registry that TFDS validates the download against lists those files."""
  from vlae_jax import tf_gate
  tfds = tf_gate.import_tfds()
  from tensorflow_datasets.core import utils as tfds_utils
  from tensorflow_datasets.core.download import checksums, downloader

  def no_network(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args}")

  monkeypatch.setattr(socket.socket, "connect", no_network)
  data_dir = tmp_path / "tfds"
  builder_class = type(tfds.builder("mnist", data_dir=str(data_dir)))
  official = builder_class.url_infos
  local = {}
  for url, info in official.items():
    with open(os.path.join(MNIST_DIR, info.filename), "rb") as f:
      data = f.read()
    local[url] = checksums.UrlInfo(size=tfds_utils.Size(len(data)),
                                   checksum=hashlib.sha256(data).hexdigest(),
                                   filename=info.filename)
  monkeypatch.setattr(builder_class, "url_infos", local)

  def local_download(self, url, destination_path, verify=True):
    del verify
    return self._sync_file_copy(os.path.join(MNIST_DIR,
                                             official[url].filename),
                                destination_path)

  monkeypatch.setattr(downloader._Downloader, "_sync_download", local_download)
  # The offline probe would (rightly) find the official host unreachable;
  # here the download is served locally, so the builder's path is taken.
  monkeypatch.setattr(datasets.tfds_source, "unreachable_download_hosts",
                      lambda urls, timeout=5.0: [])
  config = tiny_config(tmp_path, dataset="mnist",
                       tfds_data_dir=str(data_dir))
  # The project's TFDS route prepares through TFDS's builder...
  via_tfds = datasets.mnist.read_tfds_mnist(config, "test")
  builder = tfds.builder("mnist", data_dir=str(data_dir))
  assert builder.is_prepared()
  assert builder.info.splits["train"].num_examples == 60000
  # ...and gives the IDX files' images and labels, in TFDS's order.
  idx = datasets.read_mnist_idx(MNIST_DIR, "test")
  assert via_tfds.images.shape == idx.images.shape == (10000, 28, 28, 1)
  key = lambda s: [hashlib.sha1(im.tobytes()).hexdigest() + str(l)
                   for im, l in zip(s.images, s.labels)]
  assert sorted(key(via_tfds)) == sorted(key(idx))
  # --config.dataset=tfds:mnist, the route for any TFDS image set: the
  # encoded PNGs decoded on every core, the ClassLabel's names.
  generic = tiny_config(tmp_path, dataset="tfds:mnist", image_size=28,
                        channels=1, tfds_data_dir=str(data_dir))
  via_name = datasets.load_split(generic, "test")
  assert via_name.label_key == "label"
  assert via_name.label_names == [str(i) for i in range(10)]
  assert sorted(key(via_name)) == sorted(key(idx))
  assert os.path.isdir(datasets.cache.cache_folder(generic, datasets.source_for(generic.dataset), "test"))
  with pytest.raises(datasets.DataError, match="TFDS has no data set "
                     "'no_such_set'.*tfds.list_builders"):
    datasets.read_split(tiny_config(tmp_path, dataset="tfds:no_such_set",
                                    tfds_data_dir=str(data_dir)), "test")
  # main.py trains through the TFDS route (the prepared data).
  result = run_main("--config=configs/mnist.py", f"--workdir={tmp_path / 'w'}",
                    f"--config.tfds_data_dir={data_dir}",
                    f"--config.cache_dir={tmp_path / 'cache2'}", *TINY[:2],
                    "--config.num_train_steps=3", "--config.log_every=3",
                    "--config.eval_every=3", "--config.num_eval_batches=1",
                    "--config.image_every=1000", "--config.checkpoint_every=3")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "step 3/3" in result.stdout


@needs_mnist
def test_out_of_memory_in_the_step_is_one_line_and_the_rerun_works(tmp_path):
  """A batch of all 60,000 MNIST images through a 2,048-channel bottom conv
  needs one XLA buffer far larger than the machine's memory: the allocation
  really fails, and the user reads one line naming the batch size; the
  corrected rerun trains in that workdir. (A narrow ladder of few layers:
  the failure is the same as the full model's, its compiles cheaper.)"""
  workdir = tmp_path / "w"
  model = ["--config=configs/mnist.py", f"--config.data_dir={MNIST_DIR}",
           f"--config.cache_dir={tmp_path / 'cache'}",
           "--config.model.rung_kinds=('conv', 'dense', 'dense')",
           "--config.model.rung_widths=((2048,), (32,), (32,))"]
  # In a process of its own: the failed allocation must not touch the
  # suite's process.
  result = run_main_process(f"--workdir={workdir}", *model,
                            "--config.batch_size=60000",
                            "--config.num_train_steps=2")
  line = assert_one_line_error(
      result, 3, "out of memory in the train step at --config.batch_size=60000",
      "--config.batch_size=30000")
  assert "GiB did not fit" in line
  rerun = run_main(f"--workdir={workdir}", *model,
                   "--config.batch_size=16", "--config.num_train_steps=2",
                   "--config.checkpoint_every=2",
                   "--config.num_eval_batches=1")
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert "step 2/2" in rerun.stdout


def test_a_batch_larger_than_the_train_split_is_refused_first(tmp_path):
  config = tiny_config(tmp_path, batch_size=100000)
  with pytest.raises(train.configuration.ConfigError,
                     match=r"--config.batch_size=100000 is larger than the "
                     r"train split \(1500 images\); use at most 1500"):
    train.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


@needs_mnist
def test_damaged_mnist_idx_files_are_one_line_errors(tmp_path):
  """Real t10k files cut, flipped and swapped: each a DataError naming the
  file and the fix, and main.py exits 2 with that one line."""
  with gzip.open(os.path.join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz")) as f:
    labels = f.read()
  with open(os.path.join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz"), "rb") as f:
    packed = f.read()
  cut = gzip.compress
  cases = {
      "gzip cut short": (packed[:len(packed) // 2], "cannot read IDX "
                         "file .*t10k-labels-idx1-ubyte.gz.*re-download it"),
      # Depending on where, zlib finds the flip (a bad distance) or only
      # the CRC does.
      "deflate byte flipped": (packed, "cannot read IDX file .*t10k-labels"
                               ".*invalid distance.*re-download it"),
      "crc caught flip": (packed, "cannot read IDX file .*t10k-labels.*CRC "
                          "check failed.*re-download it"),
      "payload cut": (cut(labels[:-100]), r"t10k-labels-idx1-ubyte.gz is "
                      r"truncated: header says \(10000,\), found 9900 values"),
      "header cut": (cut(labels[:6]), r"t10k-labels-idx1-ubyte.gz is "
                     r"truncated"),
      "bad magic": (cut(b"\x01" + labels[1:]), "is not an IDX file "
                    r"\(bad magic number\)"),
      "float data": (cut(labels[:2] + b"\x0d" + labels[3:]),
                     "expected unsigned-byte IDX data, got type 0x0d"),
      "too few labels": (cut(labels[:4] + struct.pack(">I", 9000) +
                             labels[8:8 + 9000]), "MNIST test: 10000 images "
                         "but 9000 labels; re-download the files"),
  }
  flip_at = {"deflate byte flipped": 100, "crc caught flip": None}
  for problem, (damaged, message) in cases.items():
    folder = tmp_path / problem.replace(" ", "_")
    folder.mkdir()
    for name in os.listdir(MNIST_DIR):
      os.symlink(os.path.join(MNIST_DIR, name), folder / name)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    target.unlink()
    target.write_bytes(damaged)
    if problem in flip_at:
      flip_byte(target, flip_at[problem])  # None: the middle byte
    with pytest.raises(datasets.DataError, match=message):
      datasets.read_mnist_idx(str(folder), "test")
  # Through main.py: exit 2, the one line, nothing written.
  result = run_main(f"--workdir={tmp_path / 'w'}", "--config=configs/mnist.py",
                    f"--config.data_dir={tmp_path / 'header_cut'}",
                    f"--config.cache_dir={tmp_path / 'cache'}",
                    "--config.num_train_steps=2")
  assert_one_line_error(result, 2, "is truncated", "re-download it")
  assert not (tmp_path / "w").exists()


def test_a_refused_resume_leaves_config_json_and_the_original_command(
    trained_run, tmp_path):
  """A resume with --allow_config_change that stops on non-finite values
  before saving leaves config.json as it was: the original command resumes
  as before. Once a checkpoint under the new config is saved, config.json
  holds it."""
  workdir, config, _, _ = trained_run
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  before = (copy / "config.json").read_text()
  common = (f"--workdir={copy}", f"--config.cache_dir={config.cache_dir}",
            "--config.model.rung_widths=((8, 16), (32,), (32,))",
            "--config.batch_size=16", "--config.log_every=5",
            "--config.eval_every=5", "--config.num_eval_batches=2",
            "--config.image_every=5", "--config.checkpoint_every=5")
  diverged = run_main(*common, "--config.num_train_steps=15",
                      "--config.learning_rate=1e30", "--allow_config_change")
  assert diverged.returncode == 3, diverged.stderr[-2000:]
  assert (copy / "config.json").read_text() == before
  original = run_main(*common, "--config.num_train_steps=15")
  assert original.returncode == 0, original.stderr[-2000:]
  assert "step 15/15" in original.stdout
  changed = run_main(*common, "--config.num_train_steps=20",
                     "--config.learning_rate=0.0005", "--allow_config_change")
  assert changed.returncode == 0, changed.stderr[-2000:]
  assert json.loads((copy / "config.json").read_text())[
      "learning_rate"] == 0.0005


def test_evaluate_that_cannot_write_keeps_the_previous_metrics(
    trained_run, tmp_path):
  """A real write failure (the file-size limit, EFBIG, as a full disk's
  ENOSPC) while evaluate writes its outputs: one line, exit 1, and the
  complete metrics.json of the earlier evaluation still parses."""
  workdir, _, _, _ = trained_run
  copy = tmp_path / "w"
  shutil.copytree(workdir, copy)
  args = ("--mode=evaluate", f"--workdir={copy}", "--probe_train_size=100",
          "--decoder_images=6", "--decoder_draws=2", "--classifier_steps=5",
          "--arithmetic_triples=2")
  first = run_main(*args)
  assert first.returncode == 0, first.stderr[-2000:]
  before = (copy / "eval" / "metrics.json").read_bytes()
  assert len(before) > 2048
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  resource.setrlimit(resource.RLIMIT_FSIZE, (2048, hard))
  try:
    second = run_main(*args, "--seed=1")
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
  line = assert_one_line_error(second, 1, f"cannot write {copy / 'eval'}",
                               "the previous file is unchanged")
  assert "File too large" in line
  assert (copy / "eval" / "metrics.json").read_bytes() == before
  json.loads(before)
  assert not [p for p in os.listdir(copy / "eval") if ".tmp-" in p]


def test_a_tfds_set_without_images_is_refused_before_any_download(tmp_path):
  """The builder's features are read before anything is fetched: a text
  data set is one line naming its features, offline or not, and its folder
  holds nothing afterwards."""
  tfds_dir = tmp_path / "tfds"
  start = time.monotonic()
  result = run_main(f"--workdir={tmp_path / 'w'}",
                    "--config.dataset=tfds:imdb_reviews",
                    f"--config.tfds_data_dir={tfds_dir}",
                    f"--config.cache_dir={tmp_path / 'cache'}")
  line = assert_one_line_error(result, 2, "TFDS imdb_reviews has no 'image' "
                               "feature", "'text'", "choose an image data set")
  assert "cannot download" not in line
  assert time.monotonic() - start < 60
  downloaded = [f for _, _, files in os.walk(tfds_dir) for f in files] \
      if tfds_dir.exists() else []
  assert downloaded == []
  assert not (tmp_path / "w").exists()
