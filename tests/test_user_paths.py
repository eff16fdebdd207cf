"""Paths as people type them and folders as people keep them: ``~`` and
environment variables, missing and empty folders, linked folders, link
loops, dangling links, names that are not UTF-8, an image over Pillow's
decompression-bomb limit, and a run whose data folder moved."""

import json
import os
import shutil

import numpy as np
from PIL import Image

from conftest import ROOT, run_main
from test_folder import TINY_FOLDER as _TINY_FOLDER

# The config file by its absolute path: some tests run from another folder.
TINY_FOLDER = [f"--config={os.path.join(ROOT, 'configs', 'folder.py')}"
               if a.startswith("--config=") else a for a in _TINY_FOLDER]
from vlae_jax import datasets


def _images(folder, count, seed=0, size=(20, 24)):
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(count):
    Image.fromarray(rng.integers(0, 255, size[::-1] + (3,), np.uint8)).save(
        folder / f"img{seed}_{i:02d}.png")
  return folder


def _train(data_dir, workdir, cache, *extra):
  return run_main(*TINY_FOLDER, f"--config.data_dir={data_dir}",
                  f"--workdir={workdir}", f"--config.cache_dir={cache}",
                  *extra)


def test_tilde_and_variables_are_expanded_in_every_path(tmp_path,
                                                        monkeypatch):
  home = tmp_path / "home"
  _images(home / "photos" / "train", 8)
  _images(home / "photos" / "test", 4, seed=1)
  monkeypatch.setenv("HOME", str(home))
  monkeypatch.setenv("RUNS", str(tmp_path / "runs"))
  monkeypatch.chdir(tmp_path)
  result = _train("~/photos", "$RUNS/x", "~/cache")
  assert result.returncode == 0, result.stderr[-2000:]
  assert (tmp_path / "runs" / "x" / "config.json").exists()
  assert not (tmp_path / "~").exists() and not (tmp_path / "$RUNS").exists()
  saved = json.loads((tmp_path / "runs" / "x" / "config.json").read_text())
  assert saved["data_dir"] == str(home / "photos")
  assert saved["cache_dir"] == str(home / "cache")
  figures = run_main(TINY_FOLDER[0], "--mode=sample", "--workdir=$RUNS/x",
                     "--output_dir=~/figs")
  assert figures.returncode == 0, figures.stderr[-2000:]
  assert (home / "figs" / "samples.png").exists()
  # The config file itself, as people keep their own.
  (home / "my_config.py").write_text(
      "from configs import folder\n\n\ndef get_config():\n"
      "  return folder.get_config()\n")
  own = run_main("--config=~/my_config.py",
                 *[a for a in TINY_FOLDER if not a.startswith("--config=")],
                 "--config.data_dir=~/photos", "--workdir=$RUNS/y",
                 "--config.cache_dir=~/cache")
  assert own.returncode == 0, own.stderr[-2000:]
  assert (tmp_path / "runs" / "y" / "checkpoints").is_dir()


def test_a_missing_folder_is_missing_and_an_empty_one_is_empty(tmp_path):
  missing = _train(tmp_path / "nope", tmp_path / "w", tmp_path / "c")
  assert missing.returncode == 2
  assert "does not exist" in missing.stderr and "holds no" not in \
      missing.stderr
  (tmp_path / "empty").mkdir()
  empty = _train(tmp_path / "empty", tmp_path / "w", tmp_path / "c")
  assert empty.returncode == 2 and "holds no" in empty.stderr
  assert not (tmp_path / "w").exists()


def test_linked_folders_are_followed_and_loops_and_dangling_links_named(
    tmp_path, capsys):
  other_disk = _images(tmp_path / "elsewhere" / "test", 4, seed=1)
  data = tmp_path / "photos"
  _images(data / "train", 6)
  os.symlink(other_disk, data / "test")            # a linked split folder
  os.symlink(data, data / "train" / "loop")        # a link back up: a loop
  os.symlink(tmp_path / "gone.png", data / "train" / "dangling.png")
  found = datasets.folder_images(str(data))
  out = capsys.readouterr().out
  assert len([f for f in found if f.startswith("test/")]) == 4
  assert len([f for f in found if f.startswith("train/img")]) == 6
  assert "dangling.png" not in " ".join(found)
  assert out.count("lead back to a folder already read") == 1
  assert out.count("point to nothing (e.g. train/dangling.png)") == 1
  result = _train(data, tmp_path / "w", tmp_path / "c")
  assert result.returncode == 0, result.stderr[-2000:]


def test_names_that_are_not_utf8_are_read_and_named_safely(tmp_path):
  data = tmp_path / "photos"
  _images(data / "train", 6)
  _images(data / "test", 3, seed=1)
  raw = os.fsencode(str(data / "train")) + b"/caf\xe9_latin1.png"
  shutil.copy(data / "train" / "img0_00.png", raw)
  broken = os.fsencode(str(data / "train")) + b"/bad\xff.png"
  with open(broken, "wb") as f:
    f.write(b"not a png")
  result = _train(data, tmp_path / "w", tmp_path / "c")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  lines = [l for l in result.stdout.splitlines() if "bad" in l]
  assert len(lines) == 1, result.stdout
  assert lines[0].startswith(
      f"warning: skipping unreadable image {data}/train/bad\ufffd.png "
      "(UnidentifiedImageError: cannot identify image file")
  lines[0].encode("utf-8")  # printable: no lone surrogate
  # The Latin-1 name is an image like any other: 7 train images read.
  assert "caf" not in result.stdout


