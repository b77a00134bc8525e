"""evx/protocol: one definition of the rules both sides share, imported by both."""

from __future__ import annotations

import subprocess
import sys
import typing

from evx.client.errors import ClientError, IntegrityFailure, UnavailableError
from evx.client.http import problem_advice
from evx.protocol import problems, tokens


def test_every_problem_type_has_a_client_mapping() -> None:
    for kind in problems.PROBLEM_TYPES:
        found = problem_advice(kind.slug)
        assert found is not None, kind
        error_class, advice = found
        assert issubclass(error_class, ClientError) and advice
        if kind.status >= 500:
            assert issubclass(error_class, IntegrityFailure | UnavailableError), kind


def test_integrity_problems_from_the_service_exit_1() -> None:
    # Review L7: a ledger the server found inconsistent (500 ledger-inconsistent) made
    # `evx custody` exit 5 ("unavailable"): it is an integrity failure, exit 1.
    from evx.cli.exits import EXIT_INTEGRITY, exit_code_for

    for kind in (problems.LEDGER_INCONSISTENT, problems.INTEGRITY, problems.DIGEST_MISMATCH):
        found = problem_advice(kind.slug)
        assert found is not None
        error_class, advice = found
        assert exit_code_for(error_class(advice)) == EXIT_INTEGRITY == 1, kind


def test_the_service_renders_the_shared_types() -> None:
    from service import problems as service_problems

    service_problems.register_domain_errors()
    used = set(service_problems._DOMAIN.values()) | set(service_problems._BY_STATUS.values())
    assert used <= set(problems.PROBLEM_TYPES)
    assert service_problems.NOT_FOUND is problems.NOT_FOUND


def test_every_token_refusal_reason_has_advice_on_both_sides() -> None:
    from service.identity.errors import InvalidTokenReason

    reasons = set(typing.get_args(tokens.TokenRefusalReason))
    assert reasons == set(tokens.REFUSAL_ADVICE)
    assert set(typing.get_args(InvalidTokenReason)) == reasons


def test_the_protocol_imports_only_the_standard_library() -> None:
    code = ("import sys\nbefore = set(sys.modules)\n"
            "import evx.protocol.problems, evx.protocol.headers, evx.protocol.tokens\n"
            "print(','.join(sorted({m.split('.')[0] for m in set(sys.modules) - before} - "
            "set(sys.stdlib_module_names) - {'evx'})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


def test_header_names_come_from_the_protocol_module() -> None:
    """The service's transfer endpoints and the client's uploads spell no protocol header
    themselves: each name is evx/protocol/headers.py's."""
    import re
    from pathlib import Path

    from evx.protocol import headers

    root = Path(__file__).resolve().parents[2]
    names = [value for name, value in vars(headers).items() if name.isupper()]
    literal = re.compile("|".join(rf'"{re.escape(n)}"' for n in names))
    users = ["service/packages/endpoints.py", "service/packages/upload_endpoints.py",
             "evx/client/uploads.py"]
    found = {u: literal.findall((root / u).read_text()) for u in users}
    assert found == {u: [] for u in users}
