"""Gathering witness cosignatures for the ledger's checkpoints (C2SP tlog-witness, log side).

One background thread per witness submits the newest signed checkpoint with a consistency proof
from the size that witness last cosigned (learned from its 409 answers when unknown), retries a
bounded number of times with exponential backoff, and stores the cosignature it gets back after
verifying it under the witness's configured key. A signer thread signs a checkpoint whenever the
tree has grown, so appends never wait for witnesses and requests never wait for either.

``/v1/ledger/checkpoint`` then serves the newest checkpoint with the cosignatures held for it
(:func:`witnessed_note`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import sqlalchemy as sa

from custody.cosignature import CosignerKey, verify_cosignatures
from custody.errors import VerificationError
from custody.witness import format_add_checkpoint
from service.db import SQLITE_BEGIN
from service.ledger import tables
from service.ledger.models import StoredCheckpoint
from service.metrics import Metrics

if TYPE_CHECKING:
    from service.ledger.ledger import Ledger

log = logging.getLogger("evx.witnesses")

SIZE_MEDIA_TYPE = "text/x.tlog.size"
MAX_RESPONSE_BYTES = 16 * 1024  # a few cosignature lines; anything longer is not an answer
BACKOFF_START_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 30.0


class WitnessConfigError(ValueError):
    """``EVX_WITNESSES`` is not a list of ``<name> <vkey> <url>`` entries."""


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness the hub submits to: a local label, its cosigner key and submission prefix."""

    name: str
    key: CosignerKey
    url: str


def parse_witnesses(text: str) -> list[WitnessEndpoint]:
    """Parse ``EVX_WITNESSES``: entries separated by ``;`` or newlines, each
    ``[witness] <name> <vkey> <url>`` (a tlog-policy witness line).

    Raises:
        WitnessConfigError: A malformed entry, a bad key, a duplicate name or key.
    """
    found: list[WitnessEndpoint] = []
    for raw in text.replace(";", "\n").split("\n"):
        fields = raw.split()
        if fields and fields[0] == "witness":
            fields = fields[1:]
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 3 or not fields[2].startswith(("http://", "https://")):
            raise WitnessConfigError(f"witness entry {raw.strip()!r} is not '<name> <vkey> <url>'")
        try:
            key = CosignerKey.parse(fields[1])
        except VerificationError as exc:
            raise WitnessConfigError(f"witness {fields[0]}: {exc.reason}") from None
        if any(w.name == fields[0] or w.key == key for w in found):
            raise WitnessConfigError(f"witness {fields[0]} is listed twice")
        found.append(WitnessEndpoint(fields[0], key, fields[2].rstrip("/")))
    return found


# -- storage -----------------------------------------------------------------------------------

def store_cosignature(engine: sa.Engine, witness: WitnessEndpoint, checkpoint: StoredCheckpoint,
                      line: str, cosigned_at: int) -> None:
    """Keep a verified cosignature (once per witness and tree size)."""
    c = tables.cosignatures.c
    with engine.connect().execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}) as conn, \
            conn.begin():
        exists = conn.execute(sa.select(c.tree_size).where(
            c.witness == witness.key.name, c.tree_size == checkpoint.tree_size)).first()
        if exists is None:
            conn.execute(tables.cosignatures.insert().values(
                witness=witness.key.name, tree_size=checkpoint.tree_size, root=checkpoint.root,
                line=line, cosigned_at=cosigned_at))


def cosigned_size(engine: sa.Engine, witness: WitnessEndpoint) -> int | None:
    """The largest tree size ``witness`` cosigned for this hub, or None."""
    c = tables.cosignatures.c
    with engine.connect() as conn:
        value = conn.execute(sa.select(sa.func.max(c.tree_size))
                             .where(c.witness == witness.key.name)).scalar()
    return None if value is None else int(value)


