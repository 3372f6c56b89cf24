"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json`` (and rendered at ``/docs``).

Every schema in it is generated from a pydantic model (``api_models.py``, ``models.py`` and each
dialect's ``*_models``): bodies, query/path/header parameters and responses. Nothing is written
as a schema dict by hand, so the description follows the code.

Adding routes (a dialect, e.g. the GetStream one): give the API class a ``describe(openapi)``
method, called by ``dialects.dialect_routes`` next to ``routes()``, that calls
:meth:`OpenApi.operation` once per route with models::

    def describe(self, openapi: OpenApi) -> None:
        openapi.operation(
            "/api/things/{thing_id}", "put",
            summary="Replace a thing",
            tags=["getstream"],
            path=ThingPath,                  # a model whose fields are the path parameters
            query=ThingQuery,                # … the query parameters
            headers=ThingHeaders,            # … the headers (field aliases give the header names)
            body=ThingIn,                    # the JSON body (a model, a union, list[...] …); required
            form=ThingForm,                  # … or/and the same as a form (fields → form fields)
            responses={200: ThingOut},       # status → model, or Reply(model, description, media_type)
            problems={404: "Unknown thing"}, # status → description of an RFC 9457 problem
        )

Models with the same class name must be the same model (their schemas share one component).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, TypeAdapter

from . import __version__, api_models
from .api_models import (
    Activity,
    ActivityList,
    ActivityPath,
    Counts,
    FeedPath,
    ForeignIdQuery,
    Health,
    IfMatch,
    Index,
    MarkRequest,
    NotificationPage,
    NotReady,
    Outcomes,
    Page,
    PatchRequest,
    Problem,
    Ready,
    Removed,
)
from .models import ActivityIn

REF = "#/components/schemas/{model}"
PROBLEM_TYPE = "application/problem+json"
FORM_TYPE = "application/x-www-form-urlencoded"

#: Problems every authenticated JSON route may answer.
COMMON_PROBLEMS: dict[int, str] = {
    400: "Malformed JSON, or no body",
    401: "Invalid credentials, or none where they are required",
    403: "Authenticated, but not allowed (the token lacks the right on this feed)",
    422: "Invalid fields, each listed in `errors`",
    429: "Over `[server] http_rate_limit` (see Retry-After)",
    503: "Redis unavailable or too slow (see Retry-After)",
}

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT with `sub` and `feeds` (pattern → rights); mint one with `feedserver token`",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "A server API key"},
}


@dataclass(frozen=True)
class Reply:
    """A response: its body model (None: no body), description, media type and headers model."""

    model: Any = None
    description: str = ""
    media_type: str = "application/json"
    headers: dict[str, str] | None = None
    also_html: bool = False  # browsers (Accept: text/html) get a page instead


