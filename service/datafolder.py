"""The service's data folder (``EVX_DATA_DIR``): initialised on purpose, private to its owner.

Only :func:`initialise` (``evx init``, ``evx serve --init``) creates a data folder; every other
server-side command refuses a missing one, so a command run in the wrong directory never leaves
an empty ``./data`` behind (usability review A8). What lives there -- the SQLite database, the
object folder, the key-encryption keys, the log signing key, development authorities' signing
keys -- is readable by the service's user only: folders 0700, files 0600, whatever the umask
of whoever ran the first command (server-side commands run under :data:`PRIVATE_UMASK`).

Nothing here prints: :func:`initialise` returns an :class:`InitReport` the command renders.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from service.settings import Settings

PRIVATE_DIR_MODE = 0o700  # keys and evidence: the service's user only
PRIVATE_FILE_MODE = 0o600
#: The umask server-side commands run under, so whatever they create is 0700/0600 at most.
PRIVATE_UMASK = 0o077


@dataclass(frozen=True)
class Step:
    """One part of a data folder, and what :func:`initialise` did to it."""

    part: str     # "data folder", "database", "objects", "key-encryption keys", "log signing key"
    where: str    # a path, or a URL with its password hidden
    outcome: str  # "created", "exists", "migrated to 0012", "up to date", ...
    changed: bool
    #: a secret generated just now: without a copy, evidence or signatures are lost with the disk
    back_up: bool = False


@dataclass
class InitReport:
    """What :func:`initialise` found and did, part by part."""

    data_dir: Path
    steps: list[Step] = field(default_factory=list)
    active_kek: str = ""
    kek_ids: tuple[str, ...] = ()
    log_verifier_key: str = ""

    @property
    def changed(self) -> bool:
        return any(step.changed for step in self.steps)

    @property
    def generated(self) -> list[Step]:
        """The keys generated just now (to be backed up)."""
        return [step for step in self.steps if step.back_up]


def data_dir_of(settings: Settings) -> Path:
    """The data folder ``settings`` name, as an absolute path (what messages show)."""
    return Path(os.path.abspath(settings.data_dir))


def data_dir_exists(settings: Settings) -> bool:
    return data_dir_of(settings).is_dir()


def database_location(settings: Settings) -> str:
    """The database URL with any password hidden (for messages and the serve banner)."""
    import sqlalchemy as sa

    return sa.make_url(settings.resolved_database_url).render_as_string(hide_password=True)


def object_store_location(settings: Settings) -> str:
    if settings.object_store == "s3":
        return f"s3 bucket {settings.s3_bucket} at {settings.s3_endpoint}"
    return f"folder {os.path.abspath(settings.objects_dir)}"


def keys_present(settings: Settings) -> tuple[bool, bool]:
    """Whether a key-encryption key and the log signing key exist (before a start may make
    them)."""
    kek_dir = settings.resolved_kek_dir
    kek = kek_dir.is_dir() and any(p.suffix == ".key" for p in kek_dir.iterdir())
    return kek, settings.resolved_log_key_file.exists()


def _data_folder(path: Path) -> Step:
    if not path.exists():
        path.mkdir(parents=True, mode=PRIVATE_DIR_MODE)
        path.chmod(PRIVATE_DIR_MODE)  # whatever the umask
        return Step("data folder", str(path), "created (0700)", True)
    if not path.is_dir():
        raise NotADirectoryError(20, "EVX_DATA_DIR is not a folder", str(path))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 and path.stat().st_uid == os.getuid():
        path.chmod(PRIVATE_DIR_MODE)
        return Step("data folder", str(path), f"exists; tightened from {mode:04o} to 0700", True)
    return Step("data folder", str(path), f"exists ({mode:04o})", False)


def initialise(settings: Settings) -> InitReport:
    """Make ``settings``' data folder ready to serve: the folder (0700), the key-encryption
    key and the log signing key (generated when missing), the object store (a folder, or the
    S3 bucket checked) and the database migrated to the newest schema. Idempotent: what exists
    is kept, and the report says so.

    Raises:
        OSError: the folder cannot be created (a file is in the way, permission).
        storage.errors.KeySourceError, service.ledger.errors.LogKeyError: unreadable keys.
        storage.errors.BackendUnavailable: the S3 bucket cannot be reached.
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    from custody.note import Signer
    from service.db import make_engine, schema_revision, upgrade
    from service.ledger.keys import load_or_create_log_key
    from service.runtime import build_store
    from storage.keyring import DirectoryKeySource, Keyring

    path = data_dir_of(settings)
    old_umask = os.umask(PRIVATE_UMASK)
    try:
        report = InitReport(path, [_data_folder(path)])
        had_kek, had_log_key = keys_present(settings)

        keyring = Keyring(DirectoryKeySource(settings.resolved_kek_dir, create=True))
        report.active_kek, report.kek_ids = keyring.active_key_id, tuple(keyring.key_ids)
        report.steps.append(Step(
            "key-encryption keys", os.path.abspath(settings.resolved_kek_dir),
            f"generated {report.active_kek}" if not had_kek
            else f"exist ({len(report.kek_ids)}; active {report.active_kek})",
            not had_kek, back_up=not had_kek))

        log_key = load_or_create_log_key(settings.resolved_log_key_file)
        report.log_verifier_key = str(Signer(settings.log_origin, log_key).verifier_key)
        report.steps.append(Step(
            "log signing key", os.path.abspath(settings.resolved_log_key_file),
            "generated" if not had_log_key else "exists", not had_log_key,
            back_up=not had_log_key))

        if settings.object_store == "filesystem":
            existed = settings.objects_dir.is_dir()
            build_store(settings)
            report.steps.append(Step("objects", object_store_location(settings),
                                     "exists" if existed else "created", not existed))
        else:
            build_store(settings).check()
            report.steps.append(Step("objects", object_store_location(settings),
                                     "bucket ready", False))

        engine = make_engine(settings.resolved_database_url)
        try:
            before, head = schema_revision(engine)
            if before != head:
                upgrade(settings.resolved_database_url)
        finally:
            engine.dispose()
        outcome = (f"up to date ({head})" if before == head else
                   f"migrated to {head} (was empty)" if before is None else
                   f"migrated {before} -> {head}")
        report.steps.append(Step("database", database_location(settings), outcome,
                                 before != head))
        return report
    finally:
        os.umask(old_umask)
