"""A lean, pipelined Redis writer for the ingest thread's hot path.

redis-py costs about 30-80 us of Python per command (packing, response callbacks, pool, retry
wrappers): at 25 packets a second plus a published frame each, that was the biggest share of the
camera process's own CPU. ``FastPipe`` writes RESP2 itself:

* commands are encoded into one buffer; large values (frames) are passed by reference
  (``memoryview``, or a tuple of them for one value in pieces, e.g. the planes of an image) to one
  ``sendmsg`` call, never copied in Python;
* replies are not waited for: each ``send`` first collects whatever replies of earlier batches
  have arrived (non-blocking), so the hot path never sits through a Redis round trip. A reply can
  be given to a callback (the demand poll); error replies go to ``on_error``.

The connection itself (TCP, unix socket or TLS, AUTH, SELECT) is made by redis-py, with RESP2.
Any socket problem raises ``redis.ConnectionError``; the pipe is then reset (pending commands and
unanswered callbacks are dropped) and reconnects on the next ``send``.
"""

from __future__ import annotations

import collections
import contextlib
import select
from typing import Any

import redis
from redis.exceptions import ResponseError

_BIG = 32 * 1024  # values at least this large are sent by reference, not copied
_MAX_IN_FLIGHT = 10_000  # replies we let pile up before waiting for them


class _Incomplete(Exception):
    pass


