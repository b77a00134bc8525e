"""Schemathesis over the OpenAPI schema with valid tokens: no 5xx, and every response matches
what the schema declares (status codes, content types, bodies, headers).

Cases are drawn per operation with Hypothesis directly (the schemathesis pytest plugin does not
support this pytest version); every operation in the schema is exercised.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from service.settings import Settings
from tests.api.conftest import OPERATOR, OWNER, RECIPIENT, STRANGER, World, _world

CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance,
          checks.response_headers_conformance]
CALLERS = [(OWNER, "investigator"), (OWNER, "auditor"), (RECIPIENT, "investigator"),
           (RECIPIENT, "auditor"), (STRANGER, "investigator"), (OPERATOR, "auditor")]
EXAMPLES_PER_OPERATION = 30
# Resumable upload appends (draft-ietf-httpbis-resumable-upload) are raw bytes too.
schemathesis.serializer.alias("application/partial-upload", "application/octet-stream")


@pytest.fixture(scope="module")
def schema_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = Path(tmp_path_factory.mktemp("schemathesis")) / "data"
    yield from _world(Settings(data_dir=data, operator_authority=OPERATOR, chunk_size=64 * 1024,
                               max_item_bytes=1024 * 1024))


@pytest.mark.slow  # schemathesis: 30 examples of every operation, for every caller
def test_every_operation_conforms(schema_world: World) -> None:
    w = schema_world
    known = w.sealed_shared_package({"known.bin": b"known bytes", "dir/x.txt": b"x"})
    schema = schemathesis.openapi.from_asgi("/openapi.json", w.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    tried: dict[str, int] = {}

    for operation in operations:
        @given(case=operation.as_strategy(), caller=st.sampled_from(CALLERS),
               aim=st.booleans())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case, caller: tuple[str, str], aim: bool) -> None:
            if aim and case.path_parameters and "package_id" in case.path_parameters:
                case.path_parameters["package_id"] = known  # exercise the deep paths too
            headers = {**(case.headers or {}), **w.headers(*caller)}
            case.call_and_validate(headers=headers, checks=CHECKS)
            # run() is called right below, inside this iteration
            tried[operation.label] = tried.get(operation.label, 0) + 1  # noqa: B023

        run()
    assert set(tried) == {op.label for op in operations}
