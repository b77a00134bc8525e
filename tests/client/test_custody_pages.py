"""A package's custody record over several pages, from a real server: each page is verified on
its own signed checkpoint and its chain continues from the last entry of the page before; a page
that drops or reorders an entry across the boundary does not verify."""

from __future__ import annotations

import copy
from pathlib import Path

import httpx
import pytest

from custody.note import VerifierKey
from evx.client.errors import IntegrityFailure
from evx.client.http import Api
from evx.client.receive import custody_pages
from evx.client.trust import verify_custody_pages
from tests.client.conftest import World

pytestmark = pytest.mark.slow  # real `evx serve` process


def test_pages_verify_as_one_chain(embedded: World, tmp_path: Path) -> None:
    de = embedded.investigator
    package = de.json("package", "create", "--case-ref", "PAGES", "--title", "pages")["id"]
    for i in range(3):
        evidence = tmp_path / f"note-{i}.txt"
        evidence.write_text(f"note {i}\n")
        de.run("upload", package, str(evidence))
    key = VerifierKey.parse(httpx.get(embedded.server.url + "/v1/ledger/key").text.strip())
    api = Api(embedded.server.url, de.token)

    pages = custody_pages(api, package, page_size=2)
    assert len(pages) >= 2 and [p["complete"] for p in pages][-1] is True
    entries = verify_custody_pages(pages, key, package)
    actions = [e.action.value for e in entries]
    assert actions[0] == "package.created" and actions.count("item.uploaded") == 3
    assert sum(len(p["entries"]) for p in pages) == len(entries)
    assert [e.index for e in entries] == sorted(e.index for e in entries)

    # The second page without its first entry: the chain does not continue.
    dropped = copy.deepcopy(pages)
    dropped[1]["entries"] = dropped[1]["entries"][1:]
    with pytest.raises(IntegrityFailure, match="does NOT verify"):
        verify_custody_pages(dropped, key, package)
    # The pages in the wrong order: neither continues the other.
    with pytest.raises(IntegrityFailure, match="does NOT verify"):
        verify_custody_pages([pages[1], pages[0], *pages[2:]], key, package)
