"""Parallel image decoding: files or encoded bytes -> cropped, resized uint8
arrays on every core, with progress lines, skipped unreadable files and
Ctrl-C honoured between chunks."""

from __future__ import annotations

import concurrent.futures
import os
import time

import numpy as np

from vlae_jax import interrupts
from vlae_jax.datasets.base import DataError, display_name

# The reference's CelebA framing: a centred square of 108 of the 178 pixels
# of the aligned image's width.
CELEBA_CROP_FRACTION = 108.0 / 178.0


def celeba_crop_and_resize(image, size: int) -> np.ndarray:
  """Centred square of 108/178 of the width, resized: uint8 ``[size, size, 3]``.

  ``image`` is a PIL image or a uint8 array of any size (the crop is relative
  to the image's own width, so half-scale copies give the same framing).
  """
  from PIL import Image
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  image = image.convert("RGB")  # grayscale, RGBA, CMYK -> RGB
  width, height = image.size
  crop = max(1, int(round(width * CELEBA_CROP_FRACTION)))
  left = (width - crop) // 2
  top = (height - crop) // 2
  image = image.crop((left, top, left + crop, top + crop))
  return np.asarray(image.resize((size, size), Image.BILINEAR), np.uint8)


class Progress:
  """Progress lines for a long loop: count, rate and ETA, at most one line
  every ``interval`` seconds, and a closing line with the total time."""

  def __init__(self, total: int, what: str, interval: float = 5.0):
    self.total, self.what, self.interval = total, what, interval
    self.done = 0
    self.start = self._last = time.perf_counter()

  def update(self, count: int):
    interrupts.raise_if_interrupted()  # Ctrl-C during a long first decode
    self.done += count
    now = time.perf_counter()
    if now - self._last >= self.interval and self.done < self.total:
      self._last = now
      rate = self.done / max(now - self.start, 1e-9)
      eta = (self.total - self.done) / max(rate, 1e-9)
      print(f"{self.what}: {self.done:,}/{self.total:,} "
            f"({self.done / self.total:.0%}), {rate:,.0f} images/s, ETA "
            f"{int(eta) // 60}m{int(eta) % 60:02d}s", flush=True)

  def close(self, note: str = ""):
    seconds = time.perf_counter() - self.start
    if seconds >= self.interval:  # quick jobs stay silent
      print(f"{self.what}: {self.done:,} images in {seconds:.1f} s "
            f"({self.done / max(seconds, 1e-9):,.0f} images/s{note})",
            flush=True)


def default_decode_workers() -> int:
  """Every core this process may use."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def _as_mode(image, channels: int):
  """``image`` as "L" (1) or "RGB" (3); transparent pixels (RGBA, LA,
  palette transparency) are laid over white, not dropped to black."""
  from PIL import Image
  if image.mode in ("RGBA", "LA", "PA") or (
      image.mode == "P" and "transparency" in image.info):
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    image = Image.alpha_composite(white, rgba)
  return image.convert("L" if channels == 1 else "RGB")


def is_colour(image) -> bool:
  """Whether a decoded image's channels differ (a grayscale photo saved as
  RGB, with JPEG's chroma noise of a few levels, is not colour)."""
  if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
    return False
  rgb = np.asarray(image.convert("RGB"), np.int16)
  spread = rgb.max(axis=-1) - rgb.min(axis=-1)
  return float(spread.mean()) > 4.0


def square_crop_and_resize(image, size: int, channels: int = 3
                           ) -> np.ndarray:
  """The centred square of the shorter side, resized: uint8
  ``[size, size, channels]``."""
  from PIL import Image
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image.squeeze(-1) if image.ndim == 3 and
                            image.shape[-1] == 1 else image)
  image = _as_mode(image, channels)
  width, height = image.size
  side = min(width, height)
  left, top = (width - side) // 2, (height - side) // 2
  image = image.crop((left, top, left + side, top + side))
  out = np.asarray(image.resize((size, size), Image.BILINEAR), np.uint8)
  return out.reshape(size, size, channels)


