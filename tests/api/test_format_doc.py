"""docs/encryption-format.md, checked against what the service really stores.

The format review's decryptor could not find or name a real item from the document alone. Here
the numbers, names and file formats the document states are read out of its text and compared
with the objects, key files and database rows the running service (default settings, real HTTP
upload) wrote, and an item is decrypted the document's way (``tests.storage.test_format``'s
partner code) from nothing but what the document says where to find.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from service.settings import Settings
from tests.api.conftest import OPERATOR, OWNER, World, _world
from tests.storage.test_format import partner_open

DOCS = Path(__file__).resolve().parents[2] / "docs"
FORMAT = (DOCS / "encryption-format.md").read_text("utf-8")
OPERATIONS = (DOCS / "operations.md").read_text("utf-8")
# Bytes 0x25 ('%'), a non-Latin-1 character and an NFD sequence, in text form (docs/api.md).
NAME = "up/Überwachungsprotokoll_証拠 100%25 cafe\u0301.bin"


def stated(pattern: str, text: str = FORMAT) -> str:
    match = re.search(pattern, text, re.S)
    assert match is not None, f"the document no longer states {pattern!r}"
    return match.group(1)


def name_pattern(template: str) -> re.Pattern[str]:
    """``items/<2 hex>/<32 hex>`` as the document writes it -> a regular expression."""
    parts = re.split(r"<(\d+) hex>", template)
    regex = "".join(re.escape(part) if i % 2 == 0 else f"[0-9a-f]{{{part}}}"
                    for i, part in enumerate(parts))
    return re.compile(regex)


@pytest.fixture
def default_world(tmp_path: Path) -> Iterator[World]:
    """The service on its default settings (chunk size included), embedded store and keys."""
    yield from _world(Settings(data_dir=tmp_path / "data", operator_authority=OPERATOR))


def test_stored_data_matches_the_document(default_world: World) -> None:
    w = default_world
    chunk_size = int(stated(r"The service writes `chunk_size` = `EVX_CHUNK_SIZE`, by default "
                            r"\*\*([\d ]+)\*\* bytes").replace(" ", ""))
    assert "`EVX_CHUNK_SIZE` | 1 MiB |" in OPERATIONS and chunk_size == 1 << 20
    content_template = stated(r"The content object's name is `([^`]+)`")
    suffix = stated(r"The envelope is the same name plus `([^`]+)`")
    objects_dir = stated(r"object\s+`N` is the file `<EVX_DATA_DIR>/([^`]+)/N`")
    kek_dir = stated(r"`EVX_KEK_DIR`, default\s+`<EVX_DATA_DIR>/([^`]+)`")
    kek_chars = int(stated(r"(\d+) characters, written followed by one `\\n`"))
    storage_keys = set(re.findall(r"`(\w+)`", stated(r"its JSON column `storage` holds\s+(.*?)"
                                                     r" and, for the old items")))

    package_id = w.create_package()
    data = bytes(range(256)) * 4096 + b"!"  # 1 MiB + 1: two chunks, the last of 1 byte
    assert w.upload(package_id, NAME, data)["name"] == NAME

    # How an item's objects are found: package_items.object_name, objects under the data dir.
    with w.runtime.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, object_name, storage FROM package_items "
                                    "WHERE package_id = :p"), {"p": package_id}).all()
    assert len(rows) == 1
    name, object_name, storage = rows[0]
    storage = storage if isinstance(storage, dict) else json.loads(storage)
    assert name == NAME and storage["object_name"] == object_name
    assert set(storage) == storage_keys - {"binding_item"}
    assert name_pattern(content_template).fullmatch(object_name), object_name
    root = w.settings.data_dir / objects_dir
    content = (root / object_name).read_bytes()
    envelope = (root / (object_name + suffix)).read_bytes()
    listed = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert listed == sorted([object_name, object_name + suffix])

    # The chunk size the service writes, and the sizes that follow from it.
    assert content[:4] == b"EVXC" and struct.unpack(">I", content[6:10])[0] == chunk_size
    chunks = max(1, -(-len(data) // chunk_size))
    assert chunks == 2 and len(content) == 33 + len(data) + 16 * chunks
    assert envelope[5:38] == content[:33]
    assert struct.unpack(">Q", envelope[38:46])[0] == len(data) == storage["plaintext_size"]

    # The item id is the name's text form, UTF-8, lengths in bytes, nothing normalised.
    item_id = NAME.encode("utf-8")
    assert len(item_id) > len(NAME)  # bytes, not characters
    binding = (struct.pack(">H", len(package_id)) + package_id.encode()
               + struct.pack(">H", len(item_id)) + item_id)
    assert envelope[46:78] == hashlib.sha256(binding).digest()

    # The key files: <id>.key = standard padded base64 of 32 bytes and one newline; active.
    keys = w.settings.data_dir / kek_dir
    active = (keys / "active").read_text("ascii")
    assert active.endswith("\n") and active.count("\n") == 1
    active_id = active[:-1]
    key_files = sorted(keys.glob("*.key"))
    assert [p.name for p in key_files] == [f"{active_id}.key"]
    text = key_files[0].read_bytes()
    assert re.fullmatch(rb"[A-Za-z0-9+/]{%d}=\n" % (kek_chars - 1), text), text
    kek = base64.b64decode(text[:-1], validate=True)
    assert len(kek) == 32

    # The envelope names its KEK; the document's reader decrypts the item with it.
    key_id = envelope[81:81 + envelope[80]].decode("ascii")
    assert envelope[78] == 1 and envelope[79] == 1 and key_id == active_id
    assert storage["key_ids"] == [active_id]
    assert partner_open(content, envelope, key_id, kek, package_id, NAME) == data
    assert hashlib.sha256(data).hexdigest() == storage["sha256"]

    # After rotation the envelope names the new key; the database's key_ids are a stale cache.
    new_id = w.runtime.keyring.rotate()
    report = w.runtime.vault.rewrap_all()
    assert report.rewrapped == 1
    envelope = (root / (object_name + suffix)).read_bytes()
    assert envelope[81:81 + envelope[80]].decode("ascii") == new_id
    with w.runtime.engine.connect() as conn:
        storage_after = conn.execute(sa.text("SELECT storage FROM package_items "
                                             "WHERE package_id = :p"), {"p": package_id}).scalar()
    storage_after = storage_after if isinstance(storage_after, dict) \
        else json.loads(storage_after)
    assert storage_after["key_ids"] == [active_id] != [new_id]
    new_kek = base64.b64decode((keys / f"{new_id}.key").read_bytes().strip(), validate=True)
    assert partner_open(content, envelope, new_id, new_kek, package_id, NAME) == data
    r = w.client.get(f"/v1/packages/{package_id}/items/{quote(NAME, safe='/')}/content",
                     headers=w.headers(OWNER))
    assert r.status_code == 200 and r.content == data


@pytest.fixture
def segment_world(tmp_path: Path) -> Iterator[World]:
    """Default settings (1 MiB chunks), uploads stored in segments of 1 MiB."""
    yield from _world(Settings(data_dir=tmp_path / "data", operator_authority=OPERATOR,
                               upload_segment_mib=1))


def test_staged_segments_match_the_document(segment_world: World) -> None:
    """A resumable upload broken off: its envelope and segments are where and what the
    document's "Resumable uploads: staged segments" says; completed, the staging is gone."""
    segment_template = stated(r"\n\s+(staging/<32 hex>/[^\n]+)\n")
    assert segment_template == ("staging/<32 hex>/<first chunk index, 10 decimal digits>"
                                "-<8 random hex>")
    segment_re = re.compile(r"staging/([0-9a-f]{32})/([0-9]{10})-[0-9a-f]{8}")
    w = segment_world
    chunk_size = w.settings.chunk_size
    data = bytes(range(251)) * 10_000  # 2.4 MiB: three chunks, the last one short
    package_id = w.create_package()
    name = "images/disk.E01"
    headers = {**w.headers(OWNER), "Upload-Complete": "?0", "Upload-Length": str(len(data))}
    r = w.client.put(f"/v1/packages/{package_id}/items/{name}", content=data[:1_500_000],
                     headers=headers)
    assert r.status_code == 201, r.text
    root = w.settings.data_dir / "objects"
    segments = sorted(p.relative_to(root).as_posix() for p in (root / "staging").rglob("*")
                      if p.is_file())
    assert len(segments) == 1 and segment_re.fullmatch(segments[0]), segments
    stem, first = segment_re.fullmatch(segments[0]).groups()  # type: ignore[union-attr]
    assert first == "0000000000"
    envelopes = [p for p in (root / "items").rglob("*.keys")]
    assert len(envelopes) == 1 and envelopes[0].name == f"{stem}.keys"
    envelope = envelopes[0].read_bytes()
    assert struct.unpack(">Q", envelope[38:46])[0] == len(data)  # the declared size
    segment = (root / segments[0]).read_bytes()
    assert segment[:33] == envelope[5:38]  # chunk 0's segment starts with the header
    assert len(segment) == 33 + chunk_size + 16  # whole sealed chunks only

    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    r = w.client.patch(r.headers["location"], content=data[chunk_size:],
                       headers={**w.headers(OWNER), "Upload-Offset": str(chunk_size),
                                "Upload-Complete": "?1",
                                "Content-Type": "application/partial-upload",
                                "Repr-Digest": f"sha-256=:{digest}:"})
    assert r.status_code == 201, r.text
    assert not any(p.is_file() for p in (root / "staging").rglob("*"))
    content = envelopes[0].with_name(stem).read_bytes()
    assert content.startswith(segment) and len(content) == 33 + len(data) + 16 * 3