class FastPipe:
    def __init__(self, url: str, socket_timeout: float = 3.0, connect_timeout: float = 1.0, on_error=None):
        self._pool = redis.Redis.from_url(url, protocol=2, socket_timeout=socket_timeout,
                                          socket_connect_timeout=connect_timeout).connection_pool
        # redis-py's connection and the socket it keeps privately (``_sock``): no public type.
        self._conn: Any = None
        self._sock: Any = None
        self._sendmsg = True
        self._pieces: list = []
        self._buf = bytearray()
        self._callbacks: list = []
        self._in_flight: collections.deque = collections.deque()
        self._rbuf = bytearray()
        self._rpos = 0
        self.on_error = on_error

    # ------------------------------------------------------------------ queueing
    def command(self, *args, callback=None) -> None:
        buf = self._buf
        buf += b"*%d\r\n" % len(args)
        for arg in args:
            if isinstance(arg, (bytes, bytearray)):
                if len(arg) >= _BIG:
                    buf += b"$%d\r\n" % len(arg)
                    self._big(arg)
                    buf = self._buf
                    continue
                buf += b"$%d\r\n%b\r\n" % (len(arg), bytes(arg) if isinstance(arg, bytearray) else arg)
            elif isinstance(arg, memoryview):
                buf += b"$%d\r\n" % arg.nbytes
                self._big(arg)
                buf = self._buf
            elif isinstance(arg, tuple):  # one value in several pieces (e.g. image planes), by reference
                buf += b"$%d\r\n" % sum(piece.nbytes for piece in arg)
                self._big(*arg)
                buf = self._buf
            else:
                data = arg.encode() if isinstance(arg, str) else str(arg).encode()
                buf += b"$%d\r\n%b\r\n" % (len(data), data)
        self._callbacks.append(callback)

    def raw(self, encoded: bytes, big=None, tail: bytes = b"", callback=None) -> None:
        """Queue one command already encoded in RESP (``big``, if given, is sent by reference
        between ``encoded`` and ``tail``). For the per-packet path."""
        self._buf += encoded
        if big is not None:
            self._big(big)
            self._buf += tail
        self._callbacks.append(callback)

    # RingWriter and others speak redis-py's pipeline dialect.
    def execute_command(self, *args) -> None:
        self.command(*args)

    def _big(self, *values) -> None:
        self._pieces.append(bytes(self._buf))
        self._pieces.extend(values)
        self._buf = bytearray(b"\r\n")

    @property
    def pending(self) -> int:
        return len(self._callbacks)

    # ------------------------------------------------------------------ I/O
    def _connect(self) -> None:
        conn = self._pool.make_connection()
        conn.connect()
        sock = getattr(conn, "_sock", None)
        if sock is None:  # pragma: no cover - redis-py internals changed
            raise redis.ConnectionError("no socket after connect")
        self._conn, self._sock = conn, sock
        self._sendmsg = not hasattr(sock, "pending")  # TLS sockets have no sendmsg
        self._rbuf = bytearray()
        self._rpos = 0

    def reset(self) -> None:
        """Drop the connection and everything queued or unanswered."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.disconnect()
        self._conn = self._sock = None
        self._pieces = []
        self._buf = bytearray()
        self._callbacks = []
        self._in_flight.clear()
        self._rbuf = bytearray()
        self._rpos = 0

    def send(self) -> None:
        """Collect arrived replies, then write the queued commands (does not wait for replies)."""
        if not self._callbacks:
            if self._in_flight:
                self.collect()
            return
        try:
            if self._sock is None:
                self._connect()
            if self._in_flight:
                self.collect(block=len(self._in_flight) > _MAX_IN_FLIGHT)
            pieces = self._pieces
            if self._buf:
                pieces.append(self._buf)
            if self._sendmsg:
                self._send_vectored(pieces)
            else:
                for piece in pieces:
                    self._sock.sendall(piece)
        except (OSError, redis.RedisError) as exc:
            self.reset()
            raise redis.ConnectionError(str(exc) or type(exc).__name__) from exc
        self._in_flight.extend(self._callbacks)
        self._callbacks = []
        self._pieces = []
        self._buf = bytearray()

    def _send_vectored(self, pieces: list) -> None:
        sock = self._sock
        views = [memoryview(p).cast("B") if not isinstance(p, memoryview) else p.cast("B") for p in pieces]
        while views:
            sent = sock.sendmsg(views[:512])
            while sent and views:
                size = views[0].nbytes
                if sent >= size:
                    sent -= size
                    views.pop(0)
                else:
                    views[0] = views[0][sent:]
                    sent = 0

    def collect(self, block: bool = False) -> None:
        """Read the replies that have arrived (all of them if ``block``) and dispatch them."""
        sock = self._sock
        if sock is None:
            self._in_flight.clear()
            return
        try:
            while self._in_flight:
                if not self._dispatch_available():
                    break
                if not block and not self._readable(0.0):
                    break
                chunk = sock.recv(262144)
                if not chunk:
                    raise ConnectionResetError("the frame bus closed the connection")
                self._rbuf += chunk
        except (OSError, redis.RedisError) as exc:
            self.reset()
            raise redis.ConnectionError(str(exc) or type(exc).__name__) from exc

    def wait(self) -> None:
        """Send what is queued and wait for every reply (used outside the hot path)."""
        self.send()
        self.collect(block=True)

    def _readable(self, timeout: float) -> bool:
        sock = self._sock
        if getattr(sock, "pending", None) and sock.pending():
            return True
        readable, _, _ = select.select([sock], [], [], timeout)
        return bool(readable)

    def _dispatch_available(self) -> bool:
        """Dispatch every complete reply in the buffer; True if more replies are still expected."""
        while self._in_flight:
            try:
                value, self._rpos = _parse(self._rbuf, self._rpos)
            except _Incomplete:
                break
            callback = self._in_flight.popleft()
            if isinstance(value, ResponseError):
                if self.on_error is not None:
                    self.on_error(value)
            elif callback is not None:
                callback(value)
        if self._rpos and self._rpos == len(self._rbuf):
            self._rbuf = bytearray()
            self._rpos = 0
        elif self._rpos > 1 << 20:
            del self._rbuf[: self._rpos]
            self._rpos = 0
        return bool(self._in_flight)

    def close(self) -> None:
        self.reset()


def _line(buf: bytearray, pos: int) -> tuple[bytes, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    return bytes(buf[pos:end]), end + 2


def _parse(buf: bytearray, pos: int):
    """One RESP2 reply (plus RESP3's ``_`` null) from ``buf[pos:]`` -> (value, next position)."""
    if pos >= len(buf):
        raise _Incomplete
    kind = buf[pos]
    line, pos = _line(buf, pos + 1)
    if kind == 43:  # '+'
        return line, pos
    if kind == 58:  # ':'
        return int(line), pos
    if kind == 36:  # '$'
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return bytes(buf[pos:pos + size]), pos + size + 2
    if kind == 42:  # '*'
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    if kind == 45:  # '-'
        return ResponseError(line.decode("utf-8", "replace")), pos
    if kind == 95:  # '_'
        return None, pos
    raise redis.ConnectionError(f"unexpected reply type {chr(kind)!r} from the frame bus")


__all__ = ["FastPipe"]
