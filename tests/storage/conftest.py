"""Fixtures for the storage tests: both real backends, a keyring, a vault with tiny chunks, and a
``Tamperer`` that edits stored objects behind the store's back, as an attacker with write access
to the disk or the bucket would."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from minio import Minio

from storage.evidence import EvidenceVault
from storage.filesystem import FileSystemStore
from storage.keyring import DirectoryKeySource, Keyring
from storage.objectstore import ObjectStore
from storage.s3 import S3Store
from tests.support.seaweed import SeaweedS3

TEST_CHUNK_SIZE = 64  # tiny chunks: many chunk boundaries with little data


@dataclass
class Tamperer:
    """Raw read/write access to stored objects, bypassing the store's atomic put."""

    root: Path | None = None
    client: Minio | None = None
    bucket: str = ""

    def read(self, name: str) -> bytes:
        if self.root is not None:
            return (self.root / name).read_bytes()
        assert self.client is not None
        response = self.client.get_object(self.bucket, name)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def write(self, name: str, data: bytes) -> None:
        if self.root is not None:
            (self.root / name).write_bytes(data)
            return
        assert self.client is not None
        self.client.put_object(self.bucket, name, io.BytesIO(data), len(data))


@dataclass
class Backend:
    store: ObjectStore
    tamper: Tamperer


def _fs_backend(tmp_path: Path) -> Backend:
    root = tmp_path / "objects"
    return Backend(FileSystemStore(root), Tamperer(root=root))


def _s3_backend(seaweed: SeaweedS3, bucket: str) -> Backend:
    store = S3Store(seaweed.endpoint, seaweed.access_key, seaweed.secret_key, bucket)
    client = Minio(seaweed.endpoint, seaweed.access_key, seaweed.secret_key, secure=False)
    return Backend(store, Tamperer(client=client, bucket=bucket))


@pytest.fixture(params=["fs", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each test using this runs once on the filesystem and once on SeaweedFS S3."""
    if request.param == "fs":
        return _fs_backend(tmp_path)
    seaweed = request.getfixturevalue("seaweed")
    return _s3_backend(seaweed, request.getfixturevalue("s3_bucket"))


@pytest.fixture
def fs_backend(tmp_path: Path) -> Backend:
    return _fs_backend(tmp_path)


@pytest.fixture
def s3_backend(seaweed: SeaweedS3, s3_bucket: str) -> Backend:
    return _s3_backend(seaweed, s3_bucket)


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring(DirectoryKeySource(tmp_path / "keys", create=True))


@pytest.fixture
def vault(backend: Backend, keyring: Keyring) -> EvidenceVault:
    return EvidenceVault(backend.store, keyring, chunk_size=TEST_CHUNK_SIZE)


@pytest.fixture
def fs_vault(fs_backend: Backend, keyring: Keyring) -> EvidenceVault:
    return EvidenceVault(fs_backend.store, keyring, chunk_size=TEST_CHUNK_SIZE)


def pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """Split ``data`` into pieces of the given sizes (cycled), as an upload would arrive."""
    position, i = 0, 0
    while position < len(data):
        size = max(1, sizes[i % len(sizes)]) if sizes else len(data)
        yield data[position:position + size]
        position += size
        i += 1
