"""Protocol Buffers' wire integers (base-128 varints) and the error for bytes
that are not valid protobuf: shared by the Kubernetes protobuf codec
(protobuf.py), the OpenAPI v2 document's encoder (apiserver/openapi_pb.py)
and the node agent's gRPC probe. A module of its own so that the agent gets
these without the codec's imports."""

from __future__ import annotations


class ProtobufError(ValueError):
    """The bytes are not valid protobuf, or (the Kubernetes codec) not of a
    kind it knows."""


def varint(value: int) -> bytes:
    """``value`` as a varint; a negative one as its 64-bit two's complement,
    as protobuf encodes int32 and int64."""
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it. IndexError if ``buf``
    ends inside it, ProtobufError if it runs past 64 bits."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


__all__ = ["ProtobufError", "read_varint", "varint"]
