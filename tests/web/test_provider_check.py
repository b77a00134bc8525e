"""Web sessions under the provider's and the hub's control. A web session ends when the
officer's identity provider stops vouching for it: the hub confirms sessions in use at the
provider (here on every request, EVX_WEB_PROVIDER_CHECK_SECONDS=0), and a refresh token the
provider revoked -- an account disabled there -- ends the session at the next request, for the
pages and for the API alike. Pages share the API's rate limits."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.client.harness import OWNER
from tests.web.harness import Hub, start_hub, stop_hub
from tests.web.test_security import SESSION, session_of

pytestmark = pytest.mark.slow  # a real hub and OpenID provider


@pytest.fixture(scope="module")
def checking_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    hub = start_hub(tmp_path_factory.mktemp("web-check"),
                    {"EVX_WEB_PROVIDER_CHECK_SECONDS": "0", "EVX_OFFICER_REQUEST_BURST": "6",
                     "EVX_OFFICER_REQUESTS_PER_SECOND": "0.01"})
    try:
        yield hub
    finally:
        stop_hub(hub)


def test_a_session_the_provider_no_longer_vouches_for_ends(checking_hub: Hub) -> None:
    hub = checking_hub
    provider = hub.providers[OWNER]
    token = session_of(hub, "anna")
    cookie = {"Cookie": f"{SESSION}={token}"}
    before = provider.refreshes
    assert httpx.get(hub.url + "/v1/packages", headers=cookie).status_code == 200
    assert httpx.get(hub.url + "/app/", headers=cookie).status_code == 200
    assert provider.refreshes >= before + 2  # confirmed at the provider each time
    # The provider's administrators disable the account: its refresh tokens are revoked.
    for refresh in provider.state.refresh_tokens.values():
        if refresh.user.username == "anna.schmidt":
            refresh.revoked = True
    assert httpx.get(hub.url + "/v1/packages", headers=cookie).status_code == 401
    page = httpx.get(hub.url + "/app/", headers=cookie)
    assert page.status_code == 303 and page.headers["location"] == "/app/sign-in"


def test_pages_share_the_api_rate_limit(checking_hub: Hub) -> None:
    # Every page writes a ledger entry: an officer clicking (or scripting) faster than the
    # officer limit gets 429 with Retry-After, on pages as on the API.
    token = session_of(checking_hub, "luc")
    cookie = {"Cookie": f"{SESSION}={token}"}
    answers = [httpx.get(checking_hub.url + "/app/", headers=cookie) for _ in range(8)]
    statuses = [a.status_code for a in answers]
    assert statuses[:6] == [200] * 6 and statuses[6:] == [429, 429], statuses
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert "Too many requests" in answers[-1].text
    assert httpx.get(checking_hub.url + "/v1/packages", headers=cookie).status_code == 429
