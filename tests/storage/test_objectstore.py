"""The ObjectStore contract, run against both real backends (filesystem and SeaweedFS S3)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.errors import BackendUnavailable, ObjectNotFound
from storage.filesystem import FileSystemStore
from storage.objectstore import ObjectStore, validate_object_name
from storage.s3 import S3Store
from tests.storage.conftest import Backend
from tests.support.seaweed import SeaweedS3


class SourceFailed(Exception):
    pass


def failing_source(good: bytes) -> Iterator[bytes]:
    for i in range(0, len(good), 1 << 20):
        yield good[i:i + (1 << 20)]
    raise SourceFailed("client went away")


PROTOCOL_METHODS = ("put", "get", "delete", "exists", "size", "list", "check")


@pytest.mark.parametrize("store_class", [FileSystemStore, S3Store])
def test_backends_implement_the_protocol(store_class: type) -> None:
    """Every method of ObjectStore, with its parameters (names, kinds, defaults): isinstance on
    a runtime_checkable Protocol checks only that the attribute names exist."""
    for name in PROTOCOL_METHODS:
        wanted = inspect.signature(getattr(ObjectStore, name)).parameters
        got = inspect.signature(getattr(store_class, name)).parameters
        assert [(p.name, p.kind, p.default) for p in got.values()] == \
            [(p.name, p.kind, p.default) for p in wanted.values()], (store_class, name)
    members = {n for n in vars(ObjectStore) if not n.startswith("_")}
    assert members == set(PROTOCOL_METHODS), "a new protocol method needs a check here"


def test_put_get_round_trip_and_ranges(backend: Backend) -> None:
    store = backend.store
    data = os.urandom(3000)
    assert store.put("items/ab/obj", [data[:1000], b"", data[1000:]]) == 3000
    assert b"".join(store.get("items/ab/obj")) == data
    assert b"".join(store.get("items/ab/obj", 100, 50)) == data[100:150]
    assert b"".join(store.get("items/ab/obj", 2990)) == data[2990:]
    assert b"".join(store.get("items/ab/obj", 2990, 100)) == data[2990:]
    assert b"".join(store.get("items/ab/obj", 10, 0)) == b""
    assert b"".join(store.get("items/ab/obj", 3000)) == b""
    assert b"".join(store.get("items/ab/obj", 5000, 10)) == b""
    assert store.size("items/ab/obj") == 3000
    assert store.exists("items/ab/obj")


def test_put_replaces_atomically(backend: Backend) -> None:
    backend.store.put("x/one", [b"first"])
    backend.store.put("x/one", [b"second version"])
    assert b"".join(backend.store.get("x/one")) == b"second version"


def test_empty_object(backend: Backend) -> None:
    assert backend.store.put("empty", []) == 0
    assert b"".join(backend.store.get("empty")) == b""
    assert backend.store.size("empty") == 0


def test_missing_objects(backend: Backend) -> None:
    store = backend.store
    with pytest.raises(ObjectNotFound) as info:
        store.get("items/00/missing")
    assert type(info.value) is ObjectNotFound
    with pytest.raises(ObjectNotFound):
        store.size("items/00/missing")
    assert not store.exists("items/00/missing")
    store.delete("items/00/missing")  # idempotent


def test_delete(backend: Backend) -> None:
    backend.store.put("a/b", [b"x"])
    backend.store.delete("a/b")
    assert not backend.store.exists("a/b")
    assert list(backend.store.list()) == []


def test_list_by_prefix(backend: Backend) -> None:
    names = ["items/aa/1", "items/aa/1.keys", "items/ab/2", "other/3"]
    for name in names:
        backend.store.put(name, [b"."])
    assert sorted(backend.store.list()) == sorted(names)
    assert sorted(backend.store.list("items/")) == names[:3]
    assert sorted(backend.store.list("items/aa/")) == names[:2]
    assert sorted(backend.store.list("items/a")) == names[:3]
    assert list(backend.store.list("nothing/")) == []


def test_failed_put_leaves_nothing(backend: Backend) -> None:
    """A source failing after more than one S3 part (5 MiB) aborts the multipart upload."""
    with pytest.raises(SourceFailed):
        backend.store.put("items/cc/partial", failing_source(os.urandom(12 << 20)))
    assert not backend.store.exists("items/cc/partial")
    assert list(backend.store.list()) == []


def test_check_passes(backend: Backend) -> None:
    backend.store.check()


@pytest.mark.parametrize("name", [
    "", "/abs", "../up", "a/../b", "a//b", ".hidden", "a/.tmp-x", "UPPER", "a b", "a/", "é",
    "a\x00b", "x" * 600,
])
def test_names_are_validated(backend: Backend, name: str) -> None:
    with pytest.raises(ValueError):
        backend.store.put(name, [b"x"])
    with pytest.raises(ValueError):
        backend.store.get(name)
    with pytest.raises(ValueError):
        backend.store.delete(name)


def test_valid_names() -> None:
    for name in ["a", "items/0f/" + "a" * 32, "items/0f/abc.keys", "x-y_z.1"]:
        assert validate_object_name(name) == name


def test_negative_ranges_are_refused(backend: Backend) -> None:
    backend.store.put("r", [b"abc"])
    with pytest.raises(ValueError):
        backend.store.get("r", -1)
    with pytest.raises(ValueError):
        backend.store.get("r", 0, -5)


def test_filesystem_put_leaves_no_temporaries(tmp_path: Path) -> None:
    store = FileSystemStore(tmp_path)
    with pytest.raises(SourceFailed):
        store.put("items/dd/x", failing_source(b"y" * 100))
    assert [p.name for p in (tmp_path / "items" / "dd").iterdir()] == []


def test_filesystem_root_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    with pytest.raises(BackendUnavailable):
        FileSystemStore(blocker / "root")
    store = FileSystemStore(tmp_path / "root")
    (tmp_path / "root").rmdir()
    blocker2 = tmp_path / "root"
    blocker2.write_bytes(b"")
    with pytest.raises(BackendUnavailable):
        store.check()
    with pytest.raises(BackendUnavailable):
        store.put("a/b", [b"x"])


@pytest.mark.s3
def test_s3_unreachable_is_backend_unavailable() -> None:
    store = S3Store("127.0.0.1:9", "k", "s" * 16, "evx-nowhere")
    with pytest.raises(BackendUnavailable):
        store.check()
    with pytest.raises(BackendUnavailable):
        store.put("a", [b"x"])
    with pytest.raises(BackendUnavailable):
        store.get("a")


@pytest.mark.s3
def test_s3_bad_credentials_is_backend_unavailable(seaweed: SeaweedS3, s3_bucket: str) -> None:
    store = S3Store(seaweed.endpoint, seaweed.access_key, "wrong-secret-0123456789", s3_bucket)
    with pytest.raises(BackendUnavailable):
        store.check()


@pytest.mark.s3
def test_s3_aborts_multipart_upload(s3_backend: Backend) -> None:
    with pytest.raises(SourceFailed):
        s3_backend.store.put("items/ee/big", failing_source(os.urandom(12 << 20)))
    client = s3_backend.tamper.client
    assert client is not None
    uploads = client._list_multipart_uploads(s3_backend.tamper.bucket)
    assert [u.object_name for u in uploads.uploads] == []


def test_s3_part_size_floor() -> None:
    with pytest.raises(ValueError):
        S3Store("127.0.0.1:9", "k", "s", "b", part_size=1 << 20)


def test_get_yields_pieces_of_the_requested_size(backend: Backend) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    backend.store.put("items/ab/pieces", [data])
    pieces = list(backend.store.get("items/ab/pieces", 33, piece_size=1000))
    assert [len(p) for p in pieces] == [1000] * 10 + [207]
    assert b"".join(pieces) == data[33:]
    with pytest.raises(ValueError):
        backend.store.get("items/ab/pieces", piece_size=0)
