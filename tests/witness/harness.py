"""Real `evx witness serve` processes on loopback, and in-memory Merkle trees to feed them."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from custody.cosignature import Cosigner, CosignerKey
from custody.merkle import NodeKey, consistency_proof, inclusion_proof, leaf_hash, node_hash
from custody.note import VerifierKey
from evx.witness.server import load_or_create_witness_key
from tests.client.harness import EVX, _base_env, free_port, stop_group

STARTUP_TIMEOUT_S = 30.0


@dataclass
class WitnessProcess:
    """`evx witness serve` in a child process (own key file and SQLite db), stopped by pid."""

    root: Path
    name: str
    logs: list[VerifierKey]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.key_file = self.root / "witness.key"
        self.db = self.root / "witness.db"
        self.cosigner = Cosigner(self.name, load_or_create_witness_key(self.key_file,
                                                                        create=True))

    @property
    def key(self) -> CosignerKey:
        return self.cosigner.key

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [*EVX, "witness", "serve", "--name", self.name, "--key-file", str(self.key_file),
                "--db", str(self.db), "--listen", f"127.0.0.1:{self.port}"]
        for key in self.logs:
            args += ["--log", str(key)]
        log = open(self.root / "witness.log", "ab")  # noqa: SIM115 - the child's
        env = {**_base_env(), "HOME": str(self.root)}
        self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                httpx.get(self.url + "/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        text = (self.root / "witness.log").read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"evx witness serve did not start:\n{text}")

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_group(process, timeout=10)

    def post(self, body: bytes) -> httpx.Response:
        return httpx.post(self.url + "/add-checkpoint", content=body, timeout=10)


class Tree:
    """An RFC 9162 tree over byte-string leaves, every perfect node kept."""

    def __init__(self, leaves: list[bytes], *, hashed: bool = False) -> None:
        """``leaves`` are the leaves' data, or with ``hashed`` their RFC 9162 leaf hashes."""
        self.nodes: dict[NodeKey, bytes] = {}
        level = list(leaves) if hashed else [leaf_hash(x) for x in leaves]
        height = 0
        while level:
            for i, h in enumerate(level):
                self.nodes[(height, i)] = h
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            height += 1
        self.size = len(leaves)

    def root(self, size: int | None = None) -> bytes:
        from custody.merkle import EMPTY_ROOT, range_hash

        size = self.size if size is None else size
        return EMPTY_ROOT if size == 0 else range_hash(0, size, self.nodes)

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        return consistency_proof(size1, size2, lambda keys: self.nodes)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return inclusion_proof(index, size, lambda keys: self.nodes)
