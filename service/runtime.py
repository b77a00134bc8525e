"""Everything a running service holds: engine, ledger, vault, registry, metrics -- built once
from the settings, shared by every request, closed at shutdown."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine

from service.db import make_engine, schema_revision, upgrade
from service.events.dispatcher import Notifier, parse_schedule
from service.identity.authorities import AUTHORITY_ID_PATTERN
from service.identity.errors import UnknownAuthority, UnknownKey
from service.identity.providers import ProviderFollower, ProviderUnavailable
from service.identity.registrar import TrustRegistrar
from service.identity.registry import TrustRegistry
from service.identity.tokens import TrustedKey
from service.identity.verified import VerifiedTokens
from service.ledger.ledger import Ledger
from service.ledger.witnesses import CosignatureCollector
from service.limits import RequestLimits, TransferSlots
from service.metrics import Metrics
from service.packages.gate import Gate
from service.packages.service import PackageService
from service.packages.transfers import ItemTransfers
from service.packages.uploads import ResumableUploads
from service.recorder import CustodyRecorder
from service.requests.service import RequestService
from service.settings import MIB, Settings
from service.web.sessions import WebSessions
from storage.evidence import EvidenceVault
from storage.filesystem import FileSystemStore
from storage.keyring import DirectoryKeySource, Keyring
from storage.objectstore import ObjectStore
from storage.staged import StagedItems

log = structlog.get_logger("evx.identity")

KEY_CACHE_SECONDS = 5.0  # a retired key stops working within this long on every replica


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    ledger: Ledger
    vault: EvidenceVault
    store: ObjectStore
    keyring: Keyring
    metrics: Metrics
    recorder: CustodyRecorder
    gate: Gate
    packages: PackageService
    transfers: ItemTransfers
    registrar: TrustRegistrar
    providers: ProviderFollower
    uploads: ResumableUploads
    request_limits: RequestLimits
    transfer_slots: TransferSlots
    requests: RequestService
    notifier: Notifier
    web_sessions: WebSessions  # the web application's
    collector: CosignatureCollector | None = None  # when witnesses are configured
    _key_cache: dict[tuple[str, str], tuple[float, TrustedKey, int]] = field(
        default_factory=dict)
    verified_tokens: VerifiedTokens = field(
        default_factory=lambda: VerifiedTokens(recheck_seconds=KEY_CACHE_SECONDS))

    def lookup_key(self, issuer: str, kid: str) -> TrustedKey:
        """The issuer's active key ``kid`` from the trust registry (cached for a few seconds).

        For an identity provider's issuer, its JWKS is fetched again when its keys are older
        than ``provider_max_age_seconds`` or when ``kid`` is unknown (at most once per
        ``provider_refetch_seconds``), so the provider's key rotation is followed.
        """
        followed = not AUTHORITY_ID_PATTERN.fullmatch(issuer)
        if followed and self.providers.stale(issuer):
            self._follow(issuer, "keys older than provider_max_age_seconds")
        now = time.monotonic()
        generation = self.registrar.generation  # before reading: a change meanwhile voids it
        cached = self._key_cache.get((issuer, kid))
        if cached is not None and now - cached[0] < KEY_CACHE_SECONDS and \
                cached[2] == generation:
            return cached[1]
        try:
            key = self._registry_key(issuer, kid)
        except UnknownKey:
            if not followed or not self._follow(issuer, "unknown kid"):
                raise
            key = self._registry_key(issuer, kid)
        if len(self._key_cache) > 10_000:  # bound: unknown kids are never cached, known are few
            self._key_cache.clear()
        self._key_cache[(issuer, kid)] = (now, key, generation)
        return key

    def _registry_key(self, issuer: str, kid: str) -> TrustedKey:
        with self.engine.connect() as conn:
            return TrustRegistry(conn).lookup_key(issuer, kid)

    def _follow(self, issuer: str, reason: str) -> bool:
        """Refresh ``issuer``'s keys; True if they were fetched (an unknown issuer, a fetch
        too soon after the last, or a provider that cannot be reached: False, keys unchanged)."""
        try:
            return self.providers.refresh(issuer, reason=reason) is not None
        except UnknownAuthority:
            return False
        except ProviderUnavailable as exc:
            log.warning("provider_unavailable", issuer=issuer, error=str(exc))
            return False

    def authority_for_issuer(self, issuer: str) -> str:
        return _authority_for_issuer(self.engine, issuer)

    def known_authority(self, authority_id: str) -> bool:
        return _known_authority(self.engine, authority_id)

    def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            current, head = schema_revision(self.engine)
            checks["database"] = "ok" if current == head else \
                f"schema at {current}, code needs {head}: run `evx db upgrade`"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["database"] = f"unavailable: {type(exc).__name__}"
        try:
            self.store.check()
            checks["object_store"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["object_store"] = f"unavailable: {type(exc).__name__}"
        try:
            self.keyring.active_key()
            checks["keys"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["keys"] = f"unavailable: {type(exc).__name__}"
        try:
            checks["log_key"] = self._log_key_check()
        except Exception as exc:  # noqa: BLE001
            checks["log_key"] = f"unavailable: {type(exc).__name__}"
        return checks

    def _log_key_check(self) -> str:
        """The latest signed checkpoint must verify under the key this replica signs with: a
        replaced or mismatched log key must not go on serving (partners would see a new key)."""
        from custody.checkpoint import Checkpoint
        from custody.errors import VerificationError

        latest = self.ledger.latest_checkpoint()
        if latest is None:
            return "ok"
        try:
            Checkpoint.verify(latest.note, self.ledger.verifier_key)
        except VerificationError:
            return ("mismatch: the latest checkpoint is not signed by this log key "
                    "(EVX_LOG_KEY_FILE replaced?)")
        return "ok"

    def witness_status(self) -> dict[str, dict[str, Any]]:
        """Each configured witness's cosigned size and lag (empty without witnesses)."""
        return self.collector.status() if self.collector is not None else {}

    def served_checkpoint_note(self) -> str | None:
        """The newest checkpoint with the witnesses' cosignatures held for it, or None without
        witnesses or before any cosignature."""
        from service.ledger.witnesses import served_note

        return served_note(self.collector, self.ledger, self.settings.witness_quorum)

    def close(self) -> None:
        if self.collector is not None:
            self.collector.stop()
        if self.notifier is not None:
            self.notifier.stop()
        close = getattr(self.ledger, "close", None)
        if close is not None:
            close()
        self.engine.dispose()