def _decode_chunk(sources, size, crop, channels):
  """Worker: ``[(uint8 [size, size, C] or None, enlarged, colour, error or
  None)]`` for image file paths or encoded bytes."""
  import io
  from PIL import Image
  out = []
  for source in sources:
    try:
      handle = io.BytesIO(source) if isinstance(source, bytes) else source
      with Image.open(handle) as image:
        if crop == "celeba":
          enlarged = image.size[0] * CELEBA_CROP_FRACTION < size
          decoded = celeba_crop_and_resize(image, size)
          colour = True
        else:
          enlarged = min(image.size) < size
          colour = channels == 1 and is_colour(image)
          decoded = square_crop_and_resize(image, size, channels)
        out.append((decoded, enlarged, colour, None))
    except Image.DecompressionBombError as e:
      # Over twice Pillow's pixel limit: decoding could exhaust memory.
      reason = str(e).split(" could be")[0].rstrip(",")
      out.append((None, False, False, f"too large to decode safely: {reason}"))
    except (OSError, ValueError, SyntaxError) as e:
      out.append((None, False, False, f"{type(e).__name__}: {e}"))
  return out


def decode_images(sources, size: int, names, what: str,
                  workers: int = 0, chunk: int = 64,
                  progress_every: float = 5.0, crop: str = "celeba",
                  channels: int = 3):
  """Decodes, crops and resizes images on ``workers`` processes (0: all
  cores).

  Args:
    sources: image file paths or encoded bytes (JPEG, PNG), one per image.
    size: output side in pixels. names: per image, the name messages use.
    what: progress label, e.g. "decoding CelebA train"; a progress line
      (count, images/s, ETA) at most every ``progress_every`` seconds.
    crop: "celeba" (centred square of 108/178 of the width, RGB) or
      "square" (centred square of the shorter side, ``channels`` 1 or 3).

  Returns ``(images uint8 [n_ok, size, size, C], kept indices)``; unreadable
  images are skipped with a warning naming them, and images smaller than
  ``size`` are enlarged with one warning. A colour image where
  ``channels == 1`` is a ``DataError`` naming it. The result does not
  depend on ``workers``.
  """
  workers = workers or default_decode_workers()
  chunks = [sources[i:i + chunk] for i in range(0, len(sources), chunk)]
  progress = Progress(len(sources), what, progress_every)
  results = []
  if workers == 1 or len(chunks) <= 1:
    for part in chunks:
      results += _decode_chunk(part, size, crop, channels)
      progress.update(len(part))
  else:
    import multiprocessing
    # spawn: the parent may already run JAX and TensorFlow threads, which a
    # fork would copy mid-flight.
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"))
    try:
      for part, decoded in zip(chunks, pool.map(
          _decode_chunk, chunks, [size] * len(chunks), [crop] * len(chunks),
          [channels] * len(chunks))):
        results += decoded
        progress.update(len(part))  # a recorded signal raises here
    except BaseException:
      # Ctrl-C, SIGTERM or an error: no worker may outlive us, and the
      # queued chunks are dropped instead of decoded first.
      workers_alive = list((getattr(pool, "_processes", None) or {}).values())
      pool.shutdown(wait=False, cancel_futures=True)
      for process in workers_alive:
        process.terminate()
      for process in workers_alive:
        process.join(5)
      raise
    pool.shutdown()
  progress.close(f", {workers} worker{'s' if workers > 1 else ''}")
  if crop == "square" and channels == 1:
    colour = [name for name, r in zip(names, results) if r[2]]
    if colour:
      raise DataError(
          f"{colour[0]} is a colour image (and {len(colour) - 1} more) but "
          "--config.channels=1; set --config.channels=3 to train on colour, "
          "or convert those images to grayscale.")
  keep = [i for i, r in enumerate(results) if r[0] is not None]
  for name, (image, _, _, error) in zip(names, results):
    if image is None:
      print(f"warning: skipping unreadable image {display_name(name)} "
            f"({display_name(error)})", flush=True)
  enlarged = [name for name, r in zip(names, results) if r[1]]
  if enlarged:
    print(f"warning: {what}: {len(enlarged)} images are smaller than "
          f"{size}x{size} after cropping and were enlarged (e.g. "
          f"{enlarged[0]}); set --config.image_size lower to keep their "
          "detail.", flush=True)
  if not keep:
    return np.zeros((0, size, size, channels), np.uint8), keep
  return np.stack([results[i][0] for i in keep]), keep