def test_an_image_over_the_decompression_bomb_limit_is_skipped_by_name(
    tmp_path, monkeypatch):
  data = tmp_path / "photos"
  _images(data / "train", 6)
  _images(data / "test", 3, seed=1)
  Image.new("RGB", (300, 200)).save(data / "train" / "panorama.png")
  # Pillow refuses images over twice MAX_IMAGE_PIXELS; a real 179-megapixel
  # panorama costs 0.5 GB to write here, so the limit is lowered instead
  # (decode_workers=1 decodes in this process, where the lowered limit is).
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20000)
  result = _train(data, tmp_path / "w", tmp_path / "c")
  assert result.returncode == 0, result.stderr[-2000:]
  skipped = [l for l in result.stdout.splitlines() if "panorama" in l]
  assert len(skipped) == 1, result.stdout
  assert skipped[0] == (
      f"warning: skipping unreadable image {data}/train/panorama.png (too "
      "large to decode safely: Image size (60000 pixels) exceeds limit of "
      "40000 pixels)")


def test_moved_data_is_repointed_when_its_files_match_and_refused_otherwise(
    tmp_path):
  data = tmp_path / "photos"
  _images(data / "train", 6)
  _images(data / "test", 3, seed=1)
  workdir, cache = tmp_path / "w", tmp_path / "c"
  trained = _train(data, workdir, cache)
  assert trained.returncode == 0, trained.stderr[-2000:]
  record = json.loads((workdir / "data.json").read_text())
  assert record["data_dir"] == str(data)
  moved = tmp_path / "moved" / "photos"
  moved.parent.mkdir()
  os.rename(data, moved)  # a move keeps sizes and modification times
  refused = run_main("--mode=reconstruct", "--count=2",
                     f"--workdir={workdir}")
  assert refused.returncode == 2 and "does not exist" in refused.stderr
  # Other photos in the new place: refused, naming both fingerprints.
  other = _images(tmp_path / "other" / "train", 6, seed=5).parent
  _images(other / "test", 3, seed=6)
  wrong = run_main("--mode=reconstruct", "--count=2",
                     f"--workdir={workdir}",
                   f"--config.data_dir={other}")
  assert wrong.returncode == 2
  line = wrong.stderr.strip().splitlines()[-1]
  assert "holds other files than the run" in line
  assert record["fingerprint"][:12] in line
  assert json.loads((workdir / "config.json").read_text())["data_dir"] == \
      str(data)
  right = run_main("--mode=reconstruct", "--count=2",
                     f"--workdir={workdir}",
                   f"--config.data_dir={moved}")
  assert right.returncode == 0, right.stderr[-2000:]
  assert f"data folder re-pointed: {data} -> {moved}" in right.stdout
  assert json.loads((workdir / "config.json").read_text())["data_dir"] == \
      str(moved)
  # Later commands, and a resume, need no flag.
  again = run_main("--mode=reconstruct", "--count=2",
                     f"--workdir={workdir}")
  assert again.returncode == 0, again.stderr[-2000:]
  resumed = _train(moved, workdir, cache, "--config.num_train_steps=8")
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  # A resume on other files is refused unless asked for.
  refused_resume = _train(other, workdir, cache, "--config.num_train_steps=12")
  assert refused_resume.returncode == 2
  assert "--allow_config_change" in refused_resume.stderr


def test_a_constant_attribute_and_a_tiny_test_split_are_said_so(tmp_path):
  """labels.csv with an attribute no image has, and 6 test images: the
  constant attribute is reported as constant and not measured (no value
  scaled by a zero spread), the intervals carry a caveat."""
  data = tmp_path / "photos"
  train = _images(data / "train", 16)
  test = _images(data / "test", 6, seed=1)
  rows = [f"{folder}/{p.name},{i % 2},-1"
          for folder, d in (("train", train), ("test", test))
          for i, p in enumerate(sorted(d.iterdir()))]
  (data / "labels.csv").write_text("file,Smiling,Eyeglasses\n"
                                   + "\n".join(rows) + "\n")
  workdir = tmp_path / "w"
  trained = _train(data, workdir, tmp_path / "c")
  assert trained.returncode == 0, trained.stderr[-2000:]
  result = run_main("--mode=evaluate", f"--workdir={workdir}",
                    "--probe_train_size=16", "--decoder_images=6",
                    "--decoder_draws=2", "--classifier_steps=5",
                    "--arithmetic_triples=2")
  assert result.returncode == 0, result.stderr[-2000:]
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  caveats = metrics["caveats"]
  assert any(c.startswith("Eyeglasses is constant over the 16 train "
                          "images: not measured") for c in caveats), caveats
  assert all("Eyeglasses" not in mode["factors"]
             for mode in metrics["decoder"].values())
  assert any("uses 6 test images" in c for c in caveats), caveats
  assert "caveat: the decoder side uses 6 test images" in result.stdout
  for mode in metrics["decoder"].values():
    for name, stats in mode["factors"].items():
      assert max(abs(v) for v in stats["control"]) < 1e6, (name, stats)
