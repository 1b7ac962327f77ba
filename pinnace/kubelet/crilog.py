"""Container log files in the CRI format, read the way the kubelet serves
them (`kubectl logs`).

Each line of the file is ``<time> <stream> <tag> <text>``, for example
``2024-01-01T00:00:00.123456789Z stdout F hello``: the time is RFC3339Nano,
the stream ``stdout`` or ``stderr``, the tag ``F`` for a whole line or ``P``
for a part of a long line whose rest follows on later file lines (the
runtime splits lines it cannot buffer). Parts are joined here, per stream,
into the line they belong to; the line carries the time of its first part.

``read_lines`` answers a plain request; ``follow`` answers ``-f``: it goes on
reading as the file grows (and across the runtime rotating it) until the
container stops and the file is drained.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_STREAMS = {"All": ("stdout", "stderr"), "Stdout": ("stdout",), "Stderr": ("stderr",)}
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Entry:
    time: str    # as the runtime wrote it (RFC3339Nano)
    ns: int      # the same time, nanoseconds since the epoch
    stream: str  # "stdout" | "stderr"
    text: bytes  # the line, with its "\n" (a line cut short at the end of a log has none)


def parse_time(value: str) -> int:
    """RFC3339 (with or without fraction) -> nanoseconds since the epoch."""
    if len(value) < 20 or value[10] not in "Tt":
        raise ValueError(f"not an RFC3339 time: {value!r}")
    rest = value[19:]
    frac = ""
    if rest.startswith("."):
        end = 1
        while end < len(rest) and rest[end].isdigit():
            end += 1
        frac, rest = rest[1:end], rest[end:]
    zone = "+00:00" if rest in ("Z", "z") else rest
    when = dt.datetime.fromisoformat(value[:10] + "T" + value[11:19] + zone)
    seconds = (when - _EPOCH) // dt.timedelta(seconds=1)
    return seconds * 1_000_000_000 + (int(frac[:9].ljust(9, "0")) if frac else 0)


def format_time(value: str) -> str:
    """A runtime's RFC3339Nano time with a fixed nine-digit fraction, as the
    kubelet prints it for ``timestamps=true``."""
    rest = value[19:]
    frac = ""
    if rest.startswith("."):
        end = 1
        while end < len(rest) and rest[end].isdigit():
            end += 1
        frac, rest = rest[1:end], rest[end:]
    if rest in ("z", "+00:00", "-00:00"):
        rest = "Z"
    return f"{value[:19]}.{frac[:9].ljust(9, '0')}{rest}"


def parse_line(line: bytes) -> tuple[str, str, bool, bytes] | None:
    """(time, stream, partial, text without newline) of one file line
    (given without its "\\n"); None for a line not in the CRI format."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    try:
        time, stream, tag = parts[0].decode(), parts[1].decode(), parts[2].decode()
    except UnicodeDecodeError:
        return None
    if stream not in ("stdout", "stderr") or not tag:
        return None
    return time, stream, tag.split(":", 1)[0] == "P", parts[3] if len(parts) > 3 else b""


class Parser:
    """Turns the bytes of a log file, fed in pieces as they are read, into
    whole lines: file lines cut by a read wait for their end, and partial
    (``P``) lines wait for the rest of their line."""

    def __init__(self) -> None:
        self._rest = b""
        self._parts: dict[str, tuple[str, list[bytes]]] = {}

    def feed(self, data: bytes) -> list[Entry]:
        data = self._rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            self._rest = data
            return []
        self._rest = data[cut + 1:]
        out: list[Entry] = []
        for line in data[:cut].split(b"\n"):
            parsed = parse_line(line)
            if parsed is None:
                continue
            time, stream, partial, text = parsed
            started = self._parts.get(stream)
            if partial:
                if started is None:
                    self._parts[stream] = (time, [text])
                else:
                    started[1].append(text)
                continue
            if started is not None:
                del self._parts[stream]
                time, text = started[0], b"".join(started[1]) + text
            entry = _entry(time, stream, text + b"\n")
            if entry is not None:
                out.append(entry)
        return out

    def flush(self) -> list[Entry]:
        """What is left when no more will come: an unterminated file line
        and lines still waiting for their last part, as they are."""
        out = self.feed(b"\n") if self._rest else []
        for stream, (time, texts) in sorted(self._parts.items(), key=lambda kv: kv[1][0]):
            entry = _entry(time, stream, b"".join(texts))
            if entry is not None:
                out.append(entry)
        self._parts.clear()
        return out


