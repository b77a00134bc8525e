"""Output people can read (issue 9, item 7), through real `evx` processes: list and show
commands print a table whose ids are never wrapped or cut (records when the terminal is too
narrow for that), `--wide` shows every column unfolded, `-o json` is `--json`, `-o tsv` is a
header and one line per row; sizes in IEC units everywhere."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from evx.cli.exits import EXIT_DENIED, EXIT_USAGE
from evx.cli.render import when
from tests.client.harness import CLI_TIMEOUT_S, EVX, EvxServer, User

pytestmark = pytest.mark.slow  # real `evx` processes against a real server

TITLE = "Seized handset of the suspect, full file-system extraction"
ODD = "a\tb\u202e.txt"  # a tab and a right-to-left override in one name


@dataclass
class Hub:
    server: EvxServer
    anna: User
    olga: User  # an auditor of DE-BKA
    package: str
    upload_out: str


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("evx-output")
    server = EvxServer(root)
    server.add_authority("DE-BKA", "DE", "investigator,auditor")
    server.add_authority("FR-OCRTEH", "FR", "investigator")
    anna = server.user("DE-BKA", "investigator", "anna")
    olga = server.user("DE-BKA", "auditor", "olga")
    server.start()
    try:
        package = anna.run("package", "create", "--case-ref", "BKA-2026-17", "--title", TITLE,
                           "-q").stdout.strip()
        folder = root / "ev"
        folder.mkdir()
        (folder / ODD).write_bytes(b"x" * 1024)
        (folder / "notes.txt").write_bytes(b"y" * 512)
        uploaded = anna.run("upload", package, str(folder))
        yield Hub(server, anna, olga, package, uploaded.stdout + uploaded.stderr)
    finally:
        server.stop()


def _run(env: dict[str, str], *args: str, columns: int = 250,
         expect: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*EVX, *args], env={**env, "COLUMNS": str(columns)},
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert proc.returncode == expect, (args, proc.stdout, proc.stderr)
    return proc


def test_tsv_is_a_header_and_one_line_per_row_with_every_column(hub: Hub) -> None:
    env = hub.anna.env()
    (p,) = json.loads(_run(env, "package", "list", "--json").stdout)["packages"]
    assert _run(env, "package", "list", "-o", "tsv").stdout == (
        "id\ttitle\tcase\towner\tsealed\titems\tsize\tshared with\tcreated (UTC)\tcreated by\t"
        "sealed (UTC)\tmanifest sha256\n"
        f"{hub.package}\t{TITLE}\tBKA-2026-17\tDE-BKA\tno\t2\t1.5 KiB\t\t"
        f"{when(p['created_at'])}\tanna\t\t\n")
    shown = json.loads(_run(env, "package", "show", hub.package, "--json").stdout)
    items = {i["name"]: i for i in shown["items"]}
    odd, notes = items[f"ev/{ODD}"], items["ev/notes.txt"]
    assert _run(env, "package", "show", hub.package, "-o", "tsv").stdout == (
        "item\tsize\tbytes\tsha256\tuploaded (UTC)\tby\n"
        f"ev/a\\x09b\\u202e.txt\t1.0 KiB\t1024\t{odd['sha256']}\t{when(odd['uploaded_at'])}\t"
        "anna\n"
        f"ev/notes.txt\t512 B\t512\t{notes['sha256']}\t{when(notes['uploaded_at'])}\tanna\n")
    assert _run(env, "authorities", "-o", "tsv").stdout == (
        "id\tname\tcountry\troles\n"
        "DE-BKA\tDE-BKA (test)\tDE\tauditor,investigator\n"
        "FR-OCRTEH\tFR-OCRTEH (test)\tFR\tinvestigator\n")
    assert _run(env, "request", "list", "-o", "tsv").stdout == (
        "id\treference\tfrom -> to\tinstrument\turgency\tstate\tnext deadline (UTC)\tcase\t"
        "filed (UTC)\tupdated (UTC)\n")


def test_o_json_is_json(hub: Hub) -> None:
    env = hub.anna.env()
    for args in (("package", "list"), ("package", "show", hub.package), ("authorities",)):
        assert json.loads(_run(env, *args, "-o", "json").stdout) == \
            json.loads(_run(env, *args, "--json").stdout)
    missing = _run(env, "package", "show", "pkg_00000000000000000000000000000000", "-o", "json",
                   expect=EXIT_DENIED)
    assert json.loads(missing.stdout)["exit_code"] == EXIT_DENIED


def test_an_unknown_format_is_a_usage_error(hub: Hub) -> None:
    env = hub.anna.env()
    refused = _run(env, "package", "list", "-o", "yaml", expect=EXIT_USAGE)
    assert refused.stderr == "error: -o yaml: give one of table, json, tsv\n"
    assert refused.stdout == ""
    as_json = _run(env, "package", "list", "-o", "yaml", "--json", expect=EXIT_USAGE)
    assert json.loads(as_json.stdout)["error"] == "usage"


def test_ids_are_whole_in_a_table_and_records_when_too_narrow(hub: Hub) -> None:
    env = hub.anna.env()
    wide_terminal = _run(env, "package", "list", columns=200).stdout.splitlines()
    row = next(line for line in wide_terminal if hub.package in line)
    assert TITLE in row and "1.5 KiB" in row and row.startswith("│")
    assert "manifest sha256" not in wide_terminal[1]  # a --wide column
    # 80 columns cannot hold the 36-character id and seven readable columns: one block per row
    narrow = _run(env, "package", "list", columns=80).stdout.splitlines()
    assert narrow == [f"id           {hub.package}", f"title        {TITLE}",
                      "case         BKA-2026-17", "owner        DE-BKA", "sealed       no",
                      "items        2", "size         1.5 KiB", "shared with"]
    items = _run(env, "package", "show", hub.package, columns=80).stdout
    for sha in (i["sha256"] for i in json.loads(
            _run(env, "package", "show", hub.package, "--json").stdout)["items"]):
        assert any(line.endswith(sha) for line in items.splitlines()), items


def test_wide_shows_every_column_unfolded(hub: Hub) -> None:
    lines = _run(hub.anna.env(), "package", "list", "--wide", columns=60).stdout.splitlines()
    header = lines[1]
    for column in ("id", "title", "size", "created (UTC)", "created by", "sealed (UTC)",
                   "manifest sha256"):
        assert f" {column} " in header
    row = next(line for line in lines if hub.package in line)
    assert TITLE in row and "anna" in row and len(row) > 150


def test_server_side_listings(hub: Hub) -> None:
    env = hub.server.env()
    authorities = json.loads(_run(env, "authority", "list", "--json").stdout)
    assert _run(env, "authority", "list", "-o", "tsv").stdout == (
        "id\tname\tcountry\troles\tactive keys\tretired keys\tidentity provider\tclient id\t"
        "created (UTC)\n" + "".join(
            f"{a['id']}\t{a['id']} (test)\t{a['country']}\t{','.join(a['roles'])}\t1\t0\t\t\t"
            f"{when(a['created_at'])}\n" for a in authorities))
    (key,) = json.loads(_run(env, "authority", "show", "DE-BKA", "--json").stdout)["keys"]
    assert _run(env, "authority", "show", "DE-BKA", "-o", "tsv").stdout == (
        "kid\talg\tstatus\tsource\tadded (UTC)\tretired (UTC)\tthumbprint (RFC 7638)\n"
        f"{key['kid']}\tES256\tactive\tgenerated\t{when(key['added_at'])}\t\t"
        f"{key['thumbprint']}\n")
    keks = json.loads(_run(env, "keys", "list", "--json").stdout)
    assert _run(env, "keys", "list", "-o", "tsv").stdout == (
        f"key\tactive\n{keks['active']}\tyes\n")
    assert _run(env, "webhook", "list", "-o", "tsv").stdout == (
        "id\tauthority\tstate\turl\tevents\tcreated (UTC)\tdisabled (UTC)\n")
    assert _run(env, "webhook", "list").stdout == "no webhook endpoints\n"
    assert json.loads(_run(env, "webhook", "list", "-o", "json").stdout) == {
        "ok": True, "endpoints": []}


def test_sizes_in_iec_units_in_summaries(hub: Hub) -> None:
    assert "2 uploaded, 0 skipped (1.5 KiB)" in hub.upload_out
    assert "MB" not in hub.upload_out and "kB" not in hub.upload_out


def test_custody_timeline_as_tsv(hub: Hub) -> None:
    env = hub.olga.env()
    entries = json.loads(_run(env, "custody", hub.package, "--json").stdout)["entries"]
    timeline = _run(env, "custody", hub.package, "-o", "tsv")
    lines = timeline.stdout.splitlines()
    assert lines[0] == ("#\ttime (UTC)\tauthority / subject / role\taction\toutcome\titem\t"
                        "legal reference")
    # the same entries first (reads since then are on the record too)
    assert [line.split("\t")[0] for line in lines[1:1 + len(entries)]] == [
        str(e["index"]) for e in entries]
    first = entries[0]
    assert lines[1] == (f"{first['index']}\t{first['time'][:19].replace('T', ' ')}\t"
                        "DE-BKA / anna / investigator\tpackage.created\tallowed\t\t")
    assert any("\titem.uploaded\tallowed\tev/a\\x09b\\u202e.txt\t" in line for line in lines)
    assert timeline.stderr == "VERIFIED\n"
