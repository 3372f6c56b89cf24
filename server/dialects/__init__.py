"""Seed dialects (SPEC §8): the request formats of the systems this server replaces.

Each dialect lives in its own module (``wink``, ``velt``, ``activity_entry``) and only *maps*: its
request → our activity (SPEC §2), through ``FeedService`` (the one write path), and the stored
activity → its response shape. The mapping itself is declarative: a ``FieldTable`` of
``Field(their_name, our_path, to_ours, to_theirs)`` rows, shared by input, output and the
translation of our validation errors back into the dialect's field names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..errors import FeedError, Invalid

if TYPE_CHECKING:  # pragma: no cover - typing only
    from starlette.routing import BaseRoute

    from ..openapi import OpenApi
    from ..service import FeedService

Convert = Callable[[Any], Any]


def same(value: Any) -> Any:
    """The identity converter."""
    return value


class FieldError(ValueError):
    """A converter's refusal; ``at`` locates it inside the field (``"0.targetId"``)."""

    def __init__(self, msg: str, at: str = "") -> None:
        super().__init__(msg)
        self.at = at


def text(value: Any) -> str:
    """A non-empty string, as given."""
    if not isinstance(value, str) or not value:
        raise FieldError("must be a non-empty string")
    return value


def mapping(value: Any) -> dict[str, Any]:
    """A JSON object, as given."""
    if not isinstance(value, dict):
        raise FieldError("must be an object")
    return value


@dataclass(frozen=True, slots=True)
class Field:
    """One row of a field table: their name ↔ our (dotted) path, with a converter each way.

    ``to_theirs`` returning None leaves the field out of the dialect's response.
    """

    theirs: str
    ours: str
    to_ours: Convert = same
    to_theirs: Convert = same
    required: bool = False


