"""The part of SPDY/3.1 that `kubectl port-forward` speaks.

kubectl 1.31 and later tunnel SPDY through a WebSocket (subprotocol
``SPDY/3.1+portforward.k8s.io``): the binary messages carry the SPDY byte
stream cut anywhere (client-go's TunnelingConnection; Go's framer writes a
frame field by field). ``Codec`` turns those bytes into frames and frames
into bytes, sans I/O:

  SYN_STREAM  a new stream and its headers (port, streamtype, requestid)
  SYN_REPLY   the answer that lets the client use the stream
  DATA        bytes of a stream; flag FIN ends one direction
  RST_STREAM  a stream torn down
  PING        echoed to the client
  GOAWAY, SETTINGS, WINDOW_UPDATE, HEADERS: parsed and left to the caller
  (spdystream, the Go library on the other side, does no flow control).

Header blocks are compressed with one zlib stream per direction, primed with
the SPDY/3 dictionary (draft 3, section 2.6.10.1).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS = 1, 2, 3, 4
PING, GOAWAY, HEADERS, WINDOW_UPDATE = 6, 7, 8, 9
DATA = 0  # not a control frame type: Frame.kind of data frames
FLAG_FIN = 0x01

# RST_STREAM status codes.
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL = 1, 2, 3, 4, 5
INTERNAL_ERROR = 6

MAX_DATA = (1 << 24) - 1  # a frame's length field has 24 bits
_MAX_HEADERS = 1 << 20  # decompressed header block bytes we accept

_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base "
    "content-encoding content-language content-length content-location content-md5 "
    "content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
    "server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate "
    "method get status 200~OK version HTTP/1.1 url public set-cookie keep-alive origin")
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
    "Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 "
    "Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
    "Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
# Length-prefixed words ("~" stands for a space within one), then the tail as
# is: 1423 bytes, the SHA-256 of which the unit test checks.
DICTIONARY = b"".join(struct.pack("!I", len(w)) + w.replace("~", " ").encode()
                      for w in _WORDS.split(" ")) + _TAIL.encode()


class ProtocolError(Exception):
    """Bytes that are not SPDY/3: the connection cannot go on."""


@dataclass
class Frame:
    kind: int  # DATA or a control frame type
    flags: int = 0
    stream_id: int = 0
    data: bytes = b""  # DATA's payload; the raw payload of unparsed control frames
    headers: dict[str, list[str]] = field(default_factory=dict)
    status: int = 0  # RST_STREAM, GOAWAY
    ping_id: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""


class Codec:
    """One connection's framing state (header compression in each direction)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zdict=DICTIONARY)

    # -- reading -------------------------------------------------------------

    def feed(self, data: bytes) -> list[Frame]:
        """The frames ``data`` completes, in order."""
        self._buf += data
        frames = []
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                break
            head, payload = bytes(self._buf[:8]), bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            frames.append(self._frame(head, payload))
        return frames

    def _frame(self, head: bytes, payload: bytes) -> Frame:
        first, flags = struct.unpack("!I", head[:4])[0], head[4]
        if not first & 0x80000000:
            return Frame(DATA, flags, first & 0x7FFFFFFF, payload)
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        f = Frame(kind, flags)
        try:
            if kind == SYN_STREAM:
                f.stream_id = _u31(payload, 0)
                f.headers = self._headers(payload[10:])
            elif kind in (SYN_REPLY, HEADERS):
                f.stream_id = _u31(payload, 0)
                f.headers = self._headers(payload[4:])
            elif kind == RST_STREAM:
                f.stream_id, f.status = _u31(payload, 0), struct.unpack_from("!I", payload, 4)[0]
            elif kind == PING:
                f.ping_id = struct.unpack_from("!I", payload, 0)[0]
            elif kind == GOAWAY:
                f.stream_id, f.status = _u31(payload, 0), struct.unpack_from("!I", payload, 4)[0]
            elif kind == WINDOW_UPDATE:
                f.stream_id = _u31(payload, 0)
                f.data = payload
            else:
                f.data = payload
        except struct.error:
            raise ProtocolError(f"short SPDY control frame of type {kind}") from None
        return f

    def _headers(self, block: bytes) -> dict[str, list[str]]:
        try:
            raw = self._inflate.decompress(block, _MAX_HEADERS)
        except zlib.error as e:
            raise ProtocolError(f"bad SPDY header block: {e}") from None
        if self._inflate.unconsumed_tail:
            raise ProtocolError("SPDY header block too large")
        headers: dict[str, list[str]] = {}
        try:
            (count,), pos = struct.unpack_from("!I", raw, 0), 4
            for _ in range(count):
                (n,) = struct.unpack_from("!I", raw, pos)
                name = raw[pos + 4:pos + 4 + n].decode("latin-1").lower()
                pos += 4 + n
                (n,) = struct.unpack_from("!I", raw, pos)
                value = raw[pos + 4:pos + 4 + n].decode("latin-1")
                pos += 4 + n
                headers.setdefault(name, []).extend(value.split("\x00"))
        except struct.error:
            raise ProtocolError("truncated SPDY header block") from None
        return headers

    # -- writing -------------------------------------------------------------

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None,
                  fin: bool = False) -> bytes:
        return _control(SYN_REPLY, FLAG_FIN if fin else 0,
                        struct.pack("!I", stream_id) + self._block(headers or {}))

    def syn_stream(self, stream_id: int, headers: dict[str, str], fin: bool = False) -> bytes:
        """(What a client sends; for tests.)"""
        return _control(SYN_STREAM, FLAG_FIN if fin else 0,
                        struct.pack("!IIH", stream_id, 0, 0) + self._block(headers))

    def _block(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack("!I", len(headers))
        for name, value in headers.items():
            n, v = name.lower().encode("latin-1"), value.encode("latin-1")
            raw += struct.pack("!I", len(n)) + n + struct.pack("!I", len(v)) + v
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)


def data(stream_id: int, payload: bytes, fin: bool = False) -> bytes:
    if len(payload) > MAX_DATA:
        raise ValueError("SPDY data frame too large")
    return struct.pack("!IB", stream_id & 0x7FFFFFFF, FLAG_FIN if fin else 0) + \
        len(payload).to_bytes(3, "big") + payload


def rst_stream(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack("!II", stream_id, status))


def ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack("!I", ping_id))


def goaway(last_stream_id: int, status: int = 0) -> bytes:
    return _control(GOAWAY, 0, struct.pack("!II", last_stream_id, status))


def _control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack("!HHB", 0x8000 | VERSION, kind, flags) + \
        len(payload).to_bytes(3, "big") + payload


def _u31(payload: bytes, offset: int) -> int:
    return int(struct.unpack_from("!I", payload, offset)[0]) & 0x7FFFFFFF


__all__ = ["CANCEL", "Codec", "DATA", "DICTIONARY", "FLAG_FIN", "Frame", "GOAWAY", "HEADERS",
           "PING", "ProtocolError", "RST_STREAM", "SETTINGS", "SYN_REPLY", "SYN_STREAM",
           "WINDOW_UPDATE", "data", "goaway", "ping", "rst_stream"]
