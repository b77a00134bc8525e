"""Least privilege in the database: the role the service connects as.

Migrations run as the owner of the schema (the role in ``evx db upgrade``'s URL); the service
connects as a login role that is a member of ``evx_service``, which this migration creates
(``NOLOGIN``) and grants only what the service needs:

* the ledger's append-only tables (entries, tree nodes, checkpoints): ``SELECT``
  and ``INSERT`` -- no ``UPDATE``, ``DELETE`` or ``TRUNCATE``; and since only a table's owner may
  ``ALTER`` it, the service cannot drop or disable the triggers that keep them append-only;
* the ledger's two pointers (``ledger_head``, ``ledger_package_heads``): what an append does;
* every other table: ``SELECT``, ``INSERT``, ``UPDATE``, ``DELETE`` (never ``TRUNCATE``), and
  the same on tables later migrations create (default privileges of the owner).

PostgreSQL only: SQLite has no roles (the embedded default is one process, one file).
"""

from __future__ import annotations

from alembic import op

revision = "0007_service_role"
down_revision = "0006_item_names"
branch_labels = None
depends_on = None

SERVICE_ROLE = "evx_service"
APPEND_ONLY = ("ledger_entries", "ledger_nodes", "ledger_checkpoints")
POINTERS = {"ledger_head": "SELECT, UPDATE", "ledger_package_heads": "SELECT, INSERT, UPDATE"}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # Roles belong to the cluster: create it once; another database may have done so already.
    op.execute(f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SERVICE_ROLE}') THEN
                CREATE ROLE {SERVICE_ROLE} NOLOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$""")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {SERVICE_ROLE}")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {SERVICE_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public "
               f"TO {SERVICE_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {SERVICE_ROLE}")
    for table in APPEND_ONLY:
        op.execute(f"REVOKE ALL ON {table} FROM {SERVICE_ROLE}")
        op.execute(f"GRANT SELECT, INSERT ON {table} TO {SERVICE_ROLE}")
    for table, rights in POINTERS.items():
        op.execute(f"REVOKE ALL ON {table} FROM {SERVICE_ROLE}")
        op.execute(f"GRANT {rights} ON {table} TO {SERVICE_ROLE}")
    op.execute(f"REVOKE ALL ON alembic_version FROM {SERVICE_ROLE}")
    op.execute(f"GRANT SELECT ON alembic_version TO {SERVICE_ROLE}")  # /readyz reads it
    # Tables of later migrations: usable by the service, never truncated or altered by it.
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE "
               f"ON TABLES TO {SERVICE_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES "
               f"TO {SERVICE_ROLE}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES "
               f"FROM {SERVICE_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES "
               f"FROM {SERVICE_ROLE}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {SERVICE_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {SERVICE_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {SERVICE_ROLE}")