class FieldTable:
    """A dialect's field mapping, used for input, output and error locations.

    ``extra``: what to do with input names the table does not know — ``"forbid"`` (a 422 naming
    them) or ``"keep"`` (passed through as custom fields). ``ignore``: names accepted on input but
    handled by the endpoint (or dropped), e.g. server-owned fields sent back by a client.
    ``blank_is_absent``: treat ``""`` like a missing value (clients that send every field).
    """

    def __init__(
        self,
        *fields: Field,
        extra: Literal["forbid", "keep"] = "forbid",
        ignore: Iterable[str] = (),
        blank_is_absent: bool = False,
    ) -> None:
        self.fields = fields
        self.extra = extra
        self.ignore = frozenset(ignore)
        self.blank_is_absent = blank_is_absent
        self._by_theirs = {f.theirs: f for f in fields}

    def only(self, *names: str) -> FieldTable:
        """A table of just these rows (e.g. the fields an update may change)."""
        return FieldTable(
            *(self._by_theirs[n] for n in names),
            extra=self.extra,
            ignore=self.ignore,
            blank_is_absent=self.blank_is_absent,
        )

    def absent(self, value: Any) -> bool:
        """True when ``value`` counts as not given."""
        return value is None or (self.blank_is_absent and value == "")

    def to_ours(self, raw: Any, loc: str = "") -> dict[str, Any]:
        """Their object → our activity fields (dotted paths expanded); 422 listing every bad field."""
        prefix = f"{loc}." if loc else ""
        if not isinstance(raw, dict):
            raise Invalid(
                f"{loc or 'body'}: must be a JSON object",
                errors=[{"loc": loc, "msg": "must be a JSON object", "type": "dict_type"}],
            )
        out: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for f in self.fields:
            value = raw.get(f.theirs)
            if self.absent(value):
                if f.required:
                    errors.append({"loc": prefix + f.theirs, "msg": "required", "type": "missing"})
                continue
            try:
                set_path(out, f.ours, f.to_ours(value))
            except (FieldError, ValueError, TypeError) as exc:
                at = getattr(exc, "at", "")
                errors.append(
                    {"loc": prefix + f.theirs + (f".{at}" if at else ""), "msg": str(exc), "type": "value_error"}
                )
        for name in raw:
            if name in self._by_theirs or name in self.ignore:
                continue
            if self.extra == "keep":
                out.setdefault(name, raw[name])
            else:
                errors.append({"loc": prefix + name, "msg": "unknown field", "type": "extra_forbidden"})
        if errors:
            raise invalid(errors)
        return out

    def to_theirs(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Our stored activity → their fields, in table order; absent ones left out."""
        out: dict[str, Any] = {}
        for f in self.fields:
            value = get_path(doc, f.ours)
            if value is None:
                continue
            converted = f.to_theirs(value)
            if converted is not None:
                out[f.theirs] = converted
        return out

    def their_loc(self, loc: str) -> str:
        """Our error location (``activities.0.target.id``) in their names (``activities.0.targetEntityId``)."""
        parts = loc.split(".")
        head: list[str] = []
        while len(parts) >= 2 and parts[0] == "activities" and parts[1].isdigit():
            head, parts = head + parts[:2], parts[2:]
        rest = ".".join(parts)
        for f in self.fields:  # exact or deeper: target.id → targetEntityId; time → eventDate
            if rest == f.ours or rest.startswith(f.ours + "."):
                rest = f.theirs + rest[len(f.ours) :]
                break
        else:
            for f in self.fields:  # shallower: object → objectId (of object.id / object.type)
                if f.ours.startswith(rest + ".") and rest:
                    rest = f.theirs
                    break
        return ".".join([*head, rest]) if rest else ".".join(head)

    def translate(self, exc: FeedError, prefix: str = "") -> FeedError:
        """The same error with its field locations (and detail) in the dialect's names.

        ``prefix`` is put before every location (``"data."`` for a body wrapped in ``data``).
        """
        if not exc.errors:
            return exc
        errors = []
        for e in exc.errors:
            loc = self.their_loc(str(e.get("loc", "")))
            errors.append({**e, "loc": f"{prefix}{loc}" if loc else prefix.rstrip(".")})
        return type(exc)(_detail(errors), errors=errors, retry_after=exc.retry_after, extra=exc.extra)

    @contextmanager
    def their_names(self, prefix: str = "") -> Iterator[None]:
        """Re-raise service errors with locations in the dialect's field names."""
        try:
            yield
        except FeedError as exc:
            translated = self.translate(exc, prefix)
            if translated is exc:
                raise
            raise translated from None


def invalid(errors: list[dict[str, Any]]) -> Invalid:
    """A 422 listing ``errors`` (each ``{loc, msg, type}``)."""
    return Invalid(_detail(errors), errors=errors)


def _detail(errors: list[dict[str, Any]]) -> str:
    return "; ".join(f"{e['loc']}: {e['msg']}" if e.get("loc") else str(e["msg"]) for e in errors[:5])


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path, creating the parent objects."""
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def get_path(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or None."""
    node: Any = doc
    for key in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def dialect_routes(
    service: FeedService,
    openapi: OpenApi,
    max_body_bytes: int,
    *,
    extra: Sequence[BaseRoute] = (),
) -> list[BaseRoute]:
    """The routes of every seed dialect; each also describes its paths in ``openapi``. ``extra``:
    routes of dialects built with more than the service (GetStream: ``getstream.getstream_routes``)."""
    from .activity_entry import ActivityEntryApi
    from .velt import VeltApi
    from .wink import WinkApi

    routes: list[BaseRoute] = list(extra)  # first: one prefix test each (a Mount), most traffic
    for api in (
        WinkApi(service, max_body_bytes=max_body_bytes),
        VeltApi(service, max_body_bytes=max_body_bytes),
        ActivityEntryApi(service, max_body_bytes=max_body_bytes),
    ):
        api.describe(openapi)
        routes.extend(api.routes())
    return routes


__all__ = ["Field", "FieldError", "FieldTable", "dialect_routes", "get_path", "invalid", "set_path"]
