"""TensorBoard event files written directly (docs/design.md, "TensorBoard").

A network's TensorBoard output is one folder, `<its directory>/tb/`, with a TensorBoard run per
series: `run` (what was trained), `flow` (the exact finite-α flow) and `limit` (the α → 0 limit).
They write the same tags (`loss`, `beta/i`, `dual/i`), so each of TensorBoard's charts overlays
run, flow and limit in three colours, TensorBoard's own idiom for train/validation curves.

Each series is an `EventFile`: its records are framed as TensorBoard's RecordWriter frames them,
checksummed with CRC-32C in C (tensorboard computes it in pure Python without TensorFlow), and a
block's scalar events are serialised from one array in one pass and appended in one write. Text,
histograms, images and hyperparameters are built by torch.utils.tensorboard's summary functions.
"""

import functools
import socket
import struct
import time
from pathlib import Path

import google_crc32c
import numpy as np
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import summary as summaries

U32 = 0xFFFFFFFF
SERIES = ("run", "flow", "limit")
T_AXIS = 1000  # charts against accelerated time t (tags vs_t/…) are drawn at step 1000·t


@functools.lru_cache(maxsize=256)
def time_tags(tags: tuple[str, ...]) -> tuple[str, ...]:
    """The tags of the charts against accelerated time."""
    return tuple(f"vs_t/{tag}" for tag in tags)


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of a TensorBoard record, as tensorboard's `masked_crc32c` computes it."""
    x = google_crc32c.value(data)
    return ((((x >> 15) | (x << 17)) & U32) + 0xA282EAD8) & U32


def framed(records: list[bytes]) -> bytes:
    """The records framed as TensorBoard's RecordWriter frames each (tested equal): its length
    (uint64), the length's masked CRC-32C, the record, the record's masked CRC-32C; a length's
    frame head computed once (a block's events mostly share one)."""
    heads, parts = {}, []
    for data in records:
        head = heads.get(len(data))
        if head is None:
            length = struct.pack("<Q", len(data))
            head = heads[len(data)] = length + struct.pack("<I", masked_crc32c(length))
        parts += (head, data, struct.pack("<I", masked_crc32c(data)))
    return b"".join(parts)


def _varint(n: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative integer."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@functools.lru_cache(maxsize=None)
def _value_prefix(tag: str) -> bytes:
    """A Summary.value entry (field 1) up to its float: {tag (1, string), simple_value (2)}."""
    name = tag.encode()
    entry = b"\x0a" + _varint(len(name)) + name + b"\x15"
    return b"\x0a" + _varint(len(entry) + 4) + entry


@functools.lru_cache(maxsize=256)
def _summary_template(tags: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The serialized Summary of these tags with zero values, and where the floats' bytes go."""
    prefixes = [_value_prefix(tag) for tag in tags]
    ends = np.cumsum([len(p) + 4 for p in prefixes], dtype=np.int64)
    template = np.frombuffer(b"".join(p + bytes(4) for p in prefixes), np.uint8)
    return template, ((ends - 4)[:, None] + np.arange(4)).ravel()


def scalar_events(steps, wall_time: float, tags: tuple[str, ...], values) -> list[bytes]:
    """The serialized Events {wall_time (1, double), step (2, int64), summary (5): {value (1) …}}
    of scalars `tags` = values[j] at steps[j], for all steps at once: each parses to the Event
    protobuf would build (tested), in a fraction of its time. Values beyond float32 are ±inf."""
    template, slots = _summary_template(tags)
    rows = np.tile(template, (len(steps), 1))
    with np.errstate(over="ignore"):
        floats = np.ascontiguousarray(np.reshape(values, (len(steps), len(tags))), dtype="<f4")
    rows[:, slots] = floats.view(np.uint8)
    head = b"\x09" + struct.pack("<d", wall_time) + b"\x10"
    tail, size, blob = b"\x2a" + _varint(len(template)), len(template), rows.tobytes()
    return [head + _varint(step) + tail + blob[j * size:(j + 1) * size]
            for j, step in enumerate(np.asarray(steps).tolist())]


class EventFile:
    """One TensorBoard run: an event file in `directory`, appended to as events come."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.dlnlab"
        self.path = directory / name
        self.file = open(self.path, "ab")
        self._write([Event(wall_time=time.time(), file_version="brain.Event:2")
                     .SerializeToString()])

    def _write(self, records: list[bytes]) -> None:
        self.file.write(framed(records))
        self.file.flush()

    def scalars(self, steps, tags: tuple[str, ...], values, t=None) -> None:
        """Scalars `tags` = values[j] at steps[j] (values: a row per step), in one write; given
        the steps' accelerated times t, also against t: as `vs_t/<tag>` at step round(T_AXIS·t)."""
        if not len(steps):
            return
        now = time.time()
        records = scalar_events(steps, now, tags, values)
        if t is not None:
            records += scalar_events(np.rint(np.asarray(t) * T_AXIS).astype(np.int64), now,
                                     time_tags(tags), values)
        self._write(records)

    def summary(self, step: int, *values: Summary) -> None:
        """An event holding summaries made by torch.utils.tensorboard.summary (text, images, …)."""
        event = Event(wall_time=time.time(), step=int(step), summary=Summary(
            value=[v for s in values for v in s.value]))
        self._write([event.SerializeToString()])

    def text(self, tag: str, text: str, step: int) -> None:
        self.summary(step, summaries.text(tag, text))

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        self.summary(step, summaries.histogram(tag, values, bins="auto"))

    def image(self, tag: str, rgb: np.ndarray, step: int) -> None:
        """An RGB image (height × width × 3, uint8)."""
        self.summary(step, summaries.image(tag, rgb, dataformats="HWC"))

    def hparams(self, params: dict, metrics: dict, step: int = 0) -> None:
        """Hyperparameters and final metrics for TensorBoard's HParams dashboard."""
        experiment, start, end = summaries.hparams(params, metrics)
        for s in (experiment, start, end):
            self.summary(step, s)
        self.scalars([step], tuple(metrics), [list(metrics.values())])

    def close(self) -> None:
        self.file.close()


class TensorBoard:
    """A network's TensorBoard folder: one EventFile per series (`run`, `flow`, `limit`), opened
    when first written to."""

    def __init__(self, directory: Path, name: str = "tb"):
        self.directory = Path(directory) / name
        self._files: dict[str, EventFile] = {}

    def __getitem__(self, series: str) -> EventFile:
        if series not in self._files:
            self._files[series] = EventFile(self.directory / series)
        return self._files[series]

    def close(self) -> None:
        for file in self._files.values():
            file.close()
