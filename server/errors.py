"""One exception hierarchy for every refusal the server makes.

Each error knows its HTTP status (rendered as an RFC 9457 problem), its WebSocket error ``code``
(sent as ``{"type": "error", ...}``) and, where the right answer is to drop the connection, its
WebSocket close code.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class FeedError(Exception):
    """Base of every error the server reports to a client."""

    status: int = 500
    code: str = "internal"
    close_code: int | None = None

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        # Every field error has a machine-readable ``type`` (the published Problem schema requires it).
        self.errors = [{"type": "value_error", **e} for e in errors] if errors else errors
        self.retry_after = retry_after
        self.extra = extra or {}

    @property
    def title(self) -> str:
        """The HTTP reason phrase of ``status``."""
        return HTTPStatus(self.status).phrase

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem document for this error."""
        body: dict[str, Any] = {
            "type": f"urn:feedserver:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body

    def ws_error(self, ref: Any = None) -> dict[str, Any]:
        """The WebSocket ``error`` message for this error."""
        msg: dict[str, Any] = {"type": "error", "code": self.code, "detail": self.detail}
        if ref is not None:
            msg["ref"] = ref
        if self.errors:
            msg["errors"] = self.errors
        if self.retry_after is not None:
            msg["retry_after"] = self.retry_after
        msg.update(self.extra)
        return msg


class BadRequest(FeedError):
    """The request could not be parsed (malformed JSON, wrong content)."""

    status, code = 400, "bad_request"


class Unauthorized(FeedError):
    """No credentials, or credentials that don't verify (bad signature, expired)."""

    status, code, close_code = 401, "unauthorized", 4001


class Forbidden(FeedError):
    """Authenticated, but not allowed to do this."""

    status, code, close_code = 403, "forbidden", 4003


class NotFound(FeedError):
    """Unknown, or hidden from the caller (the two are indistinguishable on purpose)."""

    status, code = 404, "not_found"


class Conflict(FeedError):
    """The write contradicts stored state (e.g. a client id that belongs to another foreign_id)."""

    status, code = 409, "conflict"


class PreconditionFailed(FeedError):
    """``If-Match`` / ``version`` does not match the stored version."""

    status, code = 412, "precondition_failed"


class PayloadTooLarge(FeedError):
    """An activity, batch or request body over the configured limits."""

    status, code = 413, "too_large"


class RequestTimeout(FeedError):
    """408: the request body did not arrive in time."""

    status, code = 408, "request_timeout"


class Invalid(FeedError):
    """Well-formed input with invalid fields; ``errors`` lists each field."""

    status, code = 422, "invalid"


class RateLimited(FeedError):
    """Too many requests; ``retry_after`` seconds."""

    status, code, close_code = 429, "rate_limited", 4029


class Unavailable(FeedError):
    """Redis is unreachable or too slow; try again after ``retry_after`` seconds."""

    status, code = 503, "unavailable"


def invalid_field(loc: str, msg: str, type_: str = "value_error") -> Invalid:
    """A 422 for a single field."""
    return Invalid(f"{loc}: {msg}", errors=[{"loc": loc, "msg": msg, "type": type_}])
