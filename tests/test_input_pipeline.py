"""Data sources (bundled, local official layouts, TFDS) and the stream."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import CELEBA_DIR, MNIST_DIR, needs_celeba, needs_mnist, tiny_config
from vlae_jax import datasets, input_pipeline


def test_digits_split_and_value_range():
  train = datasets.read_digits("train")
  test = datasets.read_digits("test")
  assert len(train) + len(test) == 1797 and len(test) == 297
  batch = train.batch(np.arange(10))
  assert batch["image"].shape == (10, 8, 8, 1)
  assert batch["image"].dtype == np.float32
  assert 0.0 <= batch["image"].min() and batch["image"].max() == 1.0
  assert set(np.unique(train.labels)) == set(range(10))


@needs_mnist
def test_local_mnist_idx_files():
  config = tiny_config(dataset="mnist", data_dir=MNIST_DIR)
  train = datasets.read_split(config, "train")
  test = datasets.read_split(config, "test")
  assert train.images.shape == (60000, 28, 28, 1)
  assert test.images.shape == (10000, 28, 28, 1)
  # The well-known first labels of each file.
  assert list(train.labels[:5]) == [5, 0, 4, 1, 9]
  assert list(test.labels[:3]) == [7, 2, 1]
  # The README's pixel mean of the training set.
  assert abs(train.images.mean() / 255.0 - 0.1307) < 5e-4
  assert train.images.dtype == np.uint8


@needs_celeba
def test_local_celeba_index_counts_and_attributes():
  counts = {}
  for split in ("train", "validation", "test"):
    names, labels, attribute_names = datasets.celeba_index(CELEBA_DIR,
                                                                 split)
    counts[split] = len(names)
    assert labels.shape == (len(names), 40)
    assert set(np.unique(labels)) <= {0, 1}
  assert counts == {"train": 14283, "validation": 780, "test": 660}
  assert attribute_names[:3] == ["5_o_Clock_Shadow", "Arched_Eyebrows",
                                 "Attractive"]
  names, labels, attribute_names = datasets.celeba_index(CELEBA_DIR,
                                                               "train")
  row = labels[names.index("000001.jpg")]
  # 000001.jpg: -1 1 1 -1 ... in list_attr_celeba.txt; Smiling (col 32) is 1.
  assert list(row[:4]) == [0, 1, 1, 0]
  assert row[attribute_names.index("Smiling")] == 1
  assert row[attribute_names.index("Male")] == 0


@needs_celeba
def test_celeba_crop_follows_each_images_own_width():
  from PIL import Image
  sizes = set()
  for name in sorted(os.listdir(os.path.join(CELEBA_DIR, "img_align_celeba"))
                     )[:40]:
    with Image.open(os.path.join(CELEBA_DIR, "img_align_celeba", name)) as im:
      sizes.add(im.size)
      out = datasets.celeba_crop_and_resize(im, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
  assert sizes <= {(178, 218), (89, 109)}
  # A half-scale copy gives (nearly) the same 64x64 crop as the full image.
  with Image.open(os.path.join(CELEBA_DIR, "img_align_celeba",
                               "000001.jpg")) as im:
    full = im.convert("RGB")
  half = full.resize((89, 109), Image.BILINEAR)
  a = datasets.celeba_crop_and_resize(full, 64).astype(float)
  b = datasets.celeba_crop_and_resize(half, 64).astype(float)
  assert np.abs(a - b).mean() < 12


def test_celeba_reader_on_a_small_official_layout(tmp_path):
  from PIL import Image
  root = tmp_path / "celeba"
  (root / "img_align_celeba").mkdir(parents=True)
  names = [f"{i:06d}.jpg" for i in range(1, 6)]
  rng = np.random.default_rng(0)
  for i, name in enumerate(names[:4]):  # 000005.jpg is listed but absent
    size = (178, 218) if i % 2 == 0 else (89, 109)
    mode = "L" if i == 3 else "RGB"  # a grayscale image is converted
    Image.fromarray(rng.integers(0, 255, size[::-1] + ((3,) if mode == "RGB"
                                                        else ()), np.uint8),
                    mode).save(root / "img_align_celeba" / name)
  (root / "img_align_celeba" / "000004.jpg").write_bytes(b"not a jpeg")
  attr = ["5", " ".join(f"A{j}" for j in range(40))]
  attr += [f"{n} " + " ".join("1" if (i + j) % 3 == 0 else "-1"
                              for j in range(40))
           for i, n in enumerate(names)]
  (root / "list_attr_celeba.txt").write_text("\r\n".join(attr) + "\r\n")
  (root / "list_eval_partition.txt").write_text(
      "\n".join(f"{n} {0 if i < 3 else 2}" for i, n in enumerate(names)))
  train = datasets.read_celeba_folder(str(root), "train", 16)
  assert train.images.shape == (3, 16, 16, 3)
  np.testing.assert_array_equal(train.labels[1], [(1 + j) % 3 == 0
                                                  for j in range(40)])
  with pytest.raises(datasets.DataError, match="no readable CelebA"):
    datasets.read_celeba_folder(str(root), "test", 16)  # only the bad one


@pytest.fixture
def mocked_download(monkeypatch):
  """mock_data fakes TFDS's download and preparation; the project's offline
  probe of the download hosts would test this machine's network instead
  (tests/test_faults.py tests it, and TFDS's real builder, for real)."""
  monkeypatch.setattr(datasets.tfds_source, "unreachable_download_hosts",
                      lambda urls, timeout=5.0: [])


def test_tfds_mnist_route_under_mock_data(tmp_path, mocked_download):
  config = tiny_config(dataset="mnist", data_dir="")
  with tfds.testing.mock_data(num_examples=24):
    split = datasets.read_split(config, "train")
  assert split.images.shape == (24, 28, 28, 1)
  assert split.images.dtype == np.uint8 and split.labels.shape == (24,)


def test_tfds_celeba_route_under_mock_data(tmp_path, mocked_download):
  config = tiny_config(dataset="celeba", data_dir="", image_size=32)
  with tfds.testing.mock_data(num_examples=6):
    split = datasets.read_split(config, "test")
  assert split.images.shape == (6, 32, 32, 3)
  assert split.labels.shape == (6, 40) and split.label_key == "attributes"
  assert "Smiling" in split.label_names


def test_cache_is_written_once_and_read_back(tmp_path, mocked_download):
  config = tiny_config(tmp_path, dataset="mnist", data_dir="")
  with tfds.testing.mock_data(num_examples=10):
    first = datasets.load_split(config, "test")
  # Outside mock_data a TFDS read would fail here: the cache must serve it.
  second = datasets.load_split(config, "test")
  np.testing.assert_array_equal(first.images, second.images)
  np.testing.assert_array_equal(first.labels, second.labels)


def test_stream_is_a_pure_function_of_seed_and_step():
  data = datasets.read_digits("test")  # 297 images
  batch = 64
  stream = input_pipeline.train_stream(data, batch, seed=3)
  batches = [next(stream) for _ in range(14)]
  resumed = input_pipeline.train_stream(data, batch, seed=3, start_step=9)
  for step in range(9, 14):
    got = next(resumed)
    np.testing.assert_array_equal(got["image"], batches[step]["image"])
    np.testing.assert_array_equal(got["label"], batches[step]["label"])
  # Each epoch is a permutation: the first 297 stream elements are the split.
  images = np.concatenate([b["image"] for b in batches]).reshape(-1, 64)
  first_epoch = images[:297]
  flat = data.images.reshape(-1, 64).astype(np.float32) / 255.0
  assert sorted(map(bytes, first_epoch)) == sorted(map(bytes, flat))
  assert not np.array_equal(first_epoch, flat)  # and it is shuffled
  other = next(input_pipeline.train_stream(data, batch, seed=4))
  assert not np.array_equal(other["image"], batches[0]["image"])


@pytest.mark.parametrize("max_index", [1, 2, 5, 255, 256, 296, 1499, 1796,
                                       14282, 59999, 65535, 2**20 - 3,
                                       2**31 + 5, 10**12])
def test_index_shuffle_equals_tensorflows_op(max_index):
  """The stream's permutation, computed in NumPy, is TensorFlow's
  RandomIndexShuffle bit for bit (keys past 2**32 and negative epochs
  included), so workdirs trained by the tf.data stream resume unchanged."""
  import tensorflow as tf
  rng = np.random.default_rng(max_index)
  index = rng.integers(0, max_index + 1, 500)
  key = np.stack([rng.integers(0, 2**40, 500), rng.integers(-5, 50, 500),
                  rng.integers(0, 3, 500)], axis=1)
  ours = input_pipeline.index_shuffle(index, key, max_index)
  theirs = tf.raw_ops.RandomIndexShuffle(
      index=tf.constant(index, tf.int64), seed=tf.constant(key, tf.int64),
      max_index=tf.constant(max_index, tf.int64), rounds=4).numpy()
  np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("max_index", [0, 1, 7, 296, 65535, 65536, 131072])
def test_index_shuffle_is_a_permutation(max_index):
  """Every epoch draws each image once: also at 2**k + 1 images, where
  TensorFlow's op repeats one (its block is a bit short there)."""
  order = input_pipeline.index_shuffle(np.arange(max_index + 1), [7, 3, 0],
                                       max_index)
  np.testing.assert_array_equal(np.sort(order), np.arange(max_index + 1))
  if max_index > 7:
    assert not np.array_equal(order, np.arange(max_index + 1))


def test_stream_equals_the_tf_data_stream_it_replaced():
  """Batches of the NumPy stream equal those the tf.data stream (the
  implementation before it, rebuilt here from TensorFlow's ops) gave, for
  two shards of a batch that crosses epoch boundaries."""
  import tensorflow as tf
  data = datasets.read_digits("test")  # 297 images
  images = tf.constant(data.images)
  for shard in (0, 1):
    stream = input_pipeline.train_stream(data, 100, seed=5, start_step=4,
                                         shard_index=shard, num_shards=2)
    for step in range(4, 10):
      position = step * 100 + shard * 50 + tf.range(50, dtype=tf.int64)
      seeds = tf.stack([tf.fill([50], tf.constant(5, tf.int64)),
                        position // 297, tf.zeros([50], tf.int64)], axis=1)
      index = tf.raw_ops.RandomIndexShuffle(
          index=position % 297, seed=seeds,
          max_index=tf.constant(296, tf.int64), rounds=4)
      expected = (tf.cast(tf.gather(images, index), tf.float32) / 255.0
                  ).numpy()
      got = next(stream)
      np.testing.assert_array_equal(got["image"], expected)
      np.testing.assert_array_equal(got["label"],
                                    data.labels[index.numpy()])
    stream.close()


def test_cached_epoch_order_gives_the_rows_of_the_cipher_per_batch():
  for num_images, batch in ((297, 64), (1797, 100), (5, 3)):
    order = input_pipeline._epoch_orders(num_images, seed=9)  # pylint: disable=protected-access
    for step in (0, 1, 7, 30, 31):
      for shard in (0, 1):
        np.testing.assert_array_equal(
            input_pipeline.batch_indices(step, batch, num_images, 9, shard,
                                         2, epoch_order=order),
            input_pipeline.batch_indices(step, batch, num_images, 9, shard,
                                         2))


def test_stream_reports_an_error_of_its_thread_and_stops_when_closed():
  data = datasets.read_digits("test")
  broken = datasets.Split(images=data.images, labels=data.labels[:5],
                          label_key=data.label_key, label_names=[])
  stream = input_pipeline.train_stream(broken, 64, seed=0)
  with pytest.raises(IndexError):
    next(stream)
  stream = input_pipeline.train_stream(data, 64, seed=0)
  next(stream)
  stream.close()
  stream._thread.join(timeout=60)  # pylint: disable=protected-access
  assert not stream._thread.is_alive()  # pylint: disable=protected-access


def test_eval_batches_pad_the_last_batch_and_count_valid_rows():
  data = datasets.read_digits("test")
  out = list(input_pipeline.eval_batches(data, 100))
  assert [v for _, v in out] == [100, 100, 97]
  assert all(b["image"].shape == (100, 8, 8, 1) for b, _ in out)


@pytest.mark.parametrize("make,match", [
    (lambda t: tiny_config(dataset="mnist", data_dir=str(t / "nope")),
     "does not exist"),
    (lambda t: tiny_config(dataset="mnist", data_dir=str(t)), "is missing"),
    (lambda t: tiny_config(dataset="celeba", data_dir=str(t)),
     "img_align_celeba is missing"),
])
def test_bad_data_folders_give_clear_errors(tmp_path, make, match):
  with pytest.raises(datasets.DataError, match=match):
    datasets.read_split(make(tmp_path), "train")


@needs_celeba
def test_parallel_decode_equals_serial_and_reports_progress(capsys):
  folder = os.path.join(CELEBA_DIR, "img_align_celeba")
  paths = [os.path.join(folder, n) for n in sorted(os.listdir(folder))[:160]]
  paths.insert(7, os.path.join(folder, "missing.jpg"))  # skipped, named
  serial, kept_serial = datasets.decode_images(
      paths, 32, paths, "decoding test", workers=1, chunk=40)
  parallel, kept_parallel = datasets.decode_images(
      paths, 32, paths, "decoding test", workers=2, chunk=40,
      progress_every=0.0)
  assert kept_serial == kept_parallel == [i for i in range(161) if i != 7]
  assert serial.shape == (160, 32, 32, 3) and serial.dtype == np.uint8
  np.testing.assert_array_equal(serial, parallel)
  # Each image equals the one-at-a-time reference function.
  from PIL import Image
  with Image.open(paths[0]) as im:
    np.testing.assert_array_equal(
        serial[0], datasets.celeba_crop_and_resize(im, 32))
  out = capsys.readouterr().out
  progress = [l for l in out.splitlines() if l.startswith("decoding test: ")]
  assert any("images/s, ETA" in l and "/161 (" in l for l in progress), out
  assert any("161 images in" in l and "2 workers" in l for l in progress), out
  assert "skipping unreadable image" in out and "missing.jpg" in out


def test_tfds_can_load_what_it_needs_to_prepare_a_data_set():
  """A fresh install crashed in download_and_prepare with
  ModuleNotFoundError: importlib_resources (a lazy import TFDS does not
  declare); requirements.txt now installs it."""
  from tensorflow_datasets.core import dataset_builder
  assert callable(dataset_builder.importlib_resources.files)


def test_celeba_identities_follow_the_split_and_refuse_a_mismatch(tmp_path):
  from test_analysis import write_celeba_folder
  write_celeba_folder(tmp_path, count=12, size=(8, 8))
  data_dir = str(tmp_path)
  names = [f"{i:06d}.jpg" for i in range(1, 13)]  # 1-8 train, 9-12 test
  assert datasets.celeba_identities(data_dir, "test", 4) is None  # no file
  person = {n: 100 + (3 * i) % 5 for i, n in enumerate(names)}
  lines = [f"{n} {person[n]}" for n in reversed(names)]  # any row order
  (tmp_path / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
  np.testing.assert_array_equal(datasets.celeba_identities(data_dir, "test", 4),
                                [person[n] for n in names[8:]])
  np.testing.assert_array_equal(
      datasets.celeba_identities(data_dir, "train", 8),
      [person[n] for n in names[:8]])
  # A decoded split of another length (a skipped image) or a face without
  # a row: no identities, never identities paired with the wrong faces.
  assert datasets.celeba_identities(data_dir, "test", 3) is None
  (tmp_path / "identity_CelebA.txt").write_text("\n".join(lines[1:]) + "\n")
  assert datasets.celeba_identities(data_dir, "test", 4) is None
  assert datasets.celeba_identities("", "test", 4) is None


@needs_celeba
def test_real_celeba_identities_and_disjoint_splits():
  test = datasets.celeba_identities(CELEBA_DIR, "test", 660)
  train = datasets.celeba_identities(CELEBA_DIR, "train", 14283)
  assert test.shape == (660,) and train.shape == (14283,)
  # Rows as identity_CelebA.txt gives them, in the split's file order.
  names = datasets.celeba_index(CELEBA_DIR, "test")[0]
  with open(os.path.join(CELEBA_DIR, "identity_CelebA.txt")) as f:
    row = dict(line.split() for line in f if line.strip())
  assert [int(row[n]) for n in names] == list(test)
  assert int(row["000001.jpg"]) == 2880  # the file's first line
  # CelebA's splits share no person: the verifier's test faces are people
  # it never saw.
  assert not set(test) & set(train)
  # Enough same-person pairs for the identity claim.
  _, counts = np.unique(test, return_counts=True)
  assert (counts * (counts - 1) // 2).sum() > 1000
