"""RFC 9457 problem types of the API: status, stable slug (the last segment of the ``type``
URI) and title. The service renders them (``service/problems.py``); the client maps each slug
to an error and advice (``evx/client/http.py``), and a test checks that every type here has a
client mapping."""

from __future__ import annotations

from dataclasses import dataclass

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://evidence-exchange.example/problems/"


IANA_PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types#"


@dataclass(frozen=True)
class ProblemType:
    status: int
    slug: str
    title: str
    uri: str | None = None  # a type defined elsewhere (e.g. IANA's registry); else ours

    @property
    def type_uri(self) -> str:
        return self.uri or TYPE_BASE + self.slug


BAD_REQUEST = ProblemType(400, "bad-request", "The request is malformed")
UNAUTHENTICATED = ProblemType(401, "unauthenticated", "Authentication required")
FORBIDDEN = ProblemType(403, "forbidden", "Not allowed")
SHARE_EXPIRED = ProblemType(403, "share-expired", "The share of this package has expired")
SHARE_REVOKED = ProblemType(403, "share-revoked", "The share of this package was revoked")
NOT_FOUND = ProblemType(404, "not-found", "Not found")
METHOD_NOT_ALLOWED = ProblemType(405, "method-not-allowed", "Method not allowed")
CONFLICT = ProblemType(409, "conflict", "Conflicts with the current state")
PACKAGE_SEALED = ProblemType(409, "package-sealed", "The package is sealed and cannot change")
PACKAGE_NOT_SEALED = ProblemType(409, "package-not-sealed", "The package must be sealed first")
ITEM_EXISTS = ProblemType(409, "item-exists", "An item with this name already exists")
REQUEST_STATE = ProblemType(409, "request-state",
                            "Not possible in the request's current state")
NAME_CONFLICT = ProblemType(409, "name-conflict",
                            "A file or link item would be the directory of another item")
NOT_A_FILE = ProblemType(409, "not-a-file", "The item is a link or directory: it has no content")
TOO_LARGE = ProblemType(413, "too-large", "The item exceeds the maximum size")
BODY_TOO_LARGE = ProblemType(413, "body-too-large",
                             "The request body exceeds the maximum for this route")
TOO_MANY_REQUESTS = ProblemType(429, "too-many-requests",
                                "Too many requests; retry after the time in Retry-After")
TRANSFER_STALLED = ProblemType(408, "transfer-stalled",
                               "The body moved slower than the service's minimum rate")
RANGE_NOT_SATISFIABLE = ProblemType(416, "range-not-satisfiable", "Range not satisfiable")
DIGEST_MISMATCH = ProblemType(422, "digest-mismatch",
                              "The uploaded bytes do not match the Content-Digest sent")
VALIDATION = ProblemType(422, "validation", "The request is invalid")
# Resumable uploads (draft-ietf-httpbis-resumable-upload): the draft's own problem types.
UPLOAD_NOT_FOUND = ProblemType(404, "upload-not-found",
                               "No such upload (completed, cancelled or expired)")
UPLOAD_IN_PROGRESS = ProblemType(409, "upload-in-progress",
                                 "This item already has an upload in progress")
UPLOAD_SUPERSEDED = ProblemType(409, "upload-superseded",
                                "A newer request took this upload over")
MISMATCHING_UPLOAD_OFFSET = ProblemType(409, "mismatching-upload-offset",
                                        "The append does not start at the upload's offset",
                                        IANA_PROBLEM_TYPES + "mismatching-upload-offset")
INCONSISTENT_UPLOAD_LENGTH = ProblemType(400, "inconsistent-upload-length",
                                         "The content disagrees with the upload's length",
                                         IANA_PROBLEM_TYPES + "inconsistent-upload-length")
INTEGRITY = ProblemType(500, "integrity-failure",
                        "Stored evidence failed its integrity check; nothing was served")
LEDGER_INCONSISTENT = ProblemType(
    500, "ledger-inconsistent",
    "The stored ledger does not match its signed checkpoints or the log key; nothing is served")
LEDGER_UNAVAILABLE = ProblemType(503, "ledger-unavailable",
                                 "The custody ledger cannot be written; the operation was refused")
SERVICE_BUSY = ProblemType(503, "service-busy",
                           "The service is at its transfer capacity; retry after Retry-After")
STORE_UNAVAILABLE = ProblemType(503, "store-unavailable", "The evidence store is unavailable")
INTERNAL = ProblemType(500, "internal", "Internal error")

#: Every problem type the API sends (add a new one here; the client test will ask for its
#: mapping).
PROBLEM_TYPES: tuple[ProblemType, ...] = (
    BAD_REQUEST, UNAUTHENTICATED, FORBIDDEN, SHARE_EXPIRED, SHARE_REVOKED, NOT_FOUND,
    METHOD_NOT_ALLOWED, CONFLICT, PACKAGE_SEALED, PACKAGE_NOT_SEALED, ITEM_EXISTS,
    REQUEST_STATE, NAME_CONFLICT, NOT_A_FILE, TOO_LARGE, BODY_TOO_LARGE, TOO_MANY_REQUESTS,
    TRANSFER_STALLED, RANGE_NOT_SATISFIABLE, DIGEST_MISMATCH,
    VALIDATION, UPLOAD_NOT_FOUND, UPLOAD_IN_PROGRESS, UPLOAD_SUPERSEDED,
    MISMATCHING_UPLOAD_OFFSET, INCONSISTENT_UPLOAD_LENGTH, INTEGRITY, LEDGER_INCONSISTENT,
    LEDGER_UNAVAILABLE, SERVICE_BUSY, STORE_UNAVAILABLE, INTERNAL,
)


def slug_of(type_uri: object) -> str | None:
    """The slug of a problem ``type`` URI (its last path segment, or its fragment for a
    registry's type such as IANA's), or ``None``."""
    if not isinstance(type_uri, str):
        return None
    slug = type_uri.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]
    return slug or None
