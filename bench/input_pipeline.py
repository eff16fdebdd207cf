"""Input pipeline throughput against what the train step consumes.

    python bench/input_pipeline.py --mnist_dir ../shared/data/mnist \
        --celeba_dir ../shared/data/celeba [--batches 200]

For MNIST and CelebA: images/s of (a) the cold read (IDX parse / JPEG decode,
crop and resize, as on a first run), (b) the training stream from the decoded
cache (NumPy, stateless shuffle, a prefetch thread), beside the tf.data
stream it replaced (rebuilt here from TensorFlow's ops, where TensorFlow is
installed), each timed in its own process, alternating, ``--rounds`` times
(median, min-max), and (c) the train step of the config at batch 100 (from
results/performance/train_throughput.json if present). Prints a table and writes
results/performance/input_pipeline.json.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import celeba, mnist  # pylint: disable=g-import-not-at-top
from vlae_jax import datasets, files, input_pipeline  # pylint: disable=g-import-not-at-top


def tf_data_stream(data, batch_size, seed):
  """The tf.data stream of earlier versions (same batches), for reference."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vlae_jax import tf_gate  # pylint: disable=g-import-not-at-top
  tf = tf_gate.import_tensorflow()
  images = tf.constant(np.asarray(data.images))
  labels = tf.constant(np.asarray(data.labels).astype(np.int32))
  num_images = len(data)
  offsets = tf.range(batch_size, dtype=tf.int64)

  def make_batch(step):
    position = step * batch_size + offsets
    seeds = tf.stack([tf.fill([batch_size], tf.constant(seed, tf.int64)),
                      position // num_images,
                      tf.zeros([batch_size], tf.int64)], axis=1)
    index = tf.raw_ops.RandomIndexShuffle(
        index=position % num_images, seed=seeds,
        max_index=tf.constant(num_images - 1, tf.int64), rounds=4)
    return {"image": tf.cast(tf.gather(images, index), tf.float32) / 255.0,
            data.label_key: tf.gather(labels, index)}

  ds = tf.data.Dataset.range(0, np.iinfo(np.int64).max)
  ds = ds.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True).prefetch(tf.data.AUTOTUNE)
  return ds.as_numpy_iterator()


def stream_rate(split, batch_size, batches, form="numpy"):
  if form == "numpy":
    stream = input_pipeline.train_stream(split, batch_size, seed=0)
  else:
    stream = tf_data_stream(split, batch_size, seed=0)
  next(stream)  # start-up
  start = time.perf_counter()
  for _ in range(batches):
    next(stream)
  return batches * batch_size / (time.perf_counter() - start)


def cold_rate(config, limit):
  start = time.perf_counter()
  if config.dataset == "celeba":
    names, _, _ = datasets.celeba_index(config.data_dir, "test")
    names = names[:limit]
    from PIL import Image
    image_dir = os.path.join(config.data_dir, "img_align_celeba")
    for name in names:
      with Image.open(os.path.join(image_dir, name)) as im:
        datasets.celeba_crop_and_resize(im, config.image_size)
    count = len(names)
  else:
    count = len(datasets.read_split(config, "train"))
  return count / (time.perf_counter() - start)


def configured(name, folder):
  config = {"mnist": mnist, "celeba": celeba}[name].get_config()
  config.data_dir = os.path.abspath(folder)
  return config


def child_rate(name, folder, form, batches):
  """Images/s of one stream form, timed in a fresh process."""
  import subprocess  # pylint: disable=g-import-not-at-top
  out = subprocess.run(
      [sys.executable, __file__, "--child", f"{name},{form}",
       f"--{name}_dir", folder, "--batches", str(batches)],
      check=True, capture_output=True, text=True).stdout
  return float(out.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--mnist_dir", default=os.path.join(
      ROOT, "..", "shared", "data", "mnist"))
  parser.add_argument("--celeba_dir", default=os.path.join(
      ROOT, "..", "shared", "data", "celeba"))
  parser.add_argument("--batches", type=int, default=200)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--child", default="", help=argparse.SUPPRESS)
  parser.add_argument("--out", default="results/performance/input_pipeline.json")
  args = parser.parse_args()
  if args.child:
    name, form = args.child.split(",")
    folder = args.mnist_dir if name == "mnist" else args.celeba_dir
    config = configured(name, folder)
    split = datasets.load_split(config, "train")
    print(stream_rate(split, config.batch_size, args.batches, form))
    return
  import importlib.util  # pylint: disable=g-import-not-at-top
  forms = (("numpy", "tfdata") if importlib.util.find_spec("tensorflow")
           else ("numpy",))
  step_rates = {}
  path = os.path.join(ROOT, "results", "performance", "train_throughput.json")
  if os.path.exists(path):
    for row in json.load(open(path))["rows"]:
      if row["upsample"] == "auto" and row["dtype"] == "float32":
        step_rates[row["config"]] = row["images_per_second"]
  import numpy as np  # pylint: disable=g-import-not-at-top
  rows = []
  print(f"{'data':>7} {'cold img/s':>11} " + " ".join(
      f"{form + ' stream img/s (min-max)':>36}" for form in forms)
        + f" {'train step img/s':>17}")
  for name, folder in (("mnist", args.mnist_dir),
                       ("celeba", args.celeba_dir)):
    config = configured(name, folder)
    cold = cold_rate(config, limit=600)
    datasets.load_split(config, "train")  # decoded into the cache once
    rates = {form: [] for form in forms}
    for _ in range(args.rounds):  # alternating, each in its own process
      for form in forms:
        rates[form].append(child_rate(name, folder, form, args.batches))
    step = step_rates.get(name, float("nan"))
    row = {"data": name, "cold_images_per_second": cold,
           "train_step_images_per_second": step}
    cells = []
    for form in forms:
      median = float(np.median(rates[form]))
      row[f"{form}_stream_images_per_second"] = rates[form]
      row[f"{form}_stream_over_step"] = median / step
      cells.append(f"{median:.0f} ({min(rates[form]):.0f}-"
                   f"{max(rates[form]):.0f})")
    rows.append(row)
    print(f"{name:>7} {cold:11.0f} " + " ".join(f"{c:>36}" for c in cells)
          + f" {step:17.1f}", flush=True)
  files.write_atomically(args.out, json.dumps(
      {"cpu": _cpu_model(), "rows": rows}, indent=1))
  print(f"wrote {args.out}")


def _cpu_model():
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return "unknown"


if __name__ == "__main__":
  main()
