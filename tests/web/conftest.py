"""Fixtures of the browser tests: one hub with three authorities and their providers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import backend_unavailable
from tests.web.harness import Hub, browser_available, start_hub, stop_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    hub = start_hub(tmp_path_factory.mktemp("web"))
    try:
        yield hub
    finally:
        stop_hub(hub)


@pytest.fixture(scope="module")
def browsers() -> Iterator[list[object]]:
    """Open browsers, each quit at the end of the module (one per officer, as in life)."""
    problem = browser_available()
    if problem is not None:
        backend_unavailable(f"chromium for the browser tests ({problem}; apt-get install "
                            "chromium chromium-driver)")
    opened: list[object] = []
    try:
        yield opened
    finally:
        for browser in opened:
            browser.quit()  # type: ignore[attr-defined]
