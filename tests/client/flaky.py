"""A real HTTP proxy on loopback, in front of a real `evx serve`, that fails on purpose: it
answers 503/429 with Retry-After, drops connections without an answer, cuts response bodies
after N bytes, or holds a request until the test releases it. Everything else is forwarded."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                        "upgrade", "proxy-authorization", "proxy-authenticate", "host"})
HOLD_TIMEOUT_S = 60.0


@dataclass
class FlakyProxy:
    upstream: str
    #: path suffix -> actions taken by the next requests to a path ending so, in order:
    #: "503:S" / "429:S" (status with Retry-After S), "drop", "cut:N", "hold"
    plan: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    seen: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def fail(self, suffix: str, *actions: str) -> None:
        self.plan[suffix].extend(actions)

    def requests(self, suffix: str) -> list[tuple[str, str, str, str | None]]:
        return [r for r in self.seen if r[1].split("?")[0].endswith(suffix)]

    def _next_action(self, path: str) -> str:
        bare = path.split("?")[0]
        for suffix, actions in self.plan.items():
            if bare.endswith(suffix) and actions:
                return actions.pop(0)
        return "forward"

    def start(self) -> FlakyProxy:
        proxy = self
        client = httpx.Client(base_url=self.upstream, timeout=60.0)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def _handle(self) -> None:
                # the client went away: what a real proxy sees too
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._forward()

            def _forward(self) -> None:
                action = proxy._next_action(self.path)
                proxy.seen.append((self.command, self.path, action, self.headers.get("Range")))
                self.close_connection = True
                if action == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action.startswith(("503:", "429:")):
                    status, seconds = action.split(":")
                    self._drain()
                    body = b'{"title": "try later"}'
                    self.send_response(int(status))
                    self.send_header("Retry-After", seconds)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if action == "hold":
                    proxy.held.set()
                    proxy.release.wait(HOLD_TIMEOUT_S)
                body = self._drain()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                with client.stream(self.command, self.path, headers=headers,
                                   content=body) as answer:
                    self.send_response(answer.status_code)
                    for key, value in answer.headers.multi_items():
                        if key.lower() not in HOP_BY_HOP:
                            self.send_header(key, value)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    limit = int(action.split(":")[1]) if action.startswith("cut:") else None
                    sent = 0
                    for block in answer.iter_raw(64 * 1024):
                        if limit is not None and sent + len(block) >= limit:
                            self.wfile.write(block[:limit - sent])
                            self.wfile.flush()
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        self.wfile.write(block)
                        sent += len(block)

            def _drain(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    body = b""
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0",
                                      16):
                        body += self.rfile.read(size)
                        self.rfile.readline()  # the CRLF after the chunk
                    while self.rfile.readline().strip():  # trailer fields, then the end
                        pass
                    return body
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._client = client
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._client.close()
