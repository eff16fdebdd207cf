"""First-run JPEG decode speed of CelebA, by number of worker processes.

    python bench/decode_celeba.py [--data_dir ../shared/data/celeba]
        [--workers 1,2] [--images 4000] [--repeats 2]

Times ``datasets.decode_images`` (open, decode, crop 108/178, resize to
64x64) on the first ``--images`` full-size (178x218) JPEGs of an official-layout folder, with the
worker counts interleaved (1, 2, 1, 2, ...), and checks every count gives the
same bytes. Prints images/s per count, the speed-up, and the projected time of
the full 182,732-image first run (train + test, as `main.py` decodes it) on
16 cores at the measured per-worker rate. Writes results/performance/decode_celeba.json.
"""

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from vlae_jax import datasets, files  # pylint: disable=g-import-not-at-top

FULL_FIRST_RUN = 162_770 + 19_962  # train + test images of full CelebA


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=os.path.join(
      os.path.dirname(ROOT), "shared", "data", "celeba"))
  parser.add_argument("--workers", default="1,2")
  parser.add_argument("--images", type=int, default=4000)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--full_size_only", type=int, default=1,
                      help="1: only the official 178x218 JPEGs (the subset "
                      "also holds half-scale copies, 4x cheaper to decode)")
  parser.add_argument("--out", default="results/performance/decode_celeba.json")
  args = parser.parse_args()
  folder = os.path.join(args.data_dir, "img_align_celeba")
  from PIL import Image
  paths = []
  for name in sorted(n for n in os.listdir(folder) if n.endswith(".jpg")):
    path = os.path.join(folder, name)
    with Image.open(path) as image:  # reads the header only
      if image.size == (178, 218) or not args.full_size_only:
        paths.append(path)
    if len(paths) == args.images:
      break
  counts = [int(w) for w in args.workers.split(",")]
  seconds = {w: [] for w in counts}
  reference = None
  for _ in range(args.repeats):
    for workers in counts:
      start = time.perf_counter()
      images, keep = datasets.decode_images(paths, 64, paths, "decode",
                                                  workers)
      seconds[workers].append(time.perf_counter() - start)
      assert len(keep) == len(paths)
      if reference is None:
        reference = images
      assert (images == reference).all(), "worker count changed the pixels"
  cores = datasets.default_decode_workers()
  rows = []
  base = statistics.median(seconds[counts[0]])
  print(f"{len(paths)} JPEGs from {folder}; {cores} cores here")
  print(f"{'workers':>7} {'images/s':>9} {'min-max':>15} {'speed-up':>8}")
  for workers in counts:
    median = statistics.median(seconds[workers])
    rates = sorted(len(paths) / s for s in seconds[workers])
    rows.append({"workers": workers, "seconds": seconds[workers],
                 "images_per_second": len(paths) / median,
                 "speedup": base / median})
    print(f"{workers:>7} {len(paths) / median:9.0f} "
          f"{rates[0]:7.0f}-{rates[-1]:<7.0f} {base / median:8.2f}x")
  per_worker = rows[0]["images_per_second"] / counts[0]
  projected = FULL_FIRST_RUN / (16 * per_worker)
  print(f"projected first run of full CelebA ({FULL_FIRST_RUN:,} images): "
        f"{FULL_FIRST_RUN / per_worker / 60:.1f} min on 1 core, "
        f"{projected / 60:.1f} min on 16 cores (at {per_worker:.0f} "
        "images/s per worker, ideal scaling)")
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  files.write_atomically(args.out, json.dumps(
      {"images": len(paths), "cores": cores, "rows": rows,
       "per_worker_images_per_second": per_worker,
       "projected_16_core_seconds": projected}, indent=1))
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
