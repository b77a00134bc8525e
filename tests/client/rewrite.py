"""A hostile administrator rewriting history in the server's SQLite database, thoroughly:
triggers dropped, one entry changed, every later entry re-chained and re-hashed, the Merkle
nodes, heads and checkpoints rebuilt -- a ledger that verifies on its own, signed afresh by
the service's real key when it restarts. Only a checkpoint saved earlier can tell."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from custody.entry import Entry
from custody.merkle import node_hash


def rewrite_entry(db_path: Path, index: int, edit: Callable[[dict[str, Any]], None]) -> None:
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'"
                                        ).fetchall():
                conn.execute(f'DROP TRIGGER "{name}"')
            rows = conn.execute("SELECT idx, canonical FROM ledger_entries ORDER BY idx"
                                ).fetchall()
            leaves: list[bytes] = []
            package_heads: dict[str, bytes] = {}
            for idx, canonical in rows:
                data = json.loads(canonical)
                if idx == index:
                    edit(data)
                if idx >= index:
                    data["prev"] = leaves[-1].hex() if leaves else None
                    package = data["package"]
                    data["package_prev"] = (package_heads[package].hex()
                                            if package in package_heads else None)
                    entry = Entry.from_dict(data)
                    conn.execute("UPDATE ledger_entries SET canonical = ?, leaf_hash = ? "
                                 "WHERE idx = ?",
                                 (entry.canonical_bytes().decode(), entry.leaf_hash(), idx))
                    leaf = entry.leaf_hash()
                else:
                    leaf = Entry.from_dict(data).leaf_hash()
                leaves.append(leaf)
                if data["package"] is not None:
                    package_heads[data["package"]] = leaf
            # Every perfect node (level L, index i) over leaves [i*2^L, (i+1)*2^L).
            conn.execute("DELETE FROM ledger_nodes")
            level, nodes = 0, leaves
            while nodes:
                conn.executemany("INSERT INTO ledger_nodes (level, node_index, hash) "
                                 "VALUES (?, ?, ?)", [(level, i, h) for i, h in enumerate(nodes)])
                nodes = [node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
                level += 1
            conn.execute("UPDATE ledger_head SET last_leaf_hash = ?", (leaves[-1],))
            for package, leaf in package_heads.items():
                conn.execute("UPDATE ledger_package_heads SET last_leaf_hash = ? "
                             "WHERE package = ?", (leaf, package))
            conn.execute("DELETE FROM ledger_checkpoints")
    finally:
        conn.close()
