"""Randomized hostile administrator: small ledgers, one random mutation, always caught.

Each example rebuilds a ledger of 2..8 entries in the same (trigger-less) database, signs a
checkpoint the partner keeps, applies one mutation at a random position and verifies an export.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custody.checkpoint import Checkpoint
from custody.errors import (
    ChainError,
    ForkError,
    LeafHashMismatch,
    RollbackError,
    SequenceError,
    VerificationError,
)
from service.db import make_engine
from service.ledger import Ledger
from tests.ledger.helpers import ORIGIN, event, export_bytes, verify
from tests.ledger.hostile import HostileAdmin

pytestmark = pytest.mark.slow  # Hypothesis: random tampering of whole stored ledgers

EDITS: dict[str, Any] = {
    "subject": lambda d: d["actor"].update(subject=d["actor"]["subject"] + "x"),
    "authority": lambda d: d["actor"].update(authority="FR-DGSI"),
    "outcome": lambda d: d.update(outcome="failed", reason="made up"),
    "item": lambda d: d.update(item=(d["item"] or "") + "x"),
    "details": lambda d: d["details"].update(n=d["details"]["n"] + 1),
    "time": lambda d: d.update(time=d["time"][:20] + ("111111Z" if d["time"][20] != "1"
                                                       else "222222Z")),
    "package": lambda d: d.update(package="pkg-forged"),
}
KINDS = ["edit", "edit-rehash", "delete", "swap", "truncate"]


@pytest.fixture
def admin_db(db_url: str) -> Iterator[tuple[str, HostileAdmin]]:
    admin = HostileAdmin(make_engine(db_url))
    admin.drop_triggers()
    try:
        yield db_url, admin
    finally:
        admin.engine.dispose()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), size=st.integers(2, 8), kind=st.sampled_from(KINDS))
def test_random_mutation_is_caught(admin_db: tuple[str, HostileAdmin], log_key: Ed25519PrivateKey,
                                   data: st.DataObject, size: int, kind: str) -> None:
    url, admin = admin_db
    admin.wipe(drop_checkpoints=True)
    ledger = Ledger(make_engine(url), log_key, origin=ORIGIN, owns_engine=True)
    try:
        packages = data.draw(st.lists(st.sampled_from(["p1", "p2", None]), min_size=size,
                                      max_size=size), label="packages")
        ledger.append_many([event(n, package=p) for n, p in enumerate(packages)])
        note = ledger.sign_checkpoint().note
        trusted = Checkpoint.verify(note, ledger.verifier_key)
        index = data.draw(st.integers(0, size - 1), label="index")
        expected: tuple[type[VerificationError], int | None]
        if kind in ("edit", "edit-rehash"):
            field = data.draw(st.sampled_from(sorted(EDITS)), label="field")
            admin.edit_entry(index, EDITS[field], rehash=kind == "edit-rehash")
            linked = packages[index] is not None and packages[index] in packages[:index]
            if kind == "edit":
                expected = (LeafHashMismatch, index)
            elif field == "package" and linked:  # its package_prev now names another package
                expected = (ChainError, index)
            elif index < size - 1:
                expected = (ChainError, index + 1)
            else:  # the last entry: no later link names it; the partner's root does
                expected = (ForkError, None)
        elif kind == "delete":
            admin.delete_entry(index)
            expected = (SequenceError, index)
        elif kind == "swap":
            other = data.draw(st.integers(0, size - 1).filter(lambda j: j != index), label="other")
            admin.swap(index, other)
            expected = (SequenceError, min(index, other))
        else:
            cut = max(index, 1)
            admin.truncate_tail(cut, drop_checkpoints=True)
            exported = export_bytes(ledger)  # the log signs the shortened tree...
            with pytest.raises(RollbackError) as rolled:  # ...the partner's checkpoint does not
                verify(exported, ledger, trusted)
            assert rolled.value.index == cut
            return
        out = io.BytesIO()
        ledger.export_with(out, note)
        with pytest.raises(VerificationError) as caught:
            verify(out.getvalue(), ledger, trusted)
        assert (type(caught.value), caught.value.index) == expected
    finally:
        ledger.close()
