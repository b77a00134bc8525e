"""The client's resumable upload (evx/client/uploads.py) against the real app: a large file is
read once and hashed while sent; an upload left half-done by an earlier run is found again and
continued from the service's durable offset; a file that changed since is refused."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from evx.client.errors import IntegrityFailure, UsageError
from evx.client.http import Api
from evx.client.progress import NO_PROGRESS
from evx.client.sources import Source, collect_sources
from evx.client.uploads import RESUMABLE_FROM_BYTES, ResumableUpload, upload_file
from service.settings import Settings
from tests.api.conftest import OPERATOR, OWNER, World, _world

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes

CHUNK = 64 * 1024


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from _world(Settings(data_dir=tmp_path / "data", operator_authority=OPERATOR,
                               chunk_size=CHUNK, max_item_bytes=256 * 1024 * 1024,
                               upload_segment_mib=1))


def _api(world: World) -> Api:
    api = Api("http://testserver", world.token(OWNER))
    api._client = world.client  # the app in-process (TestClient is an httpx.Client)
    return api


def _file(tmp_path: Path, size: int) -> Source:
    path = tmp_path / "image.E01"
    path.write_bytes(os.urandom(size))
    (source,) = collect_sources([path])
    assert (source.name, source.size) == ("image.E01", size)
    return source


def _item(world: World, package: str) -> dict:
    r = world.client.get(f"/v1/packages/{package}", headers=world.headers(OWNER))
    return r.json()["items"][0]


def test_large_file_goes_through_the_resumable_protocol(world: World, tmp_path: Path) -> None:
    import hashlib

    source = _file(tmp_path, RESUMABLE_FROM_BYTES + 3 * CHUNK + 5)
    package = world.create_package()
    start = world.ledger_size()
    status, size, sha256 = upload_file(_api(world), package, source, None, NO_PROGRESS)
    assert (status, size) == ("uploaded", source.size)
    assert sha256 == hashlib.sha256(source.path.read_bytes()).hexdigest()
    assert (_item(world, package)["sha256"], _item(world, package)["size"]) == (sha256, size)
    actions = [(e["action"], e["outcome"]) for e in world.entries(start)]
    assert actions.count(("item.uploaded", "allowed")) == 1
    # a re-run skips it (same digest), a different file under the name is refused
    assert upload_file(_api(world), package, source, _item(world, package), NO_PROGRESS)[0] \
        == "skipped"
    source.path.write_bytes(b"x" + source.path.read_bytes()[1:])
    with pytest.raises(UsageError):
        upload_file(_api(world), package, source, _item(world, package), NO_PROGRESS)


def test_an_interrupted_upload_is_continued_by_the_next_run(world: World,
                                                            tmp_path: Path) -> None:
    data_size = 40 * CHUNK + 1234
    source = _file(tmp_path, data_size)
    data = source.path.read_bytes()
    package = world.create_package()
    # an earlier run got 1.5 segments' worth through before it died
    r = world.client.put(f"/v1/packages/{package}/items/image.E01", content=data[:1_600_000],
                         headers={**world.headers(OWNER), "Upload-Complete": "?0",
                                  "Upload-Length": str(data_size)})
    assert r.status_code == 201
    durable = int(r.headers["upload-offset"])
    assert 0 < durable < 1_600_000
    upload = ResumableUpload(_api(world), package, source, data_size, NO_PROGRESS,
                             sleep=lambda s: None)
    size, sha256 = upload.run()
    assert upload.location == r.headers["location"]  # found again, not started anew
    assert _item(world, package)["sha256"] == sha256 and size == data_size
    got = world.client.get(f"/v1/packages/{package}/items/image.E01/content",
                           headers=world.headers(OWNER))
    assert got.content == data


def test_a_file_changed_since_the_interrupted_run_is_refused(world: World,
                                                             tmp_path: Path) -> None:
    source = _file(tmp_path, 20 * CHUNK)
    data = source.path.read_bytes()
    package = world.create_package()
    world.client.put(f"/v1/packages/{package}/items/image.E01", content=data[:10 * CHUNK],
                     headers={**world.headers(OWNER), "Upload-Complete": "?0",
                              "Upload-Length": str(len(data))})
    # the stored prefix no longer matches the file: the digests differ at completion
    source.path.write_bytes(b"y" * len(data))
    (source,) = collect_sources([source.path])  # the next run lists the changed file
    with pytest.raises(IntegrityFailure):
        ResumableUpload(_api(world), package, source, len(data), NO_PROGRESS,
                        sleep=lambda s: None).run()
    r = world.client.get(f"/v1/packages/{package}", headers=world.headers(OWNER))
    assert r.json()["items"] == []
