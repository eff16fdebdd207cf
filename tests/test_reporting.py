"""TensorBoard events as TensorBoard itself reads them back."""

import numpy as np
import pytest

from vlae_jax import reporting


def test_scalars_and_images_read_back_by_tensorboard(tmp_path):
  from tensorboard.backend.event_processing import event_accumulator
  writer = reporting.Writer(str(tmp_path))
  writer.scalars(5, {"loss": np.float32(1.5), "mmd": np.array([0.1, 0.2])})
  writer.scalars(10, {"loss": 0.75})
  picture = np.zeros((6, 4, 3), np.uint8)
  picture[1, 2] = (255, 0, 0)
  writer.images(10, {"samples": picture,
                     "gray": np.full((3, 3, 1), 7, np.uint8)})
  writer.close()
  events = event_accumulator.EventAccumulator(
      str(tmp_path / "tb"), size_guidance={"images": 0, "scalars": 0})
  events.Reload()
  tags = events.Tags()
  assert set(tags["scalars"]) == {"loss", "mmd/rung0", "mmd/rung1"}
  assert [(e.step, e.value) for e in events.Scalars("loss")] == [
      (5, 1.5), (10, 0.75)]
  assert events.Scalars("mmd/rung1")[0].value == pytest.approx(0.2)
  image = events.Images("samples")[0]
  assert (image.step, image.width, image.height) == (10, 4, 6)
  import io
  from PIL import Image
  decoded = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
  np.testing.assert_array_equal(decoded, picture)  # PNG: lossless
  assert events.Images("gray")[0].width == 3


def test_a_failed_write_is_one_reporting_error_naming_the_file(tmp_path):
  writer = reporting.Writer(str(tmp_path))
  from tensorboard.summary.writer import record_writer
  # pylint: disable=protected-access
  writer._file.close()
  writer._file = open("/dev/full", "ab")  # every flushed write: ENOSPC
  writer._records = record_writer.RecordWriter(writer._file)
  with pytest.raises(reporting.ReportingError,
                     match="cannot write TensorBoard events to .*events"):
    writer.scalars(1, {"loss": 1.0})
  writer.close()
