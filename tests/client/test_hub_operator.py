"""The hub operator, holding the database, the object store and the key-encryption key, against
the partners' own machines (the real `evx` CLI): every move ends in exit 1 on a partner's side,
naming the entry index or the item. On SQLite + folder and on PostgreSQL + SeaweedFS.

The operator writes straight to the tables (append-only triggers dropped, as a database
administrator can) and to the store, and re-encrypts under the real KEK.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from custody.entry import Entry
from custody.merkle import node_hash
from service.identity.keys import public_key_from_pem
from service.ledger import tables as ledger_tables
from service.packages.transfers import stored_to_json
from service.runtime import build_store
from service.settings import Settings
from storage.evidence import EvidenceVault
from storage.keyring import DirectoryKeySource, Keyring
from tests.client.harness import EVX, OPERATOR, OWNER, RECIPIENT, EvxServer, User
from tests.ledger.hostile import HostileAdmin
from tests.support.postgres import create_database, drop_database

pytestmark = pytest.mark.slow  # real servers and about forty evx processes per backend

STRANGER = "IT-POLIZIA"


@dataclass
class Hub:
    server: EvxServer
    settings: Settings
    engine: sa.Engine
    de: User
    fr: User
    de_auditor: User
    fr_auditor: User
    monitor: User  # the operator's auditor (each test gives it its own state)

    def operator(self) -> HostileAdmin:
        admin = HostileAdmin(self.engine)
        with contextlib.suppress(AssertionError):  # dropped by an earlier move
            admin.drop_triggers()
        return admin


def _hub(server: EvxServer, settings: Settings) -> Iterator[Hub]:
    server.root.mkdir(parents=True, exist_ok=True)
    server.add_authority(OWNER, "DE", "investigator,auditor")
    server.add_authority(RECIPIENT, "FR", "investigator,auditor")
    server.add_authority(STRANGER, "IT", "investigator,auditor")
    server.add_authority(OPERATOR, "EU", "auditor")
    users = server.users([(OWNER, "investigator", "anna"), (RECIPIENT, "investigator", "luc"),
                          (OWNER, "auditor", "dieter"), (RECIPIENT, "auditor", "claire"),
                          (OPERATOR, "auditor", "olga")])
    server.start()
    engine = sa.create_engine(settings.resolved_database_url)
    try:
        yield Hub(server, settings, engine, *users)
    finally:
        server.stop()
        engine.dispose()


@pytest.fixture(scope="module", params=["embedded", "pg_s3"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp(f"hub-{request.param}")
    if request.param == "embedded":
        server = EvxServer(root / "srv")
        yield from _hub(server, Settings(data_dir=server.data_dir, chunk_size=64 * 1024))
        return
    pg_server_url = request.getfixturevalue("pg_server_url")
    seaweed = request.getfixturevalue("seaweed")
    url = create_database(pg_server_url, "evx_hub")
    bucket = f"evx-hub-{uuid.uuid4().hex[:12]}"
    server = EvxServer(root / "srv", extra_env={
        "EVX_DATABASE_URL": url, "EVX_OBJECT_STORE": "s3", "EVX_S3_ENDPOINT": seaweed.endpoint,
        "EVX_S3_ACCESS_KEY": seaweed.access_key, "EVX_S3_SECRET_KEY": seaweed.secret_key,
        "EVX_S3_BUCKET": bucket})
    settings = Settings(data_dir=server.data_dir, chunk_size=64 * 1024, database_url=url,
                        object_store="s3", s3_endpoint=seaweed.endpoint,
                        s3_access_key=seaweed.access_key, s3_secret_key=seaweed.secret_key,
                        s3_bucket=bucket)
    try:
        yield from _hub(server, settings)
    finally:
        seaweed.drop_bucket(bucket)
        drop_database(pg_server_url, url)


def _shared_package(hub: Hub, tmp_path: Path, tag: str) -> tuple[str, bytes]:
    package = hub.de.json("package", "create", "--case-ref", f"CASE-{tag}", "--title", tag)["id"]
    evidence = tmp_path / tag / "statement.txt"
    evidence.parent.mkdir(parents=True)
    content = f"witness statement {tag}: the suspect was at home\n".encode()
    evidence.write_bytes(content)
    hub.de.run("upload", package, str(evidence))
    hub.de.run("seal", package)
    hub.de.run("share", package, "--authority", RECIPIENT, "--legal-basis", "EIO 2014/41/EU",
               "--request-ref", f"MLA-{tag}")
    return package, content


def _fails(user: User, *args: str) -> dict[str, Any]:
    """``evx ARGS --json`` must exit 1; the JSON error document."""
    proc = user.run(*args, "--json", expect=1)
    return dict(json.loads(proc.stdout))


def _entries(hub: Hub, package: str) -> list[Entry]:
    with hub.engine.connect() as conn:
        rows = conn.execute(sa.select(ledger_tables.entries.c.canonical)
                            .where(ledger_tables.entries.c.package == package)
                            .order_by(ledger_tables.entries.c.idx)).scalars().all()
    return [Entry.from_json_bytes(r.encode()) for r in rows]


# -- H1: content re-encrypted under the real KEK ---------------------------------------------------

def test_forged_content_is_refused_by_the_recipient(hub: Hub, tmp_path: Path) -> None:
    package, genuine = _shared_package(hub, tmp_path, "h1")
    vault = EvidenceVault(
        build_store(hub.settings),
        Keyring(DirectoryKeySource(hub.settings.resolved_kek_dir)),
        chunk_size=64 * 1024,
    )
    forged = b"FORGED: the suspect was elsewhere\n"
    stored = vault.put_item(package, "statement.txt", [forged])
    with hub.engine.begin() as conn:
        conn.execute(sa.text("UPDATE package_items SET object_name = :o, storage = :s, size = :n, "
                             "sha256 = :h WHERE package_id = :p AND name = 'statement.txt'"),
                     {"o": stored.object_name, "s": json.dumps(stored_to_json(stored)),
                      "n": stored.plaintext_size, "h": stored.sha256, "p": package})
    upload = next(e for e in _entries(hub, package) if e.action.value == "item.uploaded")

    out = tmp_path / "received"
    error = _fails(hub.fr, "download", package, "-o", str(out))
    assert error["error"] == "not-on-record"
    assert error["index"] == upload.index and error["item"] == "statement.txt"
    assert error["recorded"] == hashlib.sha256(genuine).hexdigest() == upload.details["sha256"]
    assert error["offered"] == stored.sha256
    assert f"entry {upload.index}" in error["message"]
    assert not (out / "statement.txt").exists()


# -- H1: a share row inserted for a third country --------------------------------------------------


def test_forged_share_is_caught_by_the_owners_auditor(hub: Hub, tmp_path: Path) -> None:
    package, genuine = _shared_package(hub, tmp_path, "share")
    hub.de_auditor.run("custody", package)  # the owner's auditors saw it before
    with hub.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO package_shares (package_id, authority, legal_basis, "
                "request_reference, expires_at, created_by, created_at, revoked_at, revoked_by) "
                "SELECT package_id, :a, 'forged basis', 'none', NULL, created_by, created_at, "
                "NULL, NULL FROM package_shares WHERE package_id = :p AND authority = :r"
            ),
            {"a": STRANGER, "p": package, "r": RECIPIENT},
        )
    stranger = hub.server.user(STRANGER, "investigator", "mario")
    response = httpx.get(f"{hub.server.url}/v1/packages/{package}/items/statement.txt/content",
                         headers={"Authorization": f"Bearer {stranger.token}"}, timeout=30)
    assert response.status_code == 200 and response.content == genuine  # the hub let it through
    started = [e for e in _entries(hub, package)
               if e.action.value == "download.started" and e.actor.authority == STRANGER]
    assert len(started) == 1

    error = _fails(hub.de_auditor, "custody", package)
    assert error["error"] == "custody-rules-broken"
    assert (
        f"entry {started[0].index}: access.share: {STRANGER} read 'statement.txt'"
        in error["message"]
    )


# -- M1: a package's latest entries deleted, its head repointed ------------------------------------


def test_deleted_latest_entries_are_missed_by_the_recipient(hub: Hub, tmp_path: Path) -> None:
    package, _ = _shared_package(hub, tmp_path, "m1")
    hub.fr.run("download", package, "-o", str(tmp_path / "got"))
    hub.fr_auditor.run("custody", package)
    hub.de.run("package", "list")  # the ledger goes on: the package's entries are not its tail
    entries = _entries(hub, package)
    share = next(e for e in entries if e.action.value == "share.created")
    keep = [e for e in entries if e.index < share.index]
    gone = [e.index for e in entries if e.index >= share.index]
    admin = hub.operator()
    with hub.engine.begin() as conn:
        conn.execute(ledger_tables.entries.delete().where(ledger_tables.entries.c.idx.in_(gone)))
        conn.execute(ledger_tables.package_heads.update()
                     .where(ledger_tables.package_heads.c.package == package)
                     .values(last_index=keep[-1].index, last_leaf_hash=keep[-1].leaf_hash(),
                             count=len(keep)))
    assert admin.postgres == (hub.engine.dialect.name == "postgresql")
    # the service reads the repointed head afresh: new entries chain past the gap
    hub.server.restart()

    error = _fails(hub.fr_auditor, "custody", package)
    assert error["error"] == "custody-rules-broken"
    pinned = max(gone)  # the last entry the recipient's auditor verified
    assert f"entry {pinned}: verified here before" in error["message"]
    assert error["violations"]


# -- H2: a key added for a partner authority, and used --------------------------------------------

def _thumbprint_of_keys(hub: Hub, authority: str) -> list[str]:
    folder = hub.server.data_dir / "authorities" / authority
    from cryptography.hazmat.primitives import serialization

    prints = []
    for pem in sorted(folder.glob("*.pem")):
        private = serialization.load_pem_private_key(pem.read_bytes(), password=None)
        public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        prints.append(public_key_from_pem(public).thumbprint)
    return prints


def test_key_added_for_a_partner_is_caught_by_its_auditor(hub: Hub, tmp_path: Path) -> None:
    package, _ = _shared_package(hub, tmp_path, "h2")
    # FR's auditors declare the keys FR really holds (from FR's own key store, out of band).
    real = _thumbprint_of_keys(hub, RECIPIENT)
    hub.fr_auditor.run("trust", "keys", RECIPIENT, *[a for t in real for a in ("--thumbprint", t)])
    hub.fr_auditor.run("custody", package)  # all FR's actions so far are under its keys

    added = hub.server.admin("authority", "key", "add", RECIPIENT, "--generate-key")
    kid = added.split()[2]
    impostor_token = hub.server.admin("token", RECIPIENT, "--sub", "luc", "--role",
                                      "investigator", "--kid", kid, "--ttl", "600")
    impostor = User("impostor", impostor_token, tmp_path / "impostor" / "state", hub.server)
    impostor.run("download", package, "-o", str(tmp_path / "impostor-got"))
    acted = [e for e in _entries(hub, package) if e.token is not None and e.token.kid == kid]
    assert acted and all(e.actor.authority == RECIPIENT for e in acted)

    error = _fails(hub.fr_auditor, "custody", package)
    assert error["error"] == "custody-rules-broken"
    assert (f"entry {acted[0].index}: acts for {RECIPIENT} under key {kid!r}"
            in error["message"]), error["message"]


# -- I7: an entry edited where `ledger sync` used to look only at tree heads -----------------------

def test_edited_entry_is_caught_by_ledger_sync(hub: Hub, tmp_path: Path) -> None:
    monitor = User("olga", hub.monitor.token, tmp_path / "monitor" / "state", hub.server)
    monitor.json("ledger", "sync")
    package, _ = _shared_package(hub, tmp_path, "i7")
    hub.fr.run("package", "show", package)  # more entries after the share
    upload = next(e for e in _entries(hub, package) if e.action.value == "item.uploaded")
    # Edit an entry whose leaf is covered by a stored node above it, with its leaf hash and its
    # leaf node: the tree's higher nodes, the checkpoints and every proof stay as they were.
    target = upload.index if upload.index % 2 == 0 else upload.index - 1
    admin = hub.operator()
    with hub.engine.connect() as conn:
        size = conn.execute(sa.select(sa.func.max(ledger_tables.entries.c.idx))).scalar_one() + 1
    assert target + 1 < size
    forged = admin.edit_entry(target, lambda data: data["details"].update(forged=True)
                              if isinstance(data.get("details"), dict) else None, rehash=True)
    with hub.engine.begin() as conn:
        conn.execute(ledger_tables.nodes.update().where(sa.and_(
            ledger_tables.nodes.c.level == 0, ledger_tables.nodes.c.node_index == target))
            .values(hash=forged.leaf_hash()))
        sibling = conn.execute(sa.select(ledger_tables.nodes.c.hash).where(sa.and_(
            ledger_tables.nodes.c.level == 1,
            ledger_tables.nodes.c.node_index == target // 2))).scalar_one_or_none()
    assert sibling is not None, "the edited leaf must sit under a stored node"
    assert bytes(sibling) != node_hash(forged.leaf_hash(), forged.leaf_hash())

    error = _fails(monitor, "ledger", "sync")
    assert error["error"] == "entry-edited" and error["index"] == target, error
    assert f"entry {target}: its text as served is not what the log signed" in error["message"]


def test_trust_log_key_given_out_of_band(hub: Hub, tmp_path: Path) -> None:
    """EVX_LOG_KEY / `evx trust log --key`: a server presenting another key is refused (exit 1)."""
    real = hub.server.admin("ledger", "verifier-key")
    auditor = User("fresh", hub.fr_auditor.token, tmp_path / "fresh" / "state", hub.server)
    auditor.run("trust", "log", "--key", real)
    shown = auditor.json("trust", "show")
    assert shown["log_key"] == real and shown["how"] == "explicit"
    from custody.note import Signer

    other = str(Signer.generate(real.split("+")[0]).verifier_key)
    proc = subprocess.run([*EVX, "ledger", "sync"], env={**auditor.env(), "EVX_LOG_KEY": other},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1 and "CHANGED" in proc.stderr, proc.stderr
