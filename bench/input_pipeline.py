"""Input pipeline throughput against what the train step consumes.

    python bench/input_pipeline.py --mnist_dir ../shared/data/mnist \
        --celeba_dir ../shared/data/celeba [--batches 200]

For MNIST and CelebA: images/s of (a) the cold read (IDX parse / JPEG decode,
crop and resize, as on a first run), (b) the training stream from the decoded
cache (tf.data, stateless shuffle, prefetch), and (c) the train step of the
config at batch 100 (from docs/train_throughput.json if present, else
measured). Prints a table and writes docs/input_pipeline.json.
"""

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import celeba, mnist  # pylint: disable=g-import-not-at-top
from vlae_jax import datasets, input_pipeline  # pylint: disable=g-import-not-at-top


def stream_rate(split, batch_size, batches):
  stream = input_pipeline.train_stream(split, batch_size, seed=0)
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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--mnist_dir", default=os.path.join(
      ROOT, "..", "shared", "data", "mnist"))
  parser.add_argument("--celeba_dir", default=os.path.join(
      ROOT, "..", "shared", "data", "celeba"))
  parser.add_argument("--batches", type=int, default=200)
  parser.add_argument("--out", default="docs/input_pipeline.json")
  args = parser.parse_args()
  step_rates = {}
  path = os.path.join(ROOT, "docs", "train_throughput.json")
  if os.path.exists(path):
    for row in json.load(open(path))["rows"]:
      if row["upsample"] == "auto" and row["dtype"] == "float32":
        step_rates[row["config"]] = row["images_per_second"]
  rows = []
  print(f"{'data':>7} {'cold img/s':>11} {'cached stream img/s':>20} "
        f"{'train step img/s':>17} {'stream/step':>12}")
  for name, get, folder in (("mnist", mnist.get_config, args.mnist_dir),
                            ("celeba", celeba.get_config, args.celeba_dir)):
    config = get()
    config.data_dir = os.path.abspath(folder)
    config.cache_dir = tempfile.mkdtemp() if name == "mnist" else ""
    cold = cold_rate(config, limit=600)
    split = datasets.load_split(config, "train")  # cached after this
    cached = stream_rate(split, config.batch_size, args.batches)
    step = step_rates.get(name, float("nan"))
    rows.append({"data": name, "cold_images_per_second": cold,
                 "cached_stream_images_per_second": cached,
                 "train_step_images_per_second": step,
                 "stream_over_step": cached / step})
    print(f"{name:>7} {cold:11.0f} {cached:20.0f} {step:17.1f} "
          f"{cached / step:11.1f}x", flush=True)
  with open(args.out, "w") as f:
    json.dump(rows, f, indent=1)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
