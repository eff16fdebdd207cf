"""Face arithmetic as a number and as the paper's Fig. 4: analogies
``z_c + z_a - z_b`` (``inference.arithmetic_codes``) scored by the
attribute classifier (``intervention.arithmetic_table``)."""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from vlae_jax import inference, intervention, plotting
from vlae_jax.evaluation.context import Run


def measure(run: Run, classify, triples: int) -> Dict:
  """Per attribute and method (all rungs, each rung, pixels, c decoded):
  transfer and kept rates with intervals."""
  return intervention.arithmetic_table(
      run.model, run.variables, run.test_images, run.test_means,
      run.test.labels, run.test.label_names,
      run.domain.arithmetic(run.test.label_names), classify,
      triples_per_attribute=triples, seed=run.seed)


def arithmetic_figure(path: str, model, variables, images: np.ndarray,
                      means: Sequence[np.ndarray], arithmetic: Dict,
                      per_attribute: int = 2) -> str:
  """Paper Fig. 4 from the scored triples (fixed seed, not picked by hand):
  per row a, b, c, c decoded, decode(z_c + z_a - z_b) and the pixel
  arithmetic, for the first ``per_attribute`` triples of each attribute."""
  rows = [t for a in arithmetic["attributes"].values()
          for t in a["first_triples"][:per_attribute]]
  a, b, c = np.asarray(rows).T
  z_a, z_b, z_c = ([m[rows_] for m in means] for rows_ in (a, b, c))
  decoded_c = inference.decode_images(model, variables, z_c)
  result = inference.decode_images(model, variables, inference.arithmetic_codes(
      z_a, z_b, z_c, range(len(means))))
  pixels = np.clip(images[a] - images[b] + images[c], 0.0, 1.0)
  grid = np.stack([images[a], images[b], images[c], decoded_c, result,
                   pixels], axis=1)
  return plotting.save_png(path, plotting.image_grid(grid))


