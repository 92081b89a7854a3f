"""TensorBoard writing: the C checksum every record gets, and a block of events that reads back."""

import io
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.summary.writer import record_writer

from dlnlab.events import EventFile, framed, masked_crc32c, scalar_events


@pytest.mark.parametrize("size", [0, 1, 7, 8, 100, 1500, 10_000])
def test_checksum_is_tensorboards_own(size):
    """Against tensorboard's pure-Python CRC-32C (the one it uses without TensorFlow)."""
    data = os.urandom(size)
    assert masked_crc32c(data) == pywrap_tensorflow.masked_crc32c(data)
    assert record_writer.masked_crc32c is not masked_crc32c  # tensorboard itself is left alone


@pytest.mark.parametrize("step", [0, 1, 127, 128, 300, 2**40])
def test_scalar_events_parse_to_the_events_protobuf_builds(step):
    values = {
        "train/loss": 0.25,
        "train/beta/12": -3e-30,
        "a": float("inf"),
        "t/β": 1e6,
        "x" * 200: 7.0,
        "n": 3,
    }
    rows = np.array([list(values.values()), [-v for v in values.values()]])

    def expected(at, row):
        return Event(wall_time=1.7e9 + 0.123, step=at, summary=Summary(value=[
            Summary.Value(tag=tag, simple_value=v) for tag, v in zip(values, row)]))
    events = scalar_events(np.array([step, step + 1]), 1.7e9 + 0.123, tuple(values), rows)
    assert [Event.FromString(e) for e in events] == [
        expected(step, rows[0]),
        expected(step + 1, rows[1]),
    ]
    (empty,) = scalar_events([step], 1.0, (), np.zeros((1, 0)))
    assert Event.FromString(empty) == Event(wall_time=1.0, step=step, summary=Summary())
    (event,) = scalar_events(
        [step], 1.0, ("b", "c", "d"), np.array([[float("nan"), -1e300, 1e-300]])
    )
    nan, huge, tiny = Event.FromString(event).summary.value
    assert nan.tag == "b" and nan.simple_value != nan.simple_value
    assert (
        huge.simple_value == -float("inf") and tiny.simple_value == 0
    )  # a diverged loss: what protobuf stores


def test_records_are_framed_as_tensorboards_record_writer_frames_them():
    records = [
        os.urandom(size) for size in (0, 1, 40, 40, 41, 300, 40, 5000)
    ]  # repeated lengths share a head
    file = io.BytesIO()
    writer = record_writer.RecordWriter(file)
    for data in records:
        writer.write(data)
    assert framed(records) == file.getvalue()


def test_scalars_written_in_one_event_read_back(tmp_path):
    """TensorBoard's reader checks both checksums of every record: the values come back exactly,
    around other events of the same file; against accelerated time under vs_t/ at step 1000·t."""
    events = EventFile(tmp_path)
    events.text("notes", "before", 0)
    steps = np.arange(3)
    events.scalars(
        steps,
        ("a", "b/1", "c"),
        np.column_stack([0.5 * steps, -steps, np.full(3, 1e-30)]),
        t=np.array([0.0, 0.0015, 2.5]),
    )
    events.text("notes", "after", 3)
    events.close()
    read = EventAccumulator(str(tmp_path)).Reload()
    assert set(read.Tags()["scalars"]) == {"a", "b/1", "c", "vs_t/a", "vs_t/b/1", "vs_t/c"}
    assert [(e.step, e.value) for e in read.Scalars("a")] == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert [(e.step, e.value) for e in read.Scalars("vs_t/a")] == [(0, 0.0), (2, 0.5), (2500, 1.0)]
    assert [e.value for e in read.Scalars("b/1")] == [0, -1, -2]
    assert read.Scalars("c")[0].value == pytest.approx(1e-30, rel=1e-7)  # stored as float32
    assert [e.step for e in read.Tensors("notes/text_summary")] == [0, 3]
