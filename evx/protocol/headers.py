"""HTTP header names of the API (field names are case-insensitive; these are the spellings the
service sends and the client looks up)."""

from __future__ import annotations

CONTENT_DIGEST = "Content-Digest"  # RFC 9530: digest of this message's content
REPR_DIGEST = "Repr-Digest"  # RFC 9530: digest of the whole item (also on ranges)
REQUEST_ID = "X-Request-Id"  # the service's id of a request, quoted in reports
RETRY_AFTER = "Retry-After"  # RFC 9110 10.2.3, on 429 and 503
ETAG = "ETag"
IF_RANGE = "If-Range"
RANGE = "Range"
CONTENT_RANGE = "Content-Range"
WWW_AUTHENTICATE = "WWW-Authenticate"
# Resumable uploads (draft-ietf-httpbis-resumable-upload; docs/api.md)
UPLOAD_COMPLETE = "Upload-Complete"  # ?0 opens (or continues) an upload, ?1 finishes it
UPLOAD_LENGTH = "Upload-Length"  # the whole item's size
UPLOAD_OFFSET = "Upload-Offset"  # bytes stored durably so far
UPLOAD_LIMIT = "Upload-Limit"  # the service's limits for this upload