class OpenApi:
    """Collects operations described with models; ``document()`` returns the whole description.

    ``max_batch``, ``max_page`` and ``max_activity_bytes`` are the configured limits: the batch
    and page schemas carry them, and the 413 descriptions name them.
    """

    def __init__(self, *, max_batch: int = 100, max_page: int = 100, max_activity_bytes: int = 10240) -> None:
        self.max_batch = max_batch
        self.max_page = max_page
        self.max_activity_bytes = max_activity_bytes
        self.schemas: dict[str, Any] = {}
        self.paths: dict[str, dict[str, Any]] = {}
        self.security_schemes: dict[str, Any] = dict(SECURITY_SCHEMES)
        self.schema(Problem)
        self._native()
        self._changes()
        self._notifications()
        self._operational()
        self._descriptions()

    # -- building blocks ---------------------------------------------------------------------------

    def schema(self, tp: Any) -> dict[str, Any]:
        """The JSON schema of a type (a ``$ref`` for a model), its definitions added to the components."""
        generated = TypeAdapter(tp).json_schema(ref_template=REF)
        for name, definition in generated.pop("$defs", {}).items():
            self._register(name, definition)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            self._register(tp.__name__, generated)
            return {"$ref": REF.format(model=tp.__name__)}
        return generated

    def _register(self, name: str, definition: dict[str, Any]) -> None:
        known = self.schemas.get(name)
        if known is not None and known != definition:
            raise ValueError(f"two different schemas are named {name!r}: rename one of the models")
        self.schemas[name] = definition

    def parameters(self, model: type[BaseModel] | None, where: str) -> list[dict[str, Any]]:
        """One parameter per field of ``model`` (its alias is the name), ``in`` = ``where``."""
        if model is None:
            return []
        generated = model.model_json_schema(ref_template=REF)
        for name, definition in generated.pop("$defs", {}).items():
            self._register(name, definition)
        required = set(generated.get("required", ()))
        out = []
        for name, prop in generated.get("properties", {}).items():
            prop = {k: v for k, v in prop.items() if k != "title"}
            description = prop.pop("description", None)
            # Optional parameters are simply absent: the "or null" of the model adds nothing here.
            options = [s for s in prop.get("anyOf", ()) if s != {"type": "null"}]
            if "anyOf" in prop and len(options) == 1:
                prop = {**{k: v for k, v in prop.items() if k != "anyOf"}, **options[0]}
            if prop.get("default", 0) is None:
                del prop["default"]
            param: dict[str, Any] = {"name": name, "in": where, "required": where == "path" or name in required}
            if description:
                param["description"] = description
            param["schema"] = prop
            out.append(param)
        return out

    def problem(self, description: str) -> dict[str, Any]:
        """An error response described as an RFC 9457 problem."""
        return {"description": description, "content": {PROBLEM_TYPE: {"schema": self.schema(Problem)}}}

    def _reply(self, reply: Any) -> dict[str, Any]:
        if not isinstance(reply, Reply):
            reply = Reply(reply)
        description = reply.description or (
            (getattr(reply.model, "__doc__", None) or "").strip().split("\n")[0] if reply.model is not None else ""
        )
        out: dict[str, Any] = {"description": description or "OK"}
        if reply.model is not None:
            out["content"] = {reply.media_type: {"schema": self.schema(reply.model)}}
            if reply.also_html:
                out["content"]["text/html"] = {"schema": self.schema(str)}
        if reply.headers:
            string = self.schema(str)
            out["headers"] = {name: {"description": text, "schema": string} for name, text in reply.headers.items()}
        return out

    def operation(
        self,
        path: str,
        method: str,
        *,
        summary: str,
        description: str = "",
        tags: Sequence[str] = (),
        body: Any = None,
        body_description: str = "",
        form: type[BaseModel] | None = None,
        path_params: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        headers: type[BaseModel] | None = None,
        responses: Mapping[int, Any],
        problems: Mapping[int, str] = COMMON_PROBLEMS,
        security: list[dict[str, list[str]]] | None = None,
    ) -> None:
        """Describe one operation from models (see the module docstring)."""
        op: dict[str, Any] = {"summary": summary, "operationId": _operation_id(method, path)}
        if description:
            op["description"] = description
        if tags:
            op["tags"] = list(tags)
        params = [
            *self.parameters(path_params, "path"),
            *self.parameters(query, "query"),
            *self.parameters(headers, "header"),
        ]
        if params:
            op["parameters"] = params
        if body is not None or form is not None:
            content = {"application/json": {"schema": self.schema(body)}} if body is not None else {}
            if form is not None:  # the same request as an HTML form (application/x-www-form-urlencoded)
                content[FORM_TYPE] = {"schema": self.schema(form)}
            op["requestBody"] = {"required": True, "description": body_description, "content": content}
        out = {str(status): self._reply(reply) for status, reply in responses.items()}
        for status, text in problems.items():
            out.setdefault(str(status), self.problem(text))
        op["responses"] = dict(sorted(out.items()))
        if security is not None:
            op["security"] = security
        self.add_path(path, method, op)

    def security_scheme(self, name: str, scheme: dict[str, Any]) -> None:
        """Declare a security scheme (e.g. a dialect's own credential header)."""
        self.security_schemes[name] = scheme

    def add_path(self, path: str, method: str, operation: dict[str, Any]) -> None:
        """Add an already-built operation object (prefer :meth:`operation`)."""
        self.paths.setdefault(path, {})[method.lower()] = operation

    # -- the native API ------------------------------------------------------------------------------

    def _native(self) -> None:
        too_large = (
            f"An activity over {self.max_activity_bytes} bytes encoded, more than {self.max_batch} "
            "activities, or a body over the limit"
        )
        batch = api_models.batch_model(self.max_batch)
        self.operation(
            "/v1/feeds/{feed}/activities",
            "post",
            summary=f"Add one activity, or a batch of up to {self.max_batch} (all or nothing)",
            description='The body is one activity, or `{"activities": [...]}`. Each activity is at most '
            f"{self.max_activity_bytes} bytes once stored (`[feeds] max_activity_bytes`). Live "
            "subscribers of the feed (and of the `to` feeds) who may see it receive it at once.",
            tags=["activities"],
            path_params=FeedPath,
            body=ActivityIn | batch,
            responses={201: Reply(ActivityList, "The stored activities, in input order")},
            problems={
                **COMMON_PROBLEMS,
                409: "A client-chosen id already belongs to another foreign_id/time",
                413: too_large,
            },
        )
        self.operation(
            "/v1/feeds/{feed}/activities",
            "get",
            summary="A history page, newest first, of what the caller may see",
            description="Activities whose audience the caller is not in are left out (feed admins see all). "
            "Follow `next` for the following page.",
            tags=["activities"],
            path_params=FeedPath,
            query=api_models.feed_page_query_model(self.max_page),
            responses={200: Page},
        )
        self.operation(
            "/v1/feeds/{feed}/activities/{activity_id}",
            "get",
            summary="One activity (404 when missing or hidden from the caller)",
            tags=["activities"],
            path_params=ActivityPath,
            responses={200: Reply(Activity, "The activity (ETag: its version)", headers={"ETag": '"<version>"'})},
            problems={**COMMON_PROBLEMS, 404: "Unknown, or hidden from the caller"},
        )

    def _changes(self) -> None:
        one = Reply(Activity, "The stored activity (ETag: its new version)", headers={"ETag": '"<version>"'})
        problems = {
            **COMMON_PROBLEMS,
            404: "Unknown, or hidden from the caller",
            409: "foreign_id/time taken by another activity, or the activity kept changing",
            412: "Stale version: `version` holds the current one",
            413: f"The activity would be over {self.max_activity_bytes} bytes",
        }
        item = "/v1/feeds/{feed}/activities/{activity_id}"
        self.operation(
            item,
            "put",
            summary="Replace an activity (actor, time and audience default to the stored ones)",
            tags=["activities"],
            path_params=ActivityPath,
            headers=IfMatch,
            body=ActivityIn,
            responses={200: one},
            problems=problems,
        )
        self.operation(
            item,
            "patch",
            summary="Partial update: set/unset dotted paths (at most 25 each)",
            tags=["activities"],
            path_params=ActivityPath,
            headers=IfMatch,
            body=PatchRequest,
            responses={200: one},
            problems=problems,
        )
        self.operation(
            item,
            "delete",
            summary="Remove an activity (subscribers get a `deleted` event)",
            tags=["activities"],
            path_params=ActivityPath,
            headers=IfMatch,
            responses={204: Reply(None, "Removed")},
            problems={k: v for k, v in problems.items() if k not in (409, 413)},
        )
        self.operation(
            "/v1/feeds/{feed}/activities",
            "delete",
            summary="Remove every activity with a foreign_id",
            tags=["activities"],
            path_params=FeedPath,
            query=ForeignIdQuery,
            responses={200: Removed},
        )
        for path, summary, model, entry in (
            (
                "/v1/activities/update",
                f"Batch full update by feed + foreign_id + time (at most {self.max_batch})",
                api_models.batch_update_model(self.max_batch),
                api_models.BatchUpdateItem,
            ),
            (
                "/v1/activities/partial-update",
                f"Batch partial update by feed + id, or feed + foreign_id + time (at most {self.max_batch})",
                api_models.batch_partial_model(self.max_batch),
                api_models.PartialChange,
            ),
        ):
            self.operation(
                path,
                "post",
                summary=summary,
                description="Each item succeeds or fails on its own: see `results[i].status` (an item that "
                "is not valid gets its 422 there, not the whole request). The bare list of items works too.",
                tags=["activities"],
                body=model | Annotated[list[entry], Field(min_length=1, max_length=self.max_batch)],  # type: ignore[valid-type]
                responses={200: Reply(Outcomes, "One result per item")},
                problems={**COMMON_PROBLEMS, 413: f"More than {self.max_batch} items"},
            )

    def _notifications(self) -> None:
        self.operation(
            "/v1/notifications",
            "get",
            summary="The caller's notification feed (is_seen/is_read per activity) with unseen/unread counts",
            tags=["notifications"],
            query=api_models.page_query_model(self.max_page),
            responses={200: NotificationPage},
        )
        for mark in ("seen", "read"):
            self.operation(
                f"/v1/notifications/{mark}",
                "post",
                summary=f"Mark notifications {mark} (ids, or all); the new counts are pushed live too",
                tags=["notifications"],
                body=MarkRequest,
                responses={200: Reply(Counts, "The new counts")},
            )

    def _operational(self) -> None:
        public: list[dict[str, list[str]]] = [{}]
        self.operation(
            "/healthz",
            "get",
            summary="The process is up (no Redis call)",
            tags=["operations"],
            responses={200: Health},
            problems={},
            security=public,
        )
        self.operation(
            "/readyz",
            "get",
            summary="Redis and the pub/sub path answer (503 otherwise, and while draining)",
            tags=["operations"],
            responses={200: Ready, 503: Reply(NotReady, "Not ready", headers={"Retry-After": "Seconds"})},
            problems={},
            security=public,
        )
        self.operation(
            "/metrics",
            "get",
            summary="Prometheus metrics (text exposition format)",
            tags=["operations"],
            responses={200: Reply(str, "Prometheus text format", media_type="text/plain")},
            problems={},
            security=public,
        )

    def _descriptions(self) -> None:
        public: list[dict[str, list[str]]] = [{}]
        self.operation(
            "/",
            "get",
            summary="Where to go: the docs, the descriptions, the WebSocket and the dashboard",
            tags=["operations"],
            responses={200: Reply(Index, "Links (an HTML page for browsers)", also_html=True)},
            problems={},
            security=public,
        )
        for path, summary in (
            ("/openapi.json", "This description (OpenAPI 3.1)"),
            ("/asyncapi.json", "The WebSocket protocol (AsyncAPI 3.0)"),
        ):
            self.operation(
                path,
                "get",
                summary=summary,
                tags=["operations"],
                responses={200: Reply(dict[str, Any], summary)},
                problems={},
                security=public,
            )

    def document(self) -> dict[str, Any]:
        """The OpenAPI document."""
        return {
            "openapi": "3.1.0",
            "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
            "info": {
                "title": "Activity feed server",
                "version": __version__,
                "description": "Activities stored in Redis and pushed live over WebSocket (`GET /v1/ws`, "
                "described in AsyncAPI at [/asyncapi.json](/asyncapi.json)). Authenticate with "
                "`Authorization: Bearer <JWT>` or `X-API-Key`; anonymous callers may read the "
                "feeds of `[auth] public_feeds`. Errors are RFC 9457 problems (`application/problem+json`), "
                "except in the Velt dialect, which answers in Velt's own error shape.",
            },
            "paths": self.paths,
            "components": {"schemas": dict(sorted(self.schemas.items())), "securitySchemes": self.security_schemes},
            "security": [{"bearer": []}, {"apiKey": []}, {}],
        }


def _operation_id(method: str, path: str) -> str:
    words = [p.strip("{}").replace("-", "_") for p in path.split("/") if p and p != "v1"]
    return "_".join([method.lower(), *words])
