"""A JSON 400 for requests too malformed to reach the app.

uvicorn answers a request it cannot parse as HTTP (a bad request line, a broken header, a
body that does not match its framing) itself, before the app sees it, with a plain-text
``Invalid HTTP request received.``. Every other error of the service is a JSON
``{"error", "field"}`` document, so :func:`http_protocol` gives uvicorn (its ``http``
setting) the protocol it would pick anyway with only that answer changed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

BAD_REQUEST = json.dumps(
    {
        "error": "malformed HTTP request: the request line, headers or body framing could not "
        "be parsed; send a well-formed HTTP/1.1 request",
        "field": None,
    }
).encode()


def http_protocol() -> type[asyncio.Protocol]:
    """uvicorn's automatic HTTP protocol (httptools when installed, else h11) with a JSON
    400 for malformed requests."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol
    from uvicorn.protocols.http.h11_impl import H11Protocol

    if issubclass(AutoHTTPProtocol, H11Protocol):
        return _h11_protocol()
    return _httptools_protocol(AutoHTTPProtocol)


def _httptools_protocol(base: Any) -> type[asyncio.Protocol]:
    class JsonBadRequestHttpTools(base):
        def send_400_response(self, msg: str) -> None:
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\n"
                b"content-type: application/json\r\n"
                b"content-length: " + str(len(BAD_REQUEST)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + BAD_REQUEST
            )
            self.transport.close()

    return JsonBadRequestHttpTools


def _h11_protocol() -> type[asyncio.Protocol]:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JsonBadRequestH11(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BAD_REQUEST)).encode()),
                (b"connection", b"close"),
            ]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=BAD_REQUEST),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return JsonBadRequestH11
