"""Tables of the custody ledger, on the shared :data:`service.db.metadata`.

Append-only rows (the database refuses UPDATE/DELETE/TRUNCATE through triggers created by
migration ``0001_ledger``): ``ledger_entries``, ``ledger_nodes``, ``ledger_checkpoints``.
Mutable state, always changed in the same transaction as the entries it summarizes:
``ledger_head`` (one row: the sequencer) and ``ledger_package_heads``.
"""

from __future__ import annotations

import sqlalchemy as sa

from service.db import metadata

#: Primary key value of the single sequencer row.
HEAD_ROW_ID = 1

HASH_BYTES = 32

entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("idx", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=False,
              comment="Position in the log = Merkle leaf index."),
    sa.Column("leaf_hash", sa.LargeBinary(HASH_BYTES), nullable=False,
              comment="SHA-256(0x00 || canonical)."),
    sa.Column("canonical", sa.Text, nullable=False,
              comment="RFC 8785 canonical JSON of the entry, exactly the bytes hashed (UTF-8)."),
    # Query columns copied from the canonical entry; the canonical text is authoritative.
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("package", sa.String(200), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("authority", sa.String(200), nullable=False),
    sa.Index(None, "package", "idx"),
    sa.Index(None, "authority", "idx"),
    sa.Index(None, "action"),
    sa.Index(None, "time"),
)

nodes = sa.Table(
    "ledger_nodes",
    metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("node_index", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(HASH_BYTES), nullable=False,
              comment="Hash of the perfect subtree over leaves [i*2^L, (i+1)*2^L)."),
)

head = sa.Table(
    "ledger_head",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False, comment="Number of entries = next index."),
    sa.Column("last_leaf_hash", sa.LargeBinary(HASH_BYTES), nullable=True,
              comment="Leaf hash of entry size-1 (the next entry's prev)."),
    sa.CheckConstraint(f"id = {HEAD_ROW_ID}", name="single_row"),
    sa.CheckConstraint("size >= 0", name="size_nonnegative"),
)

package_heads = sa.Table(
    "ledger_package_heads",
    metadata,
    sa.Column("package", sa.String(200), primary_key=True),
    sa.Column("last_index", sa.BigInteger, nullable=False),
    sa.Column("last_leaf_hash", sa.LargeBinary(HASH_BYTES), nullable=False,
              comment="The next entry of this package's package_prev."),
    sa.Column("count", sa.BigInteger, nullable=False),
)

checkpoints = sa.Table(
    "ledger_checkpoints",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("tree_size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.LargeBinary(HASH_BYTES), nullable=False),
    sa.Column("note", sa.Text, nullable=False, comment="The C2SP signed note, verbatim."),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index(None, "tree_size"),
)

#: Tables whose rows may only ever be inserted.
APPEND_ONLY_TABLES: tuple[str, ...] = ("ledger_entries", "ledger_nodes", "ledger_checkpoints")

cosignatures = sa.Table(
    "witness_cosignatures",
    metadata,
    sa.Column("witness", sa.String(200), primary_key=True,
              comment="The witness's name (its cosignature lines' key name)."),
    sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary(HASH_BYTES), nullable=False),
    sa.Column("line", sa.Text, nullable=False, comment="The cosignature line, verbatim."),
    sa.Column("cosigned_at", sa.BigInteger, nullable=False,
              comment="The cosignature's timestamp (POSIX seconds)."),
    sa.Index("ix_witness_cosignatures_tree_size", "tree_size"),
)
