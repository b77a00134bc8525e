"""The one typed settings object; nothing else in the code reads environment variables.

Every setting comes from an environment variable ``EVX_<NAME>``, or from a file named ``evx_<name>``
in the directory given by ``EVX_SECRETS_DIR`` (Kubernetes/compose secrets mounted as files);
the environment wins over the file.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Service configuration; embedded defaults: SQLite file + local folder + generated keys."""

    model_config = SettingsConfigDict(env_prefix="EVX_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Where the embedded defaults live.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite file in the data directory."
    )
    database_pool_size: int = Field(
        default=20, ge=1, le=500, description="Database connections a replica keeps open "
        "(and as many more while busy). Below the requests it runs at once, a connection is "
        "opened and closed per request (measured: a tenth of a metadata read's CPU on SQLite).")

    # Object store: "filesystem" (default, under data_dir/objects) or "s3".
    object_store: str = Field(default="filesystem", pattern="^(filesystem|s3)$")
    s3_endpoint: str | None = None
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_bucket: str = "evidence"
    s3_secure: bool = False
    s3_region: str | None = None
    s3_part_size_mib: int = Field(
        default=8, ge=5, le=512,
        description="Multipart part size; caps one item at 10,000 parts (8 MiB: ~78 GiB).")
    s3_parallel_parts: int = Field(
        default=2, ge=1, le=16,
        description="Parts in flight per upload, and spare part buffers shared by all uploads.")

    # Keys: directory of KEK files (default data_dir/keys); log signing key file.
    kek_dir: Path | None = None
    log_key_file: Path | None = None
    log_origin: str = Field(default="evidence-exchange.example/log",
                            description="Checkpoint origin line (C2SP tlog-checkpoint).")

    # Identity.
    audience: str = Field(default="evidence-exchange", description="JWT aud this service accepts.")
    operator_authority: str = Field(default="OPERATOR",
                                    description="Authority whose auditors see the whole ledger.")
    token_leeway_seconds: int = Field(default=30, ge=0, le=300)
    provider_refetch_seconds: int = Field(
        default=60, ge=1, le=3600,
        description="A token naming an unknown kid refetches its provider's JWKS at most this "
                    "often per provider (a bound on what callers can make us fetch).")
    provider_max_age_seconds: int = Field(
        default=3600, ge=1, le=86_400,
        description="Provider keys older than this are refetched on the next token, so a key "
                    "the provider withdrew stops verifying within this long.")

    # Limits.
    max_item_bytes: int = Field(default=64 * 1024 * MIB, ge=1)
    chunk_size: int = Field(default=1 * MIB, ge=4096, le=16 * MIB)
    max_json_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * MIB,
        description="Largest JSON request body; 413 from Content-Length or while reading.")

    upload_segment_mib: int = Field(
        default=16, ge=1, le=1024,
        description="Resumable uploads are stored durably every this many MiB: at most this "
                    "much is sent again after the server dies mid-upload.")
    officer_requests_per_second: float = Field(
        default=20.0, gt=0, description="Sustained authenticated requests per officer (each "
        "writes a ledger entry); beyond it 429 with Retry-After.")
    officer_request_burst: int = Field(default=200, ge=1,
                                       description="Requests an officer may make at once.")
    authority_requests_per_second: float = Field(
        default=100.0, gt=0, description="Sustained authenticated requests per authority.")
    authority_request_burst: int = Field(default=1000, ge=1,
                                         description="Requests an authority may make at once.")
    throttle_window_seconds: int = Field(
        default=60, ge=1, le=3600, description="Refused requests are recorded as one "
        "requests.throttled entry per officer per window, with the count.")

    transfers_per_officer: int = Field(
        default=8, ge=1, le=1000, description="Uploads and downloads one officer may run at "
        "once on a replica (beyond: 429).")
    transfers_per_authority: int = Field(
        default=32, ge=1, le=10_000, description="Uploads and downloads one authority may run "
        "at once on a replica (beyond: 429).")
    transfers_per_replica: int = Field(
        default=64, ge=1, le=4096, description="Uploads and downloads one replica runs at once, "
        "each on a transfer thread of its own pool (never the threads other requests use); "
        "beyond: wait EVX_TRANSFER_QUEUE_SECONDS, then 503 with Retry-After.")
    transfer_memory_budget_mib: int = Field(
        default=512, ge=16, le=1_048_576, description="Bytes all transfers of a replica may "
        "buffer; a transfer reserves its worst case first, beyond it waits, then 503.")
    transfer_queue_seconds: float = Field(
        default=5.0, ge=0, le=300, description="How long a transfer waits for the memory "
        "budget before 503 with Retry-After.")
    transfer_stall_seconds: int = Field(
        default=30, ge=1, le=3600, description="Window for the minimum transfer rate.")
    transfer_min_bytes_per_second: int = Field(
        default=1024, ge=1, description="A body (up or down) moving fewer bytes per second "
        "than this over the stall window is cut.")

    sweep_grace_seconds: int = Field(
        default=86_400, ge=60,
        description="An upload pending longer than this died; the sweeper removes its objects. "
                    "A resumable upload idle this long expires (swept, on the record).")

    auto_migrate: bool = Field(
        default=True, description="Migrate the database at start. Set false with several "
        "replicas: run `evx db upgrade` once (a migration Job) and /readyz reports a stale "
        "schema instead of racing migrations.")
    forwarded_allow_ips: str | None = Field(
        default=None, description="Proxies trusted for X-Forwarded-For/-Proto (uvicorn).")
    workers: int = Field(
        default=1, ge=1, le=64, description="Worker processes of `evx serve` sharing its port "
        "(each a replica of its own: limits and caches per process). More than one needs "
        "PostgreSQL: on SQLite package changes are serialised by a lock in one process.")
    replica_id: str | None = Field(default=None,
                                   description="Name of this replica in logs (default hostname).")
    shutdown_grace_seconds: int = Field(default=30, ge=0, le=3600,
                                        description="Time running transfers get on SIGTERM.")

    # Requests, deadlines and notifications.
    deadline_rules_file: Path | None = Field(
        default=None, description="JSON file replacing rows of the deadline rules table "
        "(docs/operations.md); default: the built-in table with its sources.")
    authority_timezones: str = Field(
        default="", description="AUTHORITY=Zone/Name,... overriding the zone deadlines are "
        "counted in (default: the executing authority's country's).")
    deadline_warning_hours: int = Field(
        default=48, ge=1, le=24 * 60,
        description="Events say a deadline is approaching this long before it.")
    webhook_dispatch: bool = Field(
        default=True, description="Deliver webhooks and raise deadline/expiry events from "
        "this replica (several replicas may: deliveries are leased).")
    webhook_poll_seconds: float = Field(default=2.0, gt=0, le=300,
                                        description="How often the outbox is read.")
    webhook_retry_schedule: str = Field(
        default="5,300,1800,7200,18000,36000,36000",
        pattern=r"^\d+(\.\d+)?(,\d+(\.\d+)?)*$",
        description="Seconds before each retry (Standard Webhooks' schedule); then failed.")
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=120,
                                           description="One delivery attempt's time limit.")
    # Witnesses (C2SP tlog-witness) that cosign the ledger's checkpoints.
    witnesses: str = Field(
        default="", description="Witnesses to gather cosignatures from: entries "
        "'<name> <vkey> <url>' separated by ';' or newlines (docs/witness.md).")
    witness_interval_seconds: float = Field(
        default=1.0, gt=0, le=3600,
        description="How often a new checkpoint is signed and submitted when the tree grew.")
    witness_timeout_seconds: float = Field(default=10.0, gt=0, le=300,
                                           description="Timeout of one request to a witness.")
    witness_max_attempts: int = Field(
        default=5, ge=1, le=100,
        description="Requests per checkpoint and witness before waiting for the next round "
        "(exponential backoff between them).")
    witness_quorum: int | None = Field(
        default=None, ge=1, description="Cosignatures a checkpoint needs to be served as the "
        "newest (default: a majority of the witnesses); with fewer, the newest cosigned one.")
    metrics_token: SecretStr | None = Field(
        default=None, description="If set, /metrics needs 'Authorization: Bearer <token>'.")
    api_docs: bool = Field(default=True, description="Serve /docs and /redoc (turn off in "
                           "production: they load a UI; /openapi.json stays).")

    # The web application (service/web/): server-side sessions behind an HttpOnly cookie.
    web_idle_seconds: int = Field(
        default=1800, ge=60, le=86_400,
        description="A web session unused this long ends (the officer signs in again).")
    web_session_seconds: int = Field(
        default=36_000, ge=300, le=7 * 86_400,
        description="A web session ends this long after sign-in, however busy (a shift).")
    web_provider_check_seconds: int = Field(
        default=300, ge=0, le=86_400,
        description="A web session in use is confirmed at the officer's provider (refresh "
                    "token grant) this often; refused there, it ends (0: on every request).")

    host: str = "127.0.0.1"
    port: int = 8000
    log_format: str = Field(default="console", pattern="^(json|console)$",
                            description="json for production (one object per line).")
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    @model_validator(mode="after")
    def _s3_complete(self) -> Settings:
        if self.object_store == "s3" and not (
            self.s3_endpoint and self.s3_access_key and self.s3_secret_key
        ):
            raise ValueError("EVX_OBJECT_STORE=s3 needs EVX_S3_ENDPOINT, EVX_S3_ACCESS_KEY and "
                             "EVX_S3_SECRET_KEY")
        return self

    @model_validator(mode="after")
    def _witnesses_valid(self) -> Settings:
        from service.ledger.witnesses import parse_witnesses

        parse_witnesses(self.witnesses)  # raises ValueError with the entry at fault
        return self

    @cached_property
    def witness_endpoints(self) -> list:  # list[WitnessEndpoint]
        from service.ledger.witnesses import parse_witnesses

        return parse_witnesses(self.witnesses)

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'evidence.db').resolve()}"

    @cached_property
    def resolved_kek_dir(self) -> Path:
        return self.kek_dir or self.data_dir / "keys" / "kek"

    @cached_property
    def resolved_log_key_file(self) -> Path:
        return self.log_key_file or self.data_dir / "keys" / "log-signing.key"

    @cached_property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"


def load_settings() -> Settings:
    """Settings from the environment, plus secrets mounted as files in ``EVX_SECRETS_DIR``."""
    import os

    secrets_dir = os.environ.get("EVX_SECRETS_DIR")
    if secrets_dir:
        return Settings(_secrets_dir=secrets_dir)  # type: ignore[call-arg]
    return Settings()
