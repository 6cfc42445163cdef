"""A minimal asyncio HTTP/1.1 client: one request per connection, the body read piece by piece under a per-read timeout.

Standard library only (httpx is not a qfit dependency and aiohttp would be one more): a load generator needs little of
HTTP, and every wait here is bounded (connect, each read), so a stalled or half-dead server cannot hang a run. The body
is decoded from chunked transfer encoding, a Content-Length, or read to the connection's end.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HEADER_LIMIT = 64 * 1024


class HttpError(Exception):
    """A transport-level failure with a short reason (kind: connect, timeout, protocol, disconnect)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    read_timeout: float = 30.0      # seconds any single read may wait; the caller tightens it as the stream goes
    _left: int | None = field(default=None, repr=False)

    async def _read(self, coro, what: str):
        try:
            return await asyncio.wait_for(coro, self.read_timeout)
        except asyncio.TimeoutError:
            raise HttpError("timeout", f"no bytes for {self.read_timeout:g} s {what}") from None
        except asyncio.IncompleteReadError:
            raise HttpError("disconnect", f"the server closed the connection {what}") from None
        except (ConnectionError, OSError) as exc:
            raise HttpError("disconnect", f"connection lost {what}: {exc}") from None
        except asyncio.LimitOverrunError:
            raise HttpError("protocol", f"a line longer than {HEADER_LIMIT} bytes {what}") from None

    async def pieces(self):
        """The body, decoded, as it arrives."""
        te = self.headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            while True:
                size_line = await self._read(self.reader.readuntil(b"\r\n"), "in the body")
                try:
                    size = int(size_line.split(b";")[0].strip() or b"x", 16)
                except ValueError:
                    raise HttpError("protocol", f"bad chunk size {size_line[:40]!r}") from None
                if size == 0:
                    return
                data = await self._read(self.reader.readexactly(size + 2), "in the body")
                yield data[:-2]
        elif "content-length" in self.headers:
            left = int(self.headers["content-length"])
            while left > 0:
                data = await self._read(self.reader.read(min(left, 65536)), "in the body")
                if not data:
                    raise HttpError("disconnect", "the server closed the connection in the body")
                left -= len(data)
                yield data
        else:
            while True:
                data = await self._read(self.reader.read(65536), "in the body")
                if not data:
                    return
                yield data

    async def body(self, limit: int = 8 << 20) -> bytes:
        out = bytearray()
        async for piece in self.pieces():
            out += piece
            if len(out) > limit:
                raise HttpError("protocol", f"response body over {limit} bytes")
        return bytes(out)

    async def lines(self):
        """The body split into lines (\\n or \\r\\n), decoded as UTF-8."""
        buf = b""
        async for piece in self.pieces():
            buf += piece
            *done, buf = buf.split(b"\n")
            for line in done:
                yield line.rstrip(b"\r").decode("utf-8", "replace")
        if buf:
            yield buf.rstrip(b"\r").decode("utf-8", "replace")

    def close(self) -> None:
        self.writer.close()


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path prefix) of an http(s) URL; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


async def request(method: str, url: str, body: bytes | None = None, *, headers: dict[str, str] | None = None,
                  connect_timeout: float = 10.0, read_timeout: float = 30.0) -> Response:
    """Send one request and read the status line and headers; the caller reads the body and closes."""
    scheme, host, port, path = split_url(url)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl.create_default_context() if scheme == "https" else None,
                                    limit=HEADER_LIMIT), connect_timeout)
    except asyncio.TimeoutError:
        raise HttpError("connect", f"no connection to {host}:{port} within {connect_timeout:g} s") from None
    except ConnectionRefusedError:
        raise HttpError("connect", f"cannot connect to {host}:{port}: connection refused") from None
    except (OSError, ssl.SSLError) as exc:
        raise HttpError("connect", f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    head = [f"{method} {path or '/'} HTTP/1.1", f"Host: {host}:{port}", "Connection: close", "Accept: */*",
            "User-Agent: qfit"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
    resp = Response(0, "", {}, reader, writer, read_timeout)
    try:
        await resp._read(writer.drain(), "while sending the request")
        raw = await resp._read(reader.readuntil(b"\r\n\r\n"), "before the response headers")
    except BaseException:
        writer.close()
        raise
    status_line, *header_lines = raw.decode("latin-1").split("\r\n")
    bits = status_line.split(" ", 2)
    if len(bits) < 2 or not bits[0].startswith("HTTP/") or not bits[1].isdigit():
        writer.close()
        raise HttpError("protocol", f"not an HTTP response: {status_line[:60]!r}")
    resp.status, resp.reason = int(bits[1]), bits[2] if len(bits) > 2 else ""
    for line in header_lines:
        if ":" in line:
            k, v = line.split(":", 1)
            resp.headers[k.strip().lower()] = v.strip()
    return resp
