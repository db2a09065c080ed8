"""ROS 2 bags in MCAP, read and written without a ROS install (no rosbag2).

Files are what `ros2 bag record -s mcap` writes: profile "ros2", one "ros2msg" schema per type
holding the full .msg text (each nested type appended as a "MSG: pkg/Type" section after a line
of 80 '='), and CDR messages. rclpy's own (de)serialiser does the CDR, so messages round-trip
exactly; the .msg texts come from share/<pkg>/msg/ of the ROS install prefixes.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
import threading
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.well_known import MessageEncoding, Profile, SchemaEncoding
from mcap.writer import CompressionType, Writer
from rclpy.serialization import deserialize_message, serialize_message

DEFINITION_SEPARATOR = "=" * 80
_PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
               "uint32", "int64", "uint64", "string", "wstring"}
# rosbag2 leaves this empty when it has no publisher QoS to record; players then use their defaults.
_CHANNEL_METADATA = {"offered_qos_profiles": ""}


class BagError(ValueError):
    """A file that is not a readable ROS 2 MCAP bag, or a type without a definition; one line."""


def type_name(msg) -> str:
    """An rclpy message instance (or class) -> "pkg/msg/Type"."""
    cls = msg if isinstance(msg, type) else type(msg)
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


def _share_dirs() -> list[Path]:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    return [Path(p) / "share" for p in prefixes]


@lru_cache(maxsize=None)
def _msg_text(package: str, name: str) -> str:
    for share in _share_dirs():
        path = share / package / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text()
    raise BagError(f"no definition {package}/msg/{name}.msg under share/ of AMENT_PREFIX_PATH "
                   f"({os.environ.get('AMENT_PREFIX_PATH', 'unset')}) or {sys.prefix}")


def _field_types(package: str, text: str) -> list[tuple[str, str]]:
    """The (package, Type) of each non-primitive field of a .msg text, in order."""
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        base = re.sub(r"(\[[^\]]*\]|<=\d+)$", "", line.split()[0])  # drop Type[] / Type[<=N] / string<=N
        base = re.sub(r"<=\d+$", "", base)
        if base in _PRIMITIVES:
            continue
        parts = base.split("/")
        found.append((parts[0], parts[-1]) if len(parts) > 1 else (package, base))
    return found


@lru_cache(maxsize=None)
def message_definition(type_: str) -> str:
    """The full ros2msg schema text of "pkg/msg/Type" (nested types appended, each once)."""
    package, _, name = type_.split("/")
    text = _msg_text(package, name)
    sections, seen, stack = [], {(package, name)}, list(reversed(_field_types(package, text)))
    while stack:  # depth first, in field order, like rosbag2
        dep = stack.pop()
        if dep in seen:
            continue
        seen.add(dep)
        dep_text = _msg_text(*dep)
        sections.append(f"{DEFINITION_SEPARATOR}\nMSG: {dep[0]}/{dep[1]}\n{dep_text}")
        stack.extend(reversed(_field_types(dep[0], dep_text)))
    return "\n".join([text.rstrip("\n")] + [s.rstrip("\n") for s in sections]) + "\n"


class McapWriter:
    """Writes rclpy messages of any type to a ROS 2 MCAP bag; safe to call from several threads."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = open(self.path, "wb")
        self._writer = Writer(self._file, compression=CompressionType.ZSTD)
        self._writer.start(profile=Profile.ROS2, library="posemoe_ros mcap_io")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, tuple[int, str]] = {}  # topic -> (channel id, type)
        self._sequence: dict[int, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    def write(self, topic: str, msg, log_time_ns: int):
        type_ = type_name(msg)
        data = serialize_message(msg)  # outside the lock: the costly part
        with self._lock:
            if self._closed:
                raise BagError(f"{self.path} is already closed")
            channel = self._channel(topic, type_)
            self._sequence[channel] += 1
            self._writer.add_message(channel_id=channel, log_time=int(log_time_ns), data=data,
                                     publish_time=int(log_time_ns), sequence=self._sequence[channel])

    def _channel(self, topic: str, type_: str) -> int:
        if topic in self._channels:
            channel, known = self._channels[topic]
            if known != type_:
                raise BagError(f"topic {topic} already carries {known}, not {type_}")
            return channel
        if type_ not in self._schemas:
            self._schemas[type_] = self._writer.register_schema(
                type_, SchemaEncoding.ROS2, message_definition(type_).encode())
        channel = self._writer.register_channel(topic, MessageEncoding.CDR, self._schemas[type_],
                                                dict(_CHANNEL_METADATA))
        self._channels[topic] = (channel, type_)
        self._sequence[channel] = 0
        return channel

    def close(self):
        with self._lock:
            if not self._closed:
                self._closed = True
                self._writer.finish()
                self._file.close()

    def __enter__(self) -> "McapWriter":
        return self

    def __exit__(self, *exc):
        self.close()


def _message_class(type_: str):
    """The rclpy class of "pkg/msg/Type" (or "pkg/Type"), None when not importable here."""
    parts = type_.split("/")
    try:
        return getattr(importlib.import_module(f"{parts[0]}.msg"), parts[-1])
    except (ImportError, AttributeError):
        return None


def _open_reader(path):
    path = Path(path)
    if not path.is_file():
        raise BagError(f"bag not found: {path}")
    stream = open(path, "rb")
    try:
        reader = make_reader(stream)
        reader.get_header()
    except (McapError, ValueError, EOFError, OSError) as exc:  # garbage or truncated file
        stream.close()
        raise BagError(f"{path} is not a readable MCAP file ({type(exc).__name__}: {exc})") from None
    return stream, reader


def topic_types(path) -> dict[str, str]:
    """topic -> "pkg/msg/Type" of every channel in the bag."""
    stream, reader = _open_reader(path)
    with stream:
        try:
            summary = reader.get_summary()
            if summary is not None:
                return {c.topic: summary.schemas[c.schema_id].name for c in summary.channels.values()}
            return {channel.topic: schema.name for schema, channel, _ in reader.iter_messages()}
        except (McapError, ValueError, EOFError) as exc:
            raise BagError(f"{path} is not a readable MCAP file ({type(exc).__name__}: {exc})") from None


def read_messages(path, topics: list[str] | None = None) -> Iterator[tuple[str, object, int]]:
    """(topic, message, log_time_ns) in log-time order. Messages are rclpy instances; a type this
    install cannot import is decoded from the bag's own schema text (mcap_ros2, duck-typed)."""
    stream, reader = _open_reader(path)
    classes, decoders = {}, {}
    with stream:
        try:
            for schema, channel, message in reader.iter_messages(topics=topics, log_time_order=True):
                if schema is None or schema.encoding != SchemaEncoding.ROS2 or channel.message_encoding != "cdr":
                    raise BagError(f"{path}: topic {channel.topic} is not a ROS 2 CDR channel")
                if schema.id not in classes:
                    classes[schema.id] = _message_class(schema.name)
                cls = classes[schema.id]
                if cls is not None:
                    yield channel.topic, deserialize_message(message.data, cls), message.log_time
                    continue
                if schema.id not in decoders:
                    from mcap_ros2.decoder import DecoderFactory
                    decoders[schema.id] = DecoderFactory().decoder_for(channel.message_encoding, schema)
                yield channel.topic, decoders[schema.id](message.data), message.log_time
        except (McapError, EOFError) as exc:
            raise BagError(f"{path}: damaged MCAP file ({type(exc).__name__}: {exc})") from None
