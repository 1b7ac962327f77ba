"""CRI log files read as the kubelet serves them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pinnace.kubelet import crilog

T0 = "2024-01-01T00:00:00.1Z"
T1 = "2024-01-01T00:00:01.123456789Z"
T2 = "2024-01-01T00:00:02Z"


def write(path: Path, *lines: str) -> None:
    with open(path, "a") as f:
        for line in lines:
            f.write(line + "\n")


def test_parse_time_and_format() -> None:
    assert crilog.parse_time("1970-01-01T00:00:01Z") == 1_000_000_000
    assert crilog.parse_time(T1) % 1_000_000_000 == 123456789
    assert crilog.parse_time("2024-01-01T01:00:00+01:00") == crilog.parse_time(
        "2024-01-01T00:00:00Z")
    assert crilog.format_time(T0) == "2024-01-01T00:00:00.100000000Z"
    assert crilog.format_time(T2) == "2024-01-01T00:00:02.000000000Z"
    assert crilog.format_time("2024-01-01T00:00:00.5+02:00") == \
        "2024-01-01T00:00:00.500000000+02:00"
    with pytest.raises(ValueError):
        crilog.parse_time("yesterday")


def test_parse_line() -> None:
    assert crilog.parse_line(f"{T0} stdout F hello world".encode()) == \
        (T0, "stdout", False, b"hello world")
    assert crilog.parse_line(f"{T0} stderr P part".encode()) == (T0, "stderr", True, b"part")
    assert crilog.parse_line(f"{T0} stdout F".encode()) == (T0, "stdout", False, b"")
    assert crilog.parse_line(b"garbage") is None
    assert crilog.parse_line(f"{T0} stdin F x".encode()) is None


def test_read_whole_and_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write(log, f"{T0} stdout F one", f"{T1} stdout P tw", f"{T1} stderr F err",
          f"{T1} stdout P o and ", f"{T2} stdout F more", f"{T2} stdout F ")
    assert crilog.read_lines(log) == [b"one\n", b"err\n", b"two and more\n", b"\n"]
    assert crilog.read_lines(log, stream="Stdout") == [b"one\n", b"two and more\n", b"\n"]
    assert crilog.read_lines(log, stream="Stderr") == [b"err\n"]


def test_tail_since_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write(log, f"{T0} stdout F a", f"{T1} stdout F b", f"{T2} stdout F c")
    assert crilog.read_lines(log, tail=2) == [b"b\n", b"c\n"]
    assert crilog.read_lines(log, tail=0) == []
    assert crilog.read_lines(log, tail=10) == [b"a\n", b"b\n", b"c\n"]
    assert crilog.read_lines(log, since=crilog.parse_time(T1)) == [b"b\n", b"c\n"]
    assert crilog.read_lines(log, tail=1, timestamps=True) == \
        [b"2024-01-01T00:00:02.000000000Z c\n"]


def test_missing_file_and_unfinished_last_line(tmp_path: Path) -> None:
    assert crilog.read_lines(tmp_path / "none.log") == []
    log = tmp_path / "0.log"
    log.write_text(f"{T0} stdout F a\n{T1} stdout P cut short")
    assert crilog.read_lines(log) == [b"a\n", b"cut short"]


async def collect(gen: object, into: list[bytes]) -> None:
    async for chunk in gen:  # type: ignore[attr-defined]
        into.append(chunk)


def test_follow_ends_when_not_running(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write(log, f"{T0} stdout F a", f"{T1} stdout F b")
    running = [True]
    got: list[bytes] = []

    async def main() -> None:
        task = asyncio.create_task(collect(crilog.follow(log, lambda: running[0], tail=1,
                                                         poll=0.01), got))
        await asyncio.sleep(0.05)
        assert got == [b"b\n"]
        write(log, f"{T2} stdout P c", f"{T2} stdout F d")
        await asyncio.sleep(0.05)
        assert got == [b"b\n", b"cd\n"]
        write(log, f"{T2} stdout F last")
        running[0] = False
        await asyncio.wait_for(task, 2)

    asyncio.run(main())
    assert got == [b"b\n", b"cd\n", b"last\n"]


def test_follow_across_rotation_and_late_file(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    running = [True]
    got: list[bytes] = []

    async def main() -> None:
        task = asyncio.create_task(collect(crilog.follow(log, lambda: running[0], poll=0.01),
                                           got))
        await asyncio.sleep(0.03)
        write(log, f"{T0} stdout F first")
        await asyncio.sleep(0.05)
        os.rename(log, tmp_path / "0.log.20240101")
        write(tmp_path / "0.log.20240101", f"{T1} stdout F old file's last")
        write(log, f"{T2} stdout F new file")
        await asyncio.sleep(0.05)
        running[0] = False
        await asyncio.wait_for(task, 2)

    asyncio.run(main())
    assert got == [b"first\n", b"old file's last\n", b"new file\n"]


def test_follow_stops_when_told(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write(log, f"{T0} stdout F a")
    got: list[bytes] = []
    stop = [False]

    async def main() -> None:
        task = asyncio.create_task(collect(crilog.follow(log, lambda: True, poll=0.01,
                                                         stop=lambda: stop[0]), got))
        await asyncio.sleep(0.03)
        stop[0] = True
        await asyncio.wait_for(task, 2)

    asyncio.run(main())
    assert got == [b"a\n"]
