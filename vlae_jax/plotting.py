"""Image grids and files (no model code).

Images are float arrays in [0, 1] laid out ``[rows, cols, H, W, C]``.
"""

from __future__ import annotations

import io
from typing import Optional, Sequence

import numpy as np

from vlae_jax import files


def image_grid(images: np.ndarray, padding: int = 1,
               min_cell: int = 32, pad_value: float = 1.0) -> np.ndarray:
  """Tiles ``[rows, cols, H, W, C]`` into one uint8 ``[h, w, 3]`` picture.

  Small images are enlarged by an integer factor (nearest neighbour) so a cell
  is at least ``min_cell`` pixels high; grayscale is repeated to RGB.
  """
  images = np.asarray(images, np.float32)
  if images.ndim != 5:
    raise ValueError(f"image_grid expects [rows, cols, H, W, C], got shape "
                     f"{images.shape}.")
  rows, cols, height, width, channels = images.shape
  scale = max(1, -(-min_cell // height))
  if scale > 1:
    images = images.repeat(scale, axis=2).repeat(scale, axis=3)
    height, width = height * scale, width * scale
  if channels == 1:
    images = np.repeat(images, 3, axis=-1)
  cell_h, cell_w = height + padding, width + padding
  grid = np.full((rows * cell_h + padding, cols * cell_w + padding, 3),
                 pad_value, np.float32)
  for r in range(rows):
    for c in range(cols):
      top, left = padding + r * cell_h, padding + c * cell_w
      grid[top:top + height, left:left + width] = images[r, c, ..., :3]
  # A diverged model's NaN pixels show as black, not as an invalid cast.
  grid = np.nan_to_num(grid, nan=0.0)
  return np.round(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)


def _encoded(image, **options) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, **options)
  return buffer.getvalue()


def save_png(path: str, picture: np.ndarray) -> str:
  """Writes ``picture`` (uint8 [H, W, 3]) as a PNG, atomically."""
  from PIL import Image
  return files.write_atomically(path, _encoded(Image.fromarray(picture),
                                               format="PNG"))


def save_gif(path: str, frames: Sequence[np.ndarray],
             duration_ms: int = 120) -> str:
  """An animated GIF that plays the frames forward then back, looping."""
  from PIL import Image
  frames = list(frames) + list(frames[-2:0:-1])
  pictures = [Image.fromarray(f) for f in frames]
  return files.write_atomically(path, _encoded(
      pictures[0], format="GIF", save_all=True, append_images=pictures[1:],
      duration=duration_ms, loop=0))


def save_heatmap(path: str, values: np.ndarray, row_labels: Sequence[str],
                 col_labels: Sequence[str], title: Optional[str] = None,
                 vmin: float = 0.5, vmax: float = 1.0) -> str:
  """A labelled heatmap PNG of ``values [rows, cols]`` (matplotlib, Agg)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows, cols = values.shape
  fig, ax = plt.subplots(figsize=(1.2 + 0.9 * cols, 1.0 + 0.28 * rows))
  im = ax.imshow(values, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
  ax.set_xticks(range(cols), col_labels)
  ax.set_yticks(range(rows), row_labels, fontsize=7)
  for r in range(rows):
    for c in range(cols):
      ax.text(c, r, f"{values[r, c]:.2f}", ha="center", va="center",
              fontsize=6, color="w" if values[r, c] < (vmin + vmax) / 2 else "k")
  if title:
    ax.set_title(title)
  fig.colorbar(im, ax=ax)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=110)
  plt.close(fig)
  return files.write_atomically(path, buffer.getvalue())
