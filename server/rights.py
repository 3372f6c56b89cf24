"""The rights check every use case starts with: 401 for anonymous callers, 403 for the others.

Shared by the three parts of the feed service (``writes``, ``copies``, ``reads``) and, through
``FeedService.require``, by the follow, reaction and aggregation services.
"""

from __future__ import annotations

from .acl import Principal, Right, Rights
from .errors import Forbidden, Unauthorized
from .models import check_feed_name


def require(principal: Principal, feed: str, right: Rights) -> Rights:
    """The principal's rights on ``feed`` if they include ``right``; else 401/403."""
    check_feed_name(feed)
    rights = principal.rights(feed)
    if not rights & right:
        if not principal.authenticated:
            raise Unauthorized(f"authentication required for feed {feed}")
        raise Forbidden(f"no {Right.name(right)} right on feed {feed}")
    return rights
