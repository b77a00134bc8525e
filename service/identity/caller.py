"""Who acts on the record: an authenticated officer or a system actor (sweeper, key management).

Defined with identity, the lowest layer, so that the ledger's recorder and the packages' policy
both take it without one importing the other.
"""

from __future__ import annotations

from typing import Protocol


class Caller(Protocol):
    """Who acts: an authenticated officer, or a system actor (sweeper, key management)."""

    @property
    def authority(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def role(self) -> str: ...
