"""`evx witness serve|key`: run a C2SP tlog-witness for the hub's ledger (partner authorities)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import typer

from evx.cli.app import PANEL_AUDIT, command, group
from evx.client.errors import ClientError, UnavailableError, UsageError

group("witness", "Witness a log: cosign its checkpoints after checking they extend what this "
                 "witness saw before (C2SP tlog-witness).", panel=PANEL_AUDIT)

NAME = typer.Option(..., "--name", envvar="EVX_WITNESS_NAME", show_envvar=True,
                    help="The witness's name: its cosignature lines' key name, e.g. "
                         "witness.bka.de/evx (no spaces, no '+').")
KEY_FILE = typer.Option(Path("witness.key"), "--key-file", envvar="EVX_WITNESS_KEY_FILE",
                        show_envvar=True, help="Ed25519 private key, PEM (mode 0600).")


def _fail(message: str, unavailable: bool = False) -> ClientError:
    return UnavailableError(message) if unavailable else UsageError(message)


def _read_logs(values: list[str], logs_file: Path | None) -> dict[str, list]:
    from custody.errors import FormatError
    from custody.note import VerifierKey

    texts = list(values)
    if logs_file is not None:
        try:
            lines = logs_file.read_text().splitlines()
        except OSError as exc:
            raise _fail(f"cannot read {logs_file}: {exc.strerror}") from None
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                # A tlog-policy "log <vkey> [url]" line or a bare vkey.
                fields = line.split()
                texts.append(fields[1] if fields[0] == "log" and len(fields) > 1 else fields[0])
    logs: dict[str, list] = {}
    for text in texts:
        try:
            key = VerifierKey.parse(text)
        except FormatError as exc:
            raise _fail(f"not a log verifier key: {text!r}: {exc.reason}") from None
        logs.setdefault(key.name, []).append(key)
    if not logs:
        raise _fail("no log to watch: give --log VKEY or --logs-file FILE")
    return logs


def _cosigner(name: str, key_file: Path, create: bool):
    from custody.cosignature import Cosigner
    from evx.witness.server import WitnessKeyError, load_or_create_witness_key

    try:
        return Cosigner(name, load_or_create_witness_key(key_file, create=create))
    except WitnessKeyError as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:
        raise _fail(f"invalid witness name {name!r}: {exc}") from None


@command("key", group="witness")
def key(name: str = NAME, key_file: Path = KEY_FILE,
        create: bool = typer.Option(False, "--create", help="Generate the key if missing.")
        ) -> None:
    """Print the witness's verifier key (vkey) -- what goes into the partners' policy files."""
    typer.echo(str(_cosigner(name, key_file, create).key))


@command("serve", group="witness")
def serve(
    name: str = NAME,
    key_file: Path = KEY_FILE,
    log: list[str] = typer.Option([], "--log", help="A log to watch: its verifier key "
                                  "(<origin>+<id>+<key>, as `GET /v1/ledger/key` gives). "
                                  "Repeat for several logs."),
    logs_file: Path | None = typer.Option(None, "--logs-file", envvar="EVX_WITNESS_LOGS_FILE",
                                          show_envvar=True,
                                          help="File of log keys, one per line (or tlog-policy "
                                               "'log <vkey>' lines)."),
    db: Path = typer.Option(Path("witness.db"), "--db", envvar="EVX_WITNESS_DB",
                            show_envvar=True, help="SQLite file of the witnessed state."),
    listen: str = typer.Option("127.0.0.1:7380", "--listen", envvar="EVX_WITNESS_LISTEN",
                               show_envvar=True, help="host:port to bind."),
    prefix: str = typer.Option("", "--prefix", help="URL prefix of the endpoints."),
    create_key: bool = typer.Option(False, "--create-key", help="Generate the key if missing."),
) -> None:
    """Serve POST <prefix>/add-checkpoint and GET <prefix>/<sha256(origin)>/checkpoint."""
    from evx.witness.server import Witness
    from evx.witness.server import serve as make_server
    from evx.witness.state import WitnessStore

    logs = _read_logs(log, logs_file)
    cosigner = _cosigner(name, key_file, create_key)
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit():
        raise _fail(f"--listen must be host:port, not {listen!r}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        store = WitnessStore(db)
        server = make_server(Witness(cosigner, logs, store), host, int(port_text), prefix)
    except OSError as exc:
        raise _fail(f"cannot start: {exc}", unavailable=True) from None
    signal.signal(signal.SIGTERM,
                  lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    typer.echo(f"witness {cosigner.key} listening on http://{host}:{server.server_port}"
               f"{prefix.rstrip('/')}/ for {', '.join(sorted(logs))}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
