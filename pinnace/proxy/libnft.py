"""libnftables, the library behind the nft command, through ctypes: one
context for the proxy's life.

The nft command starts from nothing each time: before it adds one rule it
reads every table, chain and set of the ruleset from the kernel, so with
10,000 services a one-service change took 130-170 ms, nearly all of it
reading. A context kept open keeps that cache and reads again only when
the kernel's ruleset generation has moved past what it knows (another
program changed something), so a change costs what it changes.

The library comes with the nft command (Debian's libnftables1); where it
cannot be loaded, ``Context.open`` returns None and the proxy runs the
command.
"""

from __future__ import annotations

import ctypes
import threading

_NFT_CTX_DEFAULT = 0


class Context:
    """One libnftables context; ``run`` is a transaction, as ``nft -f``."""

    def __init__(self, lib: ctypes.CDLL):
        self._lib = lib
        self._lock = threading.Lock()  # a context is not for two threads at once
        self._ctx: int | None = lib.nft_ctx_new(_NFT_CTX_DEFAULT)
        if not self._ctx:
            raise OSError("nft_ctx_new failed")
        # Messages go to buffers we read, not to the process's stdout/stderr.
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)

    @classmethod
    def open(cls) -> Context | None:
        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError:
            return None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        try:
            return cls(lib)
        except OSError:
            return None

    def run(self, script: str) -> tuple[bool, str, str]:
        """(succeeded, output, error text) of ``script`` run as one transaction."""
        with self._lock:
            if self._ctx is None:
                raise OSError("the nftables context is closed")
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
            # Reading a buffer also empties it for the next command.
            out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(errors="replace")
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        return rc == 0, out, err

    def close(self) -> None:
        with self._lock:
            ctx, self._ctx = self._ctx, None
        if ctx:
            self._lib.nft_ctx_free(ctx)