def _entry(time: str, stream: str, text: bytes) -> Entry | None:
    try:
        return Entry(time, parse_time(time), stream, text)
    except ValueError:
        return None


def render(entry: Entry, timestamps: bool) -> bytes:
    if timestamps:
        return format_time(entry.time).encode() + b" " + entry.text
    return entry.text


def _select(entries: Iterable[Entry], tail: int | None, since: int | None,
            streams: tuple[str, ...]) -> list[Entry]:
    chosen: Iterable[Entry] = (e for e in entries if e.stream in streams and
                               (since is None or e.ns >= since))
    if tail is not None:
        return list(deque(chosen, maxlen=tail)) if tail > 0 else []
    return list(chosen)


def _streams(stream: str) -> tuple[str, ...]:
    try:
        return _STREAMS[stream]
    except KeyError:
        raise ValueError(f"unknown stream {stream!r}: one of All, Stdout, Stderr") from None


def read_lines(path: Path, tail: int | None = None, since: int | None = None,
               timestamps: bool = False, stream: str = "All") -> list[bytes]:
    """The log as it is now: the last ``tail`` lines (all when None) written
    at or after ``since`` (nanoseconds since the epoch), each ready to send.
    A file not there (yet) reads as empty. Blocking: call it off the loop."""
    streams = _streams(stream)
    parser = Parser()
    try:
        with open(path, "rb") as f:
            entries: list[Entry] = []
            while chunk := f.read(_CHUNK):
                entries.extend(parser.feed(chunk))
    except FileNotFoundError:
        return []
    entries.extend(parser.flush())
    return [render(e, timestamps) for e in _select(entries, tail, since, streams)]


async def follow(path: Path, running: Callable[[], bool], *, tail: int | None = None,
                 since: int | None = None, timestamps: bool = False, stream: str = "All",
                 poll: float = 0.1,
                 stop: Callable[[], bool] | None = None) -> AsyncGenerator[bytes, None]:
    """The log now (as ``read_lines``), then every line written after, until
    ``running()`` says the container stopped and the file is drained, or
    ``stop()`` (the client went away) says to end at once. Follows the
    runtime's rotation (the file renamed and a new one made) and truncation."""
    streams = _streams(stream)

    def wanted(entries: list[Entry]) -> list[bytes]:
        return [render(e, timestamps) for e in entries
                if e.stream in streams and (since is None or e.ns >= since)]

    parser = Parser()
    f = await asyncio.to_thread(_open, path)
    if f is not None:
        first = await asyncio.to_thread(f.read)
        for e in _select(parser.feed(first), tail, since, streams):
            yield render(e, timestamps)
    try:
        while True:
            if stop is not None and stop():
                return
            alive = running()  # asked before reading: what it wrote before stopping is read
            data = f.read(_CHUNK) if f is not None else b""
            if data:
                for chunk in wanted(parser.feed(data)):
                    yield chunk
                continue
            switched = _switch(path, f)
            if switched is not f:
                if f is not None:
                    # Rotated: what reached the old file after the last read comes first.
                    while data := f.read(_CHUNK):
                        for chunk in wanted(parser.feed(data)):
                            yield chunk
                    f.close()
                f = switched
                continue
            if f is not None and f.tell() > os.fstat(f.fileno()).st_size:
                f.seek(0)  # truncated in place
                continue
            if not alive:
                for chunk in wanted(parser.flush()):
                    yield chunk
                return
            await asyncio.sleep(poll)
    finally:
        if f is not None:
            f.close()


def _open(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _switch(path: Path, f: BinaryIO | None) -> BinaryIO | None:
    """The file to read next: a new one when the file at ``path`` is not the
    one open (the runtime rotated it, or it appeared at last), else ``f``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f
    if f is not None:
        fst = os.fstat(f.fileno())
        if (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev):
            return f
    return _open(path) or f