def witnessed_note(engine: sa.Engine, witnesses: Sequence[WitnessEndpoint],
                   min_cosignatures: int) -> str | None:
    """The newest checkpoint cosigned by at least ``min_cosignatures`` of ``witnesses`` (else
    the newest cosigned by any), as one signed note: the log's signature line, then one
    cosignature line per witness. None when no checkpoint has a cosignature yet."""
    c = tables.cosignatures.c
    names = [w.key.name for w in witnesses]
    with engine.connect() as conn:
        counted = (sa.select(c.tree_size, c.root, sa.func.count().label("n"))
                   .where(c.witness.in_(names)).group_by(c.tree_size, c.root))
        best = None
        for threshold in (min_cosignatures, 1):
            best = conn.execute(sa.select(counted.subquery()).where(
                sa.column("n") >= threshold).order_by(sa.column("tree_size").desc()).limit(1)
            ).first()
            if best is not None:
                break
        if best is None:
            return None
        size, root = int(best.tree_size), bytes(best.root)
        k = tables.checkpoints.c
        note = conn.execute(sa.select(k.note).where(k.tree_size == size, k.root == root)
                            .order_by(k.id.desc()).limit(1)).scalar()
        lines = conn.execute(sa.select(c.line).where(
            c.tree_size == size, c.root == root, c.witness.in_(names)).order_by(c.witness)
        ).scalars().all()
    if note is None:
        return None
    return note + "".join(lines)


