"""KID of runs trained at different image sizes, in one feature space.

    python bench/kid_same_space.py --workdirs runs/celeba_small,runs/celeba60 \
        [--size 64] [--out results/performance/kid_same_space.json]

`evaluate` measures KID in the features of a classifier it trains at the
run's own image size, so a 32x32 run's KID and a 64x64 run's are in
different spaces. Here one classifier is trained (exactly as `evaluate`
trains it: seed 0, 1,000 steps, the train split's attributes) at --size, and
every run's decoded prior samples and reconstructions are resized to --size
(bilinear) before their features are taken, against the real test images at
--size. Beside each run, the control that bounds what its resolution can
reach: the real test images resized to the run's size and back ("real
through the run's resolution"), whose KID is what a perfect generator at
that size would score. Same seeds, counts and KID estimator as `evaluate`.
"""

import argparse
import json
import os
import sys

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# pylint: disable=g-import-not-at-top
from vlae_jax import datasets, experiment, files, inference, sample_quality
from vlae_jax import workdir as workdirs


def resized(images: np.ndarray, size: int) -> np.ndarray:
  """``[n, size, size, C]`` floats in [0, 1] from ``[n, H, W, C]`` images in
  [0, 1] (or uint8): bilinear (antialiased when shrinking)."""
  images = np.asarray(images, np.float32)
  if images.max() > 1.5:
    images = images / 255.0
  if images.shape[1] == size:
    return images
  out = jax.image.resize(images, (len(images), size, size, images.shape[-1]),
                         "bilinear", antialias=True)
  return np.clip(np.asarray(out), 0.0, 1.0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdirs", required=True,
                      help="comma-separated workdirs of CelebA runs")
  parser.add_argument("--size", type=int, default=64,
                      help="the image size of the common feature space")
  parser.add_argument("--count", type=int, default=5000)
  parser.add_argument("--classifier_steps", type=int, default=1000)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()
  workdirs_ = args.workdirs.split(",")
  configs = [workdirs.load_config(w) for w in workdirs_]
  space = configs[0].copy_and_resolve_references()
  space.image_size = args.size
  train = datasets.load_split(space, "train")
  test = datasets.load_split(space, "test")
  classifier, params = sample_quality.train_classifier(
      train.images, train.labels, steps=args.classifier_steps, seed=0)
  rows = np.sort(np.random.default_rng(0).permutation(len(test))[:args.count])
  real_features, _ = sample_quality.features(classifier, params,
                                             test.images[rows])
  scale = float(np.sqrt(np.mean(np.square(real_features)))) or 1.0
  real_features = real_features / scale

  def kid_of(images):
    f, _ = sample_quality.features(classifier, params,
                                   resized(images, args.size))
    return sample_quality.kid(f / scale, real_features, seed=0)["mean"]

  results = {"size": args.size, "test_images": len(rows), "runs": []}
  for workdir, config in zip(workdirs_, configs):
    _, model, state = experiment.load_experiment(workdir)
    variables = inference.variables_of(state)
    own = datasets.load_split(config, "test")
    own_images = np.asarray(own.images[rows], np.float32) / 255.0
    key = jax.random.PRNGKey(0)  # evaluate's key and fold-ins
    samples = inference.decode_images(model, variables, inference.prior_codes(
        model, jax.random.fold_in(key, 2), len(rows)))
    recon = inference.decode_images(
        model, variables, inference.encode_means(model, variables, own_images))
    row = {"workdir": workdir, "image_size": config.image_size,
           "step": int(state.step),
           "kid_samples": kid_of(samples),
           "kid_reconstructions": kid_of(recon),
           "kid_real_through_resolution": kid_of(own_images)}
    results["runs"].append(row)
    print(json.dumps(row), flush=True)
  print("| run | trained at | step | KID samples | KID reconstructions | "
        "real test images through its resolution |\n| --- | --- | --- | --- "
        "| --- | --- |")
  for r in results["runs"]:
    print(f"| {r['workdir']} | {r['image_size']}x{r['image_size']} | "
          f"{r['step']} | {r['kid_samples']:.3f} | "
          f"{r['kid_reconstructions']:.3f} | "
          f"{r['kid_real_through_resolution']:.3f} |")
  if args.out:
    files.write_atomically(args.out, json.dumps(results, indent=1))


if __name__ == "__main__":
  main()
