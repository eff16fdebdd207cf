"""Training on any folder of images (`--config.dataset=folder`): real CelebA
JPEGs from ../shared/data plus PNGs of every mode, written here."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import CELEBA_DIR, needs_celeba, run_main, tiny_config
from vlae_jax import datasets

# A ladder small enough for 16x16 RGB images and a few steps.
TINY_FOLDER = ["--config=configs/folder.py", "--config.image_size=16",
               "--config.model.latent_dims=(2, 2, 2)",
               "--config.model.rung_kinds=('conv', 'conv', 'dense')",
               "--config.model.rung_widths=((4,), (8,), (16,))",
               "--config.model.rung_strides=()",
               "--config.rung_start_steps=()",
               "--config.loss.rung_mmd_weights=()",
               "--config.model.rung_std_ceilings=()",
               "--config.batch_size=4", "--config.num_train_steps=4",
               "--config.log_every=2", "--config.eval_every=4",
               "--config.num_eval_batches=1", "--config.image_every=4",
               "--config.checkpoint_every=4", "--config.decode_workers=1"]


def write_pngs(folder):
  """PNGs in the modes a user's folder holds, at odd sizes: grayscale,
  RGBA with a transparent corner, palette, grey+alpha, 16-bit grayscale."""
  rng = np.random.default_rng(0)
  folder.mkdir(parents=True, exist_ok=True)
  Image.fromarray(rng.integers(0, 255, (30, 41), np.uint8), "L").save(
      folder / "gray.png")
  rgba = rng.integers(0, 255, (50, 37, 4), np.uint8)
  rgba[:10, :10, 3] = 0  # transparent: laid over white
  Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
  Image.fromarray(rng.integers(0, 255, (47, 33, 3), np.uint8)).convert(
      "P", palette=Image.ADAPTIVE).save(folder / "palette.png")
  Image.fromarray(rng.integers(0, 255, (20, 20), np.uint8), "L").convert(
      "LA").save(folder / "gray_alpha.png")
  Image.fromarray(rng.integers(0, 65535, (24, 24), np.uint16)).save(
      folder / "deep.png")


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
  """40 real CelebA JPEGs in nested folders, the PNGs above, a hidden file
  and a text file (both ignored)."""
  root = tmp_path_factory.mktemp("photos") / "photos"
  source = os.path.join(CELEBA_DIR, "img_align_celeba")
  names = sorted(os.listdir(source))[:40]
  for i, name in enumerate(names):
    target = root / ("people" if i % 2 else "more/people")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(os.path.join(source, name), target / name)
  write_pngs(root / "drawn")
  (root / ".hidden.jpg").write_bytes(b"not an image")
  (root / "notes.txt").write_text("not an image either")
  return root


def folder_config(tmp_path, data_dir, **overrides):
  config = tiny_config(tmp_path, dataset="folder", data_dir=str(data_dir),
                       image_size=16, channels=3, decode_workers=1)
  for key, value in overrides.items():
    config[key] = value
  return config


@needs_celeba
def test_every_image_mode_is_read_cropped_and_split_by_hash(photo_folder,
                                                           tmp_path, capsys):
  files = datasets.folder_images(str(photo_folder))
  assert len(files) == 45 and "drawn/rgba.png" in files
  assert not any(f.startswith(".") or f.endswith(".txt") for f in files)
  config = folder_config(tmp_path, photo_folder, test_fraction=0.25)
  train = datasets.read_split(config, "train")
  test = datasets.read_split(config, "test")
  assert len(train) + len(test) == 45
  # The split is the hash rule, file by file.
  expected_test = [f for f in files if datasets.in_test_split(f, 0.25)]
  assert len(test) == len(expected_test) > 0
  assert train.images.shape[1:] == (16, 16, 3)
  assert train.images.dtype == np.uint8 and train.label_key == "none"
  # Every image equals the one-at-a-time reference (centred square of the
  # shorter side, RGB, transparency over white).
  order = [f for f in files if not datasets.in_test_split(f, 0.25)]
  for i, name in enumerate(order):
    with Image.open(photo_folder / name) as im:
      np.testing.assert_array_equal(
          train.images[i], datasets.square_crop_and_resize(im, 16, 3))
  rgba = np.asarray(Image.open(photo_folder / "drawn/rgba.png"))
  assert (rgba[:10, :10, 3] == 0).all()
  where = (order + expected_test).index("drawn/rgba.png")
  both = np.concatenate([train.images, test.images])
  # 37 px wide, cropped to rows 6..43: the transparent corner's remains
  # (rows 6-9, columns 0-9 -> the top-left pixels) decode white.
  assert (both[where][0, :2] == 255).all()
  # Images smaller than 16 px are none here; at 64 px all are enlarged.
  assert "enlarged" not in capsys.readouterr().out
  datasets.read_split(folder_config(tmp_path, photo_folder, image_size=64,
                                    test_fraction=0.25), "test")
  assert "were enlarged" in capsys.readouterr().out


def test_train_and_test_subfolders_are_the_split_and_grayscale_works(
    tmp_path):
  rng = np.random.default_rng(1)
  for split, count in (("train", 5), ("test", 2)):
    (tmp_path / "d" / split).mkdir(parents=True)
    for i in range(count):
      Image.fromarray(rng.integers(0, 255, (20, 20), np.uint8), "L").save(
          tmp_path / "d" / split / f"{i}.png")
  # A grayscale photo saved as RGB is still grayscale.
  gray = np.repeat(rng.integers(0, 255, (20, 20, 1), np.uint8), 3, axis=2)
  Image.fromarray(gray).save(tmp_path / "d" / "train" / "rgb_gray.jpg",
                             quality=90)
  config = folder_config(tmp_path, tmp_path / "d", channels=1)
  train, test = (datasets.read_split(config, s) for s in ("train", "test"))
  assert len(train) == 6 and len(test) == 2
  assert train.images.shape[1:] == (16, 16, 1)
  assert datasets.image_shape(config) == (16, 16, 1)
  # channels=1 and a colour image: named, never silently made gray.
  Image.fromarray(rng.integers(0, 255, (20, 20, 3), np.uint8)).save(
      tmp_path / "d" / "test" / "colour.png")
  with pytest.raises(datasets.DataError,
                     match=r"test/colour.png is a colour image .* "
                           r"--config.channels=3"):
    datasets.read_split(config, "test")


def test_labels_csv_classes_and_attributes(tmp_path):
  rng = np.random.default_rng(2)
  (tmp_path / "d" / "sub").mkdir(parents=True)
  names = [f"sub/{i}.png" for i in range(6)]
  for name in names:
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)).save(
        tmp_path / "d" / name)
  csv = tmp_path / "d" / "labels.csv"
  csv.write_text("file,label\n" + "".join(
      f"{n},{['cat', 'dog', 'cow'][i % 3]}\n" for i, n in enumerate(names)))
  config = folder_config(tmp_path, tmp_path / "d", test_fraction=0.5)
  files, labels, key, label_names = datasets.folder_index(config, "train")
  assert key == "label" and label_names == ["cat", "cow", "dog"]
  truth = {n: ["cat", "dog", "cow"][i % 3] for i, n in enumerate(names)}
  assert [label_names[l] for l in labels] == [truth[f] for f in files]
  # Attributes in a CSV named by the config, 1/-1 and true/false.
  other = tmp_path / "attributes.csv"
  other.write_text("file,Smiling,Hat\n" + "".join(
      f"./{n},{1 if i % 2 else -1},{'true' if i < 3 else 'false'}\n"
      for i, n in enumerate(names)))
  config.labels_file = str(other)
  files, labels, key, label_names = datasets.folder_index(config, "test")
  assert key == "attributes" and label_names == ["Smiling", "Hat"]
  expected = {n: [i % 2, int(i < 3)] for i, n in enumerate(names)}
  assert labels.tolist() == [expected[f] for f in files]
  split = datasets.load_split(config, "test")
  assert split.labels.tolist() == labels.tolist()
  # The cache is keyed by the CSV: a changed label is read again.
  other.write_text(other.read_text().replace("Smiling,Hat", "Smile,Hat"))
  assert datasets.load_split(config, "test").label_names == ["Smile", "Hat"]


@pytest.mark.parametrize("problem,match", [
    ("empty", r"holds no .jpg/.jpeg/.png images .*--config.data_dir"),
    ("unreadable", r"none of the \d+ (train|test) images under .* is "
                   r"readable \(e.g. .*[ab].jpg\)"),
    ("missing file", r"labels.csv:3 names 'gone.png', which is not an image"),
    ("malformed row", r"labels.csv:2 has 3 fields, the header has 2"),
    ("no row", r"image b.png \(and 0 more\) has no row in .*labels.csv"),
    ("bad value", r"labels.csv:3: Hat is 'maybe'"),
    ("bad header", r"labels.csv:1 must be a header 'file,label'"),
    ("duplicate row", r"labels.csv:3 names 'a.png' a second time \(first on "
                      r"line 2\); keep one row"),
    ("not utf-8", r"cannot read labels file .*labels.csv: .*utf-8.*; save it "
                  r"as a UTF-8 CSV"),
    ("no labels file", r"labels file .*nowhere.csv does not exist; point "
                       r"--config.labels_file at a CSV"),
    ("empty test", r"the test split of .* is empty .*raise "
                   r"--config.test_fraction"),
])
def test_bad_folders_are_one_line_exit_2_before_anything_is_written(
    tmp_path, problem, match):
  data = tmp_path / "d"
  data.mkdir()
  rng = np.random.default_rng(3)
  if problem != "empty":
    for name in ("a.png", "b.png"):
      Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)).save(
          data / name)
  if problem == "unreadable":
    for name in ("a.png", "b.png"):
      (data / name).unlink()
    for name in ("a.jpg", "b.jpg"):
      (data / name).write_bytes(b"\xff\xd8 truncated")
  csv = {"missing file": "file,label\na.png,x\ngone.png,y\nb.png,y\n",
         "malformed row": "file,label\na.png,x,extra\nb.png,y\n",
         "no row": "file,label\na.png,x\n",
         "bad value": "file,Hat\na.png,1\nb.png,maybe\n",
         "bad header": "name,label\na.png,x\nb.png,y\n",
         "duplicate row": "file,label\na.png,x\na.png,y\nb.png,y\n"}.get(
             problem)
  if csv:
    (data / "labels.csv").write_text(csv)
  if problem == "not utf-8":  # Latin-1 class names
    (data / "labels.csv").write_bytes(b"file,label\na.png,caf\xe9\nb.png,x\n")
  labels_file = ([f"--config.labels_file={tmp_path / 'nowhere.csv'}"]
                 if problem == "no labels file" else [])
  fraction = "1e-9" if problem == "empty test" else "0.5"
  workdir, cache = tmp_path / "w", tmp_path / "cache"
  result = run_main(f"--workdir={workdir}", *TINY_FOLDER,
                    f"--config.data_dir={data}",
                    f"--config.test_fraction={fraction}",
                    f"--config.cache_dir={cache}", *labels_file)
  assert result.returncode == 2, (problem, result.stdout[-1000:],
                                  result.stderr[-1000:])
  error = result.stderr.strip().splitlines()[-1]
  assert re.search(match, error), (problem, error)
  assert "Traceback" not in result.stderr
  assert not workdir.exists() and not cache.exists()


def test_bad_data_fields_are_refused_by_the_config_check(tmp_path):
  cases = [
      (["--config.data_dir="], "needs --config.data_dir=DIR"),
      (["--config.channels=2"], "must be 1 (grayscale) or 3 (RGB), got 2"),
      (["--config.test_fraction=1.5"], "must be in (0, 1)"),
      (["--config.dataset=pictures"], "unknown dataset 'pictures'"),
  ]
  for args, message in cases:
    result = run_main(f"--workdir={tmp_path / 'w'}", *TINY_FOLDER,
                      f"--config.data_dir={tmp_path}", *args)
    assert result.returncode == 2 and message in result.stderr, (args,
                                                                 result.stderr)
  result = run_main(f"--workdir={tmp_path / 'w'}", "--config.channels=3")
  assert result.returncode == 2
  assert "applies to folder and tfds:NAME data sets" in result.stderr
  assert not (tmp_path / "w").exists()


@needs_celeba
def test_main_trains_traverses_and_evaluates_a_folder(photo_folder,
                                                      tmp_path):
  """The README's two commands on a folder of real photos and PNGs, then
  evaluate: what needs no labels, and one line per skipped part."""
  workdir = tmp_path / "run"
  args = [f"--workdir={workdir}", f"--config.data_dir={photo_folder}",
          f"--config.cache_dir={tmp_path / 'cache'}"]
  result = run_main(*TINY_FOLDER, "--config.test_fraction=0.25", *args)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "step 4/4" in result.stdout
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["dataset"] == "folder" and saved["channels"] == 3
  result = run_main("--mode=traverse", f"--workdir={workdir}", "--steps=3")
  assert result.returncode == 0, result.stderr[-2000:]
  figures = sorted(p.name for p in (workdir / "figures").rglob("*.png"))
  assert any("traverse" in f for f in figures), figures
  result = run_main("--mode=evaluate", f"--workdir={workdir}",
                    "--probe_train_size=50", "--decoder_images=6",
                    "--decoder_draws=2")
  assert result.returncode == 0, result.stderr[-2000:]
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert metrics["dataset"] == "folder" and metrics["probe"] == {}
  assert metrics["claims"] == [] and "sample_quality" not in metrics
  assert len(metrics["mmd"]) == 3 and len(metrics["active_units"]) == 3
  assert set(metrics["decoder"]["resample"]["factors"]) == {
      "brightness", "contrast", "left_right", "top_bottom", "warmth",
      "tint", "saturation"}
  assert "skipped: probes, KID and the classifier's factors: the data set " \
         "has no labels" in result.stdout
  assert "skipped: the paper's claims" in result.stdout
  assert not (workdir / "eval" / "probe_heatmap.png").exists()
  # An attribute edit needs attributes: one line, exit 2.
  result = run_main("--mode=arithmetic", f"--workdir={workdir}",
                    "--attribute=Smiling", "--images=0,1,2")
  assert result.returncode == 2
  assert "has no attributes" in result.stderr


def test_tfds_splits_without_a_test_split_are_cut_from_train():
  """The split names given to TFDS's as_dataset for each split layout."""
  class Info:
    def __init__(self, splits):
      self.splits = dict.fromkeys(splits)

  class Builder:
    name = "some_set"

    def __init__(self, splits):
      self.info = Info(splits)

  pick = datasets.tfds_source.tfds_split_name
  assert [pick(Builder(["train", "test"]), s, 0.1)
          for s in ("train", "test")] == ["train", "test"]
  assert [pick(Builder(["train", "validation"]), s, 0.1)
          for s in ("train", "test")] == ["train", "validation"]
  assert [pick(Builder(["train"]), s, 0.2)
          for s in ("train", "test")] == ["train[:80%]", "train[80%:]"]
  with pytest.raises(datasets.DataError, match="no train split"):
    pick(Builder(["unlabelled"]), "train", 0.1)