def served_note(collector: CosignatureCollector | None, ledger: Ledger,
                quorum: int | None) -> str | None:
    """The newest checkpoint with the witnesses' cosignatures held for it (cosigned by
    ``quorum`` of them, default a majority), or None without witnesses, before any
    cosignature, or when the note is not signed by ``ledger``'s key."""
    if collector is None:
        return None
    from custody.checkpoint import Checkpoint

    witnesses = collector.witnesses
    note = witnessed_note(collector.engine, witnesses, quorum or len(witnesses) // 2 + 1)
    if note is None:
        return None
    try:
        Checkpoint.verify(note, ledger.verifier_key)
    except VerificationError:
        return None  # not ours: the caller's path refuses to serve it
    return note


# -- the collector -----------------------------------------------------------------------------

@dataclass
class WitnessStatus:
    """What the hub knows of one witness (for /readyz and metrics)."""

    cosigned_size: int | None = None
    known_size: int | None = None  # the witness's own latest size, when it told us
    last_error: str | None = None
    last_success_at: float | None = None


@dataclass
class CosignatureCollector:
    """Background threads that get every new checkpoint cosigned by the configured witnesses."""

    engine: sa.Engine
    ledger: Ledger
    witnesses: Sequence[WitnessEndpoint]
    metrics: Metrics | None = None
    interval: float = 1.0
    timeout: float = 10.0
    max_attempts: int = 5
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: dict[str, threading.Event] = field(default_factory=dict)
    _status: dict[str, WitnessStatus] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        """Start the signer thread and one thread per witness."""
        for witness in self.witnesses:
            self._wake[witness.key.name] = threading.Event()
            self._status[witness.key.name] = WitnessStatus()
            self._threads.append(threading.Thread(target=self._run_witness, args=(witness,),
                                                  name=f"witness-{witness.name}", daemon=True))
        self._threads.append(threading.Thread(target=self._run_signer, name="witness-signer",
                                              daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop every thread (each finishes its current request first)."""
        self._stop.set()
        for event in self._wake.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 1)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per witness (by label): the size it last cosigned, its lag behind the tree in
        entries, and the last error."""
        try:
            size = self.ledger.tree_size()
        except Exception:  # noqa: BLE001 - reported as unknown lag
            size = None
        out: dict[str, dict[str, Any]] = {}
        for witness in self.witnesses:
            st = self._status.get(witness.key.name, WitnessStatus())
            lag = None if size is None else size - (st.cosigned_size or 0)
            if self.metrics is not None and lag is not None:
                self.metrics.witness_lag.labels(witness.name).set(lag)
            out[witness.name] = {"url": witness.url, "cosigned_size": st.cosigned_size,
                                 "lag_entries": lag, "last_error": st.last_error}
        return out

    # -- threads -------------------------------------------------------------------------------

    def _wait(self, seconds: float, event: threading.Event | None = None) -> bool:
        """Sleep up to ``seconds`` (woken early by ``event``); whether to stop."""
        (event or self._stop).wait(seconds)
        if event is not None:
            event.clear()
        return self._stop.is_set()

    def _run_signer(self) -> None:
        while not self._wait(self.interval):
            try:
                latest = self.ledger.latest_checkpoint()
                if latest is None or self.ledger.tree_size() > latest.tree_size:
                    self.ledger.sign_checkpoint()
            except Exception as exc:  # noqa: BLE001 - the ledger reports itself elsewhere
                log.warning("witness signer: cannot sign a checkpoint: %s", exc)
                continue
            for event in self._wake.values():
                event.set()

    def _run_witness(self, witness: WitnessEndpoint) -> None:
        st = self._status[witness.key.name]
        try:
            st.cosigned_size = cosigned_size(self.engine, witness)
        except sa.exc.SQLAlchemyError as exc:
            st.last_error = f"database: {type(exc).__name__}"
        with httpx.Client(timeout=self.timeout) as http:
            while not self._wait(self.interval, self._wake[witness.key.name]):
                try:
                    target = self.ledger.latest_checkpoint()
                except Exception as exc:  # noqa: BLE001
                    st.last_error = f"ledger: {type(exc).__name__}"
                    continue
                if target is None or (st.cosigned_size or -1) >= target.tree_size:
                    continue
                try:
                    self._submit(http, witness, st, target)
                except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
                    st.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    log.warning("witness %s: %s", witness.name, st.last_error)
                self.status()

    def _submit(self, http: httpx.Client, witness: WitnessEndpoint, st: WitnessStatus,
                target: StoredCheckpoint) -> None:
        """Get ``target`` cosigned by ``witness``: up to ``max_attempts`` requests, backing off
        after failures; a 409 teaches the witness's size and is answered at once."""
        delay = BACKOFF_START_SECONDS
        for _ in range(self.max_attempts):
            old = st.known_size if st.known_size is not None else (st.cosigned_size or 0)
            outcome = self._attempt(http, witness, st, target, old)
            if self.metrics is not None:
                self.metrics.witness_submissions.labels(witness.name, outcome).inc()
            if outcome in ("cosigned", "ahead"):
                return
            if outcome == "conflict":
                continue
            if self._wait(delay):
                return
            delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    def _attempt(self, http: httpx.Client, witness: WitnessEndpoint, st: WitnessStatus,
                 target: StoredCheckpoint, old: int) -> str:
        if old > target.tree_size:
            st.last_error = (f"witness is at size {old}, beyond this hub's checkpoint of "
                             f"{target.tree_size}")
            return "ahead"
        try:
            proof = self.ledger.consistency_proof(old, target.tree_size) \
                if 0 < old < target.tree_size else []
            body = format_add_checkpoint(old, proof, target.note)
            response = http.post(witness.url + "/add-checkpoint", content=body,
                                 headers={"Content-Type": "text/plain"})
        except httpx.HTTPError as exc:
            st.last_error = f"unreachable: {type(exc).__name__}"
            return "unreachable"
        except Exception as exc:  # noqa: BLE001 - a proof the ledger cannot build
            st.last_error = f"cannot build the request: {exc}"
            return "error"
        text = response.text[:MAX_RESPONSE_BYTES]
        if response.status_code == 409 and response.headers.get("content-type", "").startswith(
                SIZE_MEDIA_TYPE) and text.strip().isdigit():
            st.known_size = int(text.strip())
            st.last_error = f"409: witness is at size {st.known_size}"
            return "ahead" if st.known_size > target.tree_size else "conflict"
        if response.status_code != 200:
            st.known_size = None if response.status_code != 422 else st.known_size
            st.last_error = f"{response.status_code}: {text.strip()[:200]}"
            log.warning("witness %s refused checkpoint %d: %s", witness.name,
                        target.tree_size, st.last_error)
            return f"refused-{response.status_code}"
        try:
            found = verify_cosignatures(target.note + text, [witness.key])
        except VerificationError as exc:
            st.last_error = f"bad cosignature: {exc.reason}"
            return "bad-cosignature"
        if witness.key not in found:
            st.last_error = "no cosignature by the configured key in the answer"
            return "bad-cosignature"
        line = next(
            ln + "\n"
            for ln in text.splitlines()
            if ln.startswith(f"\u2014 {witness.key.name} ")
            and _line_verifies(target.note, ln, witness.key)
        )
        store_cosignature(self.engine, witness, target, line, found[witness.key])
        st.cosigned_size = max(st.cosigned_size or 0, target.tree_size)
        st.known_size = target.tree_size
        st.last_error = None
        st.last_success_at = time.time()
        return "cosigned"


def _line_verifies(note: str, line: str, key: CosignerKey) -> bool:
    try:
        return key in verify_cosignatures(note + line + "\n", [key])
    except VerificationError:
        return False