def _authority_for_issuer(engine: Engine, issuer: str) -> str:
    with engine.connect() as conn:
        return TrustRegistry(conn).authority_for_issuer(issuer)


def _known_authority(engine: Engine, authority_id: str) -> bool:
    with engine.connect() as conn:
        try:
            TrustRegistry(conn).get_authority(authority_id)
        except UnknownAuthority:
            return False
    return True


def build_store(settings: Settings) -> ObjectStore:
    if settings.object_store == "s3":
        from storage.s3 import S3Store

        assert settings.s3_endpoint and settings.s3_access_key and settings.s3_secret_key
        return S3Store(settings.s3_endpoint, settings.s3_access_key.get_secret_value(),
                       settings.s3_secret_key.get_secret_value(), settings.s3_bucket,
                       secure=settings.s3_secure, region=settings.s3_region,
                       part_size=settings.s3_part_size_mib * 1024 * 1024,
                       parallel_uploads=settings.s3_parallel_parts)
    return FileSystemStore(settings.objects_dir)


def build_ledger(settings: Settings, engine: Engine) -> Ledger:
    from service.ledger.keys import load_or_create_log_key

    key = load_or_create_log_key(settings.resolved_log_key_file)
    return Ledger(engine, key, origin=settings.log_origin)


def build_runtime(settings: Settings) -> Runtime:
    """Open (and migrate) the database, keys and object store named by ``settings``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if settings.auto_migrate:
        upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url,
                         pool_size=settings.database_pool_size,
                         max_overflow=settings.database_pool_size)
    keyring = Keyring(DirectoryKeySource(settings.resolved_kek_dir, create=True))
    store = build_store(settings)
    vault = EvidenceVault(store, keyring, chunk_size=settings.chunk_size)
    ledger = build_ledger(settings, engine)
    metrics = Metrics.create()
    recorder = CustodyRecorder(ledger, metrics)
    gate = Gate(engine, recorder, operator_authority=settings.operator_authority)
    registrar = TrustRegistrar(engine, ledger, operator_authority=settings.operator_authority)
    packages = PackageService(gate, known_authority=partial(_known_authority, engine))
    runtime = Runtime(settings=settings, engine=engine, ledger=ledger, vault=vault, store=store,
                      keyring=keyring, metrics=metrics, recorder=recorder, gate=gate,
                      packages=packages,
                      transfers=ItemTransfers(gate, vault, max_item_bytes=settings.max_item_bytes),
                      registrar=registrar,
                      providers=ProviderFollower(
                          registrar, partial(_authority_for_issuer, engine),
                          min_interval=settings.provider_refetch_seconds,
                          max_age=max(settings.provider_max_age_seconds,
                                      settings.provider_refetch_seconds)),
                      uploads=ResumableUploads(
                          gate, StagedItems(vault, segment_bytes=settings.upload_segment_mib * MIB),
                          max_item_bytes=settings.max_item_bytes,
                          idle_expiry=timedelta(seconds=settings.sweep_grace_seconds)),
                      request_limits=RequestLimits(
                          officer_rate=settings.officer_requests_per_second,
                          officer_burst=settings.officer_request_burst,
                          authority_rate=settings.authority_requests_per_second,
                          authority_burst=settings.authority_request_burst),
                      transfer_slots=TransferSlots(
                          per_officer=settings.transfers_per_officer,
                          per_authority=settings.transfers_per_authority,
                          budget_bytes=settings.transfer_memory_budget_mib * MIB,
                          max_transfers=settings.transfers_per_replica),
                      requests=build_requests(settings, engine, gate, packages, ledger),
                      web_sessions=WebSessions(
                          engine, idle=timedelta(seconds=settings.web_idle_seconds),
                          absolute=timedelta(seconds=settings.web_session_seconds)),
                      notifier=Notifier(
                          engine, retry_schedule=parse_schedule(settings.webhook_retry_schedule),
                          timeout=settings.webhook_timeout_seconds,
                          poll_seconds=settings.webhook_poll_seconds,
                          warning=timedelta(hours=settings.deadline_warning_hours)))
    slots = runtime.transfer_slots
    metrics.transfers_running.set_function(lambda: slots.running)
    metrics.ledger_commits.set_function(lambda: ledger.append_stats[0])
    if settings.witness_endpoints:
        runtime.collector = CosignatureCollector(
            engine, ledger, settings.witness_endpoints, metrics=metrics,
            interval=settings.witness_interval_seconds, timeout=settings.witness_timeout_seconds,
            max_attempts=settings.witness_max_attempts)
    # A commit that put deliveries in the outbox: deliver them now, not at the next poll.
    # Other commits (the notifier's own included) do not wake it.
    from service.events.repository import OUTBOX_WRITTEN

    def _after_commit(conn: sa.engine.Connection) -> None:
        if conn.info.pop(OUTBOX_WRITTEN, False):
            runtime.notifier.wake()

    sa.event.listen(engine, "commit", _after_commit)
    sa.event.listen(engine, "rollback", lambda conn: conn.info.pop(OUTBOX_WRITTEN, None))
    return runtime


def build_requests(settings: Settings, engine: Engine, gate: Gate, packages: PackageService,
                   ledger: Ledger) -> RequestService:
    from zoneinfo import ZoneInfo

    from service.requests.deadlines import DEFAULT_RULES, rules_from_json
    from service.requests.errors import InvalidRequestData
    from service.requests.zones import authority_zone, parse_overrides

    rules = DEFAULT_RULES
    if settings.deadline_rules_file is not None:
        rules = rules_from_json(settings.deadline_rules_file.read_text(encoding="utf-8"))
    overrides = parse_overrides(settings.authority_timezones)

    def zone_of(authority_id: str) -> ZoneInfo:
        with engine.connect() as conn:
            try:
                authority = TrustRegistry(conn).get_authority(authority_id)
            except UnknownAuthority:
                raise InvalidRequestData(
                    f"authority {authority_id!r} is not in the trust registry") from None
        return authority_zone(authority.id, authority.country, overrides)

    return RequestService(gate, packages, rules=rules, zone_of=zone_of, ledger=ledger)
