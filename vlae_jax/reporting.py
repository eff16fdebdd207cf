"""TensorBoard event files and the image grids logged during training."""

from __future__ import annotations

import os
from typing import Dict

import jax
import numpy as np

from vlae_jax import plotting, runtime


class Writer:
  """Scalars and images to ``<workdir>/tb`` (tf.summary event files)."""

  def __init__(self, workdir: str):
    self._tf = runtime.import_tensorflow()
    self._writer = self._tf.summary.create_file_writer(
        os.path.join(workdir, "tb"))

  def scalars(self, step: int, values: Dict[str, np.ndarray]):
    with self._writer.as_default(step=step):
      for name, value in values.items():
        value = np.asarray(value, np.float64)
        if value.ndim == 0:
          self._tf.summary.scalar(name, value)
        else:  # per-rung vectors: one curve per rung
          for i, v in enumerate(value.ravel()):
            self._tf.summary.scalar(f"{name}/rung{i}", v)
    self._writer.flush()

  def images(self, step: int, pictures: Dict[str, np.ndarray]):
    with self._writer.as_default(step=step):
      for name, picture in pictures.items():
        self._tf.summary.image(name, picture[None], step=step)
    self._writer.flush()

  def close(self):
    self._writer.close()


def sample_and_reconstruction_grids(model, state, test_data, key,
                                    count: int = 8) -> Dict[str, np.ndarray]:
  """uint8 pictures: 8x8 prior samples; 8 test images above reconstructions."""
  from vlae_jax import analysis
  variables = analysis.variables_of(state)
  codes = analysis.prior_codes(model, key, count * count)
  samples = analysis.decode_images(model, variables, codes)
  batch = test_data.batch(np.arange(min(count, len(test_data))))
  recon = analysis.reconstruct(model, variables, batch["image"])
  grid = np.stack([batch["image"], recon])
  return {"samples": plotting.image_grid(
              samples.reshape((count, count) + samples.shape[1:])),
          "reconstructions": plotting.image_grid(grid)}
