"""TensorBoard writing: the C checksum every record now gets, and a block of events that reads back."""

import os

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.summary.writer import record_writer
from torch.utils.tensorboard import SummaryWriter

from dlnlab.callbacks.tensorboard import add_scalars, masked_crc32c


@pytest.mark.parametrize("size", [0, 1, 7, 8, 100, 1500, 10_000])
def test_checksum_is_tensorboards_own(size):
    """Against tensorboard's pure-Python CRC-32C (the one it uses without TensorFlow)."""
    data = os.urandom(size)
    assert masked_crc32c(data) == pywrap_tensorflow.masked_crc32c(data)
    assert record_writer.masked_crc32c is masked_crc32c


def test_scalars_written_in_one_event_read_back(tmp_path):
    """TensorBoard's reader checks both checksums of every record: the values come back exactly."""
    writer = SummaryWriter(str(tmp_path))
    writer.add_text("notes", "before", 0)  # through the writer's own queue, around the block
    add_scalars(writer, [(step, {"a": 0.5 * step, "b/1": -step, "c": 1e-30}) for step in range(3)])
    writer.add_text("notes", "after", 3)
    writer.close()
    events = EventAccumulator(str(tmp_path)).Reload()
    assert set(events.Tags()["scalars"]) == {"a", "b/1", "c"}
    assert [(e.step, e.value) for e in events.Scalars("a")] == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert [e.value for e in events.Scalars("b/1")] == [0, -1, -2]
    assert events.Scalars("c")[0].value == pytest.approx(1e-30, rel=1e-7)  # stored as float32
    assert [e.step for e in events.Tensors("notes/text_summary")] == [0, 3]
