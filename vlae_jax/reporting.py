"""TensorBoard event files and the image grids logged during training."""

from __future__ import annotations

import os
from typing import Dict

import numpy as np

from vlae_jax import inference, plotting
from vlae_jax import workdir as workdirs


class ReportingError(OSError):
  """TensorBoard events could not be written (e.g. a full disk)."""


class Writer:
  """Scalars and images to ``<workdir>/tb``, TensorBoard's event format.

  Written synchronously with TensorBoard's own record writer and protos (no
  TensorFlow ops), so a failing write is one Python ``ReportingError``
  naming the file, raised where it happens.
  """

  def __init__(self, workdir: str):
    import socket
    import time
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer import record_writer
    self._event_pb2 = event_pb2
    folder = workdirs.events_dir(workdir)
    os.makedirs(folder, exist_ok=True)
    self.path = os.path.join(
        folder, f"events.out.tfevents.{time.time():.6f}."
        f"{socket.gethostname()}.{os.getpid()}.v2")
    self._file = open(self.path, "ab")
    self._records = record_writer.RecordWriter(self._file)
    self._write(event_pb2.Event(wall_time=time.time(),
                                file_version="brain.Event:2"))

  def _write(self, event):
    import time
    event.wall_time = event.wall_time or time.time()
    try:
      self._records.write(event.SerializeToString())
      self._file.flush()
    except OSError as e:
      raise ReportingError(e.errno, f"cannot write TensorBoard events to "
                           f"{self.path} ({e.strerror or e})") from None

  def scalars(self, step: int, values: Dict[str, np.ndarray]):
    from tensorboard.compat.proto import summary_pb2
    summary = summary_pb2.Summary()
    for name, value in values.items():
      value = np.asarray(value, np.float64)
      if value.ndim == 0:
        summary.value.add(tag=name, simple_value=float(value))
      else:  # per-rung vectors: one curve per rung
        for i, v in enumerate(value.ravel()):
          summary.value.add(tag=f"{name}/rung{i}", simple_value=float(v))
    self._write(self._event_pb2.Event(step=int(step), summary=summary))

  def images(self, step: int, pictures: Dict[str, np.ndarray]):
    """``pictures``: uint8 ``[H, W, C]`` (C = 1 or 3) per name, as PNG."""
    import io
    from PIL import Image
    from tensorboard.compat.proto import summary_pb2
    summary = summary_pb2.Summary()
    for name, picture in pictures.items():
      picture = np.asarray(picture, np.uint8)
      buffer = io.BytesIO()
      Image.fromarray(picture[..., 0] if picture.shape[-1] == 1
                      else picture).save(buffer, format="PNG")
      summary.value.add(tag=name, image=summary_pb2.Summary.Image(
          height=picture.shape[0], width=picture.shape[1],
          colorspace=picture.shape[-1],
          encoded_image_string=buffer.getvalue()))
    self._write(self._event_pb2.Event(step=int(step), summary=summary))

  def close(self):
    try:
      self._file.close()
    except OSError:
      pass  # a failed write was reported where it happened


def sample_and_reconstruction_grids(model, state, test_data, key,
                                    count: int = 8) -> Dict[str, np.ndarray]:
  """uint8 pictures: 8x8 prior samples; 8 test images above reconstructions."""
  variables = inference.variables_of(state)
  codes = inference.prior_codes(model, key, count * count)
  samples = inference.decode_images(model, variables, codes)
  batch = test_data.batch(np.arange(min(count, len(test_data))))
  recon = inference.reconstruct(model, variables, batch["image"])
  grid = np.stack([batch["image"], recon])
  return {"samples": plotting.image_grid(
              samples.reshape((count, count) + samples.shape[1:])),
          "reconstructions": plotting.image_grid(grid)}
