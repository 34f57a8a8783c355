"""Posting a body far larger than a server will take, over a raw socket, without holding it.

An HTTP client writes the whole body before it reads the answer; a server that refuses early
answers while the body is still arriving and closes the connection, which such a client sees
as a write error instead of the refusal. Here the body goes out one reused block at a time
while the socket is watched for the answer, so the test sees what the server said and how
much of the body it let through before saying it.
"""

from __future__ import annotations

import errno
import selectors
import socket
from collections.abc import Iterator
from dataclasses import dataclass

BLOCK = 64 * 1024
_FILL = b" " * BLOCK
_CHUNK = b"%x\r\n" % BLOCK + _FILL + b"\r\n"
_GONE = {errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ESHUTDOWN}
_MAX_HEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class Refusal:
    """What came back: the status (None when the server closed without a word), the raw
    head and body of its answer, and how many body bytes were offered before it."""

    status: int | None
    head: bytes
    body: bytes
    sent: int

    @property
    def content_type(self) -> str:
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-type":
                return value.strip().decode("latin-1")
        return ""


def post_oversized(
    address: tuple[str, int],
    path: str,
    headers: dict[str, str],
    total: int,
    *,
    chunked: bool,
    timeout: float = 60.0,
) -> Refusal:
    """POSTs `total` bytes of spaces (declared in Content-Length, or chunked) until the server
    answers or the body is all sent, then reads the answer. `timeout` bounds each wait."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    lines = [f"POST {path} HTTP/1.1", f"Host: {address[0]}:{address[1]}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = ("\r\n".join([*lines, framing]) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(head)
        sent = _send_until_answered(sock, total, chunked=chunked, timeout=timeout)
        sock.settimeout(timeout)
        answer = _read_answer(sock)
    reply_head, _, reply_body = answer.partition(b"\r\n\r\n")
    parts = reply_head.split(b"\r\n", 1)[0].split(b" ", 2)
    status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    return Refusal(status, reply_head, reply_body, sent)


def _pieces(total: int, *, chunked: bool) -> Iterator[tuple[bytes, int]]:
    """The body as the wire carries it, one reused block at a time, with the body bytes
    each piece holds (chunk framing aside)."""
    left = total
    while left > 0:
        size = min(BLOCK, left)
        if not chunked:
            yield _FILL[:size], size
        elif size == BLOCK:
            yield _CHUNK, size
        else:
            yield b"%x\r\n%s\r\n" % (size, _FILL[:size]), size
        left -= size
    if chunked:
        yield b"0\r\n\r\n", 0


def _send_until_answered(sock: socket.socket, total: int, *, chunked: bool, timeout: float) -> int:
    """Body bytes offered (the last block perhaps not all taken) before the server answered,
    closed, or took them all."""
    sock.setblocking(False)
    offered = 0
    pending = memoryview(b"")
    pieces = _pieces(total, chunked=chunked)
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while True:
            if not pending:
                piece = next(pieces, None)
                if piece is None:
                    return offered
                pending = memoryview(piece[0])
                offered += piece[1]
            ready = selector.select(timeout)
            if not ready:
                raise TimeoutError(f"the server neither read nor answered within {timeout} s")
            if ready[0][1] & selectors.EVENT_READ:
                return offered  # it answered (or closed): stop offering the body
            try:
                pending = pending[sock.send(pending) :]
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno in _GONE:
                    return offered
                raise


def _read_answer(sock: socket.socket) -> bytes:
    """The answer's head and, when it says how long, its body; a reset after the answer
    (the server dropping the unread rest of the request) ends the read like a close."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < _MAX_HEAD:
        chunk = _recv(sock)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = _content_length(head)
    while length is not None and len(body) < length:
        chunk = _recv(sock)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError as exc:
        if exc.errno in _GONE:
            return b""
        raise


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return None
