"""The witness's HTTP interface (tlog-witness): ``POST <prefix>/add-checkpoint`` and the
monitoring read ``GET <prefix>/<origin hash>/checkpoint``.

The standard library's threading HTTP server is enough for a witness: requests are small, few
and independent, and partners run it with nothing more than the client install.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.cosignature import Cosigner
from custody.note import VerifierKey, parse_note
from custody.witness import (
    MAX_REQUEST_BYTES,
    BadConsistencyProof,
    MalformedRequest,
    SizeConflict,
    UnknownLog,
    UntrustedCheckpoint,
    WitnessedState,
    WitnessRefusal,
    check_add_checkpoint,
    origin_hash,
    parse_add_checkpoint,
)
from evx import durable
from evx.witness.state import WitnessStore

log = logging.getLogger("evx.witness")

REQUEST_TIMEOUT_SECONDS = 30  # a slow client cannot hold a thread longer than this
MAX_KEY_FILE_BYTES = 16 * 1024
SIZE_MEDIA_TYPE = "text/x.tlog.size"
_STATUS = {MalformedRequest: 400, UntrustedCheckpoint: 403, UnknownLog: 404,
           SizeConflict: 409, BadConsistencyProof: 422}


class WitnessKeyError(Exception):
    """The witness key file is missing, unreadable, unsafe or not an Ed25519 key."""


def load_or_create_witness_key(path: Path, *, create: bool) -> Ed25519PrivateKey:
    """The witness's Ed25519 key from a PEM (PKCS#8) file; with ``create``, generated (0600)
    if missing.

    Raises:
        WitnessKeyError: Missing (without ``create``), unreadable, writable by group/others,
            or not an unencrypted Ed25519 PEM key.
    """
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        with contextlib.suppress(FileExistsError):  # another process was first: load theirs
            durable.create_file(path, pem, 0o600)
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise WitnessKeyError(f"cannot read witness key file {path}: {exc.strerror}") from None
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise WitnessKeyError(f"witness key file {path} is writable by group or others")
    try:
        key = serialization.load_pem_private_key(data[:MAX_KEY_FILE_BYTES], password=None)
    except (ValueError, TypeError):
        raise WitnessKeyError(f"witness key file {path} is not an unencrypted PEM key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise WitnessKeyError(f"witness key file {path} does not hold an Ed25519 key")
    return key


@dataclass
class Witness:
    """A witness: its cosigner key, the logs it watches (origin -> log keys) and its store."""

    cosigner: Cosigner
    logs: Mapping[str, Sequence[VerifierKey]]
    store: WitnessStore

    def add_checkpoint(self, body: bytes) -> str:
        """Handle an add-checkpoint body; return the cosignature line.

        Raises:
            WitnessRefusal: the protocol's refusals (see :mod:`custody.witness`).
        """
        request = parse_add_checkpoint(body)
        origin = _origin_of(request.note)
        stored = self.store.latest(origin) if origin is not None else None
        latest = stored.state if stored is not None else None
        try:
            checkpoint = check_add_checkpoint(request, self.logs, latest)
        except (SizeConflict, BadConsistencyProof) as exc:
            # Signed by the log yet refused: possibly proof of misbehaviour; keep it.
            if isinstance(exc, BadConsistencyProof):
                assert origin is not None
                self.store.record_refusal(origin, request.old_size, request.note, exc.reason)
            raise
        new = WitnessedState(checkpoint.size, checkpoint.root)
        body_text = checkpoint.to_note_body()
        cosignature = self.cosigner.cosign(body_text, max(1, int(time.time())))
        kept = _log_signed_note(request.note, self.logs[checkpoint.origin]) + cosignature
        if not self.store.advance(checkpoint.origin, latest, new, kept):
            current = self.store.latest(checkpoint.origin)
            size = current.state.size if current is not None else 0
            raise SizeConflict(f"another request advanced the log to size {size} first",
                               current_size=size)
        return cosignature

    def checkpoint_for(self, hashed_origin: str) -> str | None:
        """The latest cosigned checkpoint of the log whose origin hashes to ``hashed_origin``."""
        for origin in self.logs:
            if origin_hash(origin) == hashed_origin:
                stored = self.store.latest(origin)
                return stored.note if stored is not None else None
        return None


def _origin_of(note: str) -> str | None:
    first = note.split("\n", 1)[0]
    return first or None


def _log_signed_note(note: str, keys: Sequence[VerifierKey]) -> str:
    """The note with only the log's own signature lines kept (the ones the witness verified)."""
    parsed = parse_note(note)
    ids = {(k.name, k.key_id) for k in keys}
    lines = [line for line, sig in zip(note[len(parsed.text) + 1:].splitlines(keepends=True),
                                       parsed.signatures, strict=True)
             if (sig.name, sig.key_id) in ids]
    return parsed.text + "\n" + "".join(lines)


def make_handler(witness: Witness, prefix: str) -> type[BaseHTTPRequestHandler]:
    """The request handler class of a witness served under URL ``prefix`` (e.g. "" or "/w")."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the protocol recommends
        timeout = REQUEST_TIMEOUT_SECONDS
        server_version = "evx-witness"
        sys_version = ""

        def _send(self, status: int, text: str, media_type: str = "text/plain; charset=utf-8"
                  ) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if self.path != prefix + "/add-checkpoint":
                self._send(404, "not found\n")
                return
            length_text = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding") or not (length_text or "").isdigit():
                self.close_connection = True
                self._send(411 if length_text is None else 400,
                           "a Content-Length is required\n")
                return
            length = int(length_text or "0")
            if length > MAX_REQUEST_BYTES:
                self.close_connection = True
                self._send(413, f"request exceeds {MAX_REQUEST_BYTES} bytes\n")
                return
            body = self.rfile.read(length)
            try:
                cosignature = witness.add_checkpoint(body)
            except SizeConflict as exc:
                log.info("add-checkpoint 409: %s", exc.reason)
                self._send(409, f"{exc.current_size}\n", SIZE_MEDIA_TYPE)
                return
            except WitnessRefusal as exc:
                status = _STATUS[type(exc)]
                log.info("add-checkpoint %d: %s", status, exc.reason)
                self._send(status, exc.reason + "\n")
                return
            self._send(200, cosignature)

        def do_GET(self) -> None:
            parts = self.path[len(prefix):].split("/") if self.path.startswith(prefix) else []
            if len(parts) == 3 and parts[0] == "" and parts[2] == "checkpoint":
                note = witness.checkpoint_for(parts[1])
                if note is not None:
                    self._send(200, note)
                    return
            self._send(404, "not found\n")

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


def serve(witness: Witness, host: str, port: int, prefix: str = "") -> ThreadingHTTPServer:
    """A started-on-demand server (call ``serve_forever``); binds ``host:port``."""
    server = _WitnessHTTPServer((host, port), make_handler(witness, prefix.rstrip("/")))
    server.daemon_threads = True
    return server


class _WitnessHTTPServer(ThreadingHTTPServer):
    # socketserver's default backlog of 5 resets bursts of connections (several logs, or one
    # log's replicas, submitting at once).
    request_queue_size = 128
