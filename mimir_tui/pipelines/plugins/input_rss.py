"""``Input.rss``: fetch an RSS 2.0, RSS 1.0 (RDF) or Atom feed and return its items.

Parsed with the standard library's ``xml.etree`` (its expat refuses entity-expansion bombs and
never fetches external entities)."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from pydantic import Field, field_validator

from ..policy import Policy
from ..registry import Plugin, PluginConfig, PluginError, StepContext, StepTimedOut
from .common import cancellable, excerpt, http_url, redact_url


class RssConfig(PluginConfig):
    url: str = Field(description="the feed URL")
    limit: int | None = Field(None, ge=0, description="keep at most this many items (default all)")
    timeout: float = Field(30.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    strip_html: bool = Field(False, description="turn HTML in summaries into plain text")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _child(element: ET.Element, *names: str) -> ET.Element | None:
    for name in names:
        for child in element:
            if _local(child.tag) == name:
                return child
    return None


def _text(element: ET.Element | None) -> str:
    if element is None:
        return ""
    return "".join(element.itertext()).strip()


def _date(raw: str) -> str:
    """ISO 8601 when the date parses (RFC 822 for RSS, RFC 3339 for Atom), else the raw text."""
    raw = raw.strip()
    if not raw:
        return ""
    try:
        parsed = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        parsed = None
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return raw
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.isoformat()


def _atom_link(entry: ET.Element) -> str:
    links = [c for c in entry if _local(c.tag) == "link"]
    for link in links:
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return link.get("href", "")
    for link in links:
        if link.get("href"):
            return link.get("href", "")
    return _text(links[0]) if links else ""


_TAG = re.compile(r"<[^>]+>")


def plain(text: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", text)).split())


def parse_feed(xml_text: str | bytes, *, limit: int | None = None, strip_html: bool = False) -> dict[str, Any]:
    """``{title, link, items: [{title, link, published, summary, id}], count}``."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise PluginError(f"not a valid RSS/Atom feed: {exc}") from None
    kind = _local(root.tag)
    if kind == "feed":  # Atom
        channel = root
        entries = [c for c in root if _local(c.tag) == "entry"]
        feed_link = _atom_link(root)
    elif kind in ("rss", "rdf"):
        found = _child(root, "channel")
        if found is None:
            raise PluginError("not a valid RSS feed: no <channel>")
        channel = found
        # RSS 2.0 keeps items in <channel>; RSS 1.0 (RDF) beside it.
        entries = [c for c in channel if _local(c.tag) == "item"] or [c for c in root if _local(c.tag) == "item"]
        feed_link = _text(_child(channel, "link"))
    else:
        raise PluginError(f"not an RSS or Atom feed (root element <{_local(root.tag)}>)")
    items: list[dict[str, Any]] = []
    for entry in entries:
        if limit is not None and len(items) >= limit:
            break
        if kind == "feed":
            link = _atom_link(entry)
            published = _text(_child(entry, "published", "updated", "issued", "modified"))
            summary = _text(_child(entry, "summary", "content"))
            ident = _text(_child(entry, "id"))
        else:
            link = _text(_child(entry, "link"))
            published = _text(_child(entry, "pubdate", "date", "published", "updated"))
            summary = _text(_child(entry, "description", "summary", "encoded"))
            ident = _text(_child(entry, "guid")) or entry.get("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about", "")
        items.append(
            {
                "title": _text(_child(entry, "title")),
                "link": link,
                "published": _date(published),
                "summary": plain(summary) if strip_html else summary,
                "id": ident or link,
            }
        )
    return {"title": _text(_child(channel, "title")), "link": feed_link, "items": items, "count": len(items)}


class RssInput(Plugin):
    type = "Input"
    name = "rss"
    description = (
        "Fetch an RSS or Atom feed; the result holds the feed title and items [{title, link, published, summary, id}]."
    )
    Config = RssConfig

    async def execute(self, config: RssConfig, ctx: StepContext) -> dict[str, Any]:
        import httpx  # here: most instances never make a request (mimir_tui.pipelines.http)

        shown = redact_url(config.url)
        headers = {
            "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
            **config.headers,
        }
        policy = Policy.of(ctx.settings)
        async with policy.http_client(timeout=config.timeout, follow_redirects=True) as client:
            try:
                reply = await cancellable(
                    policy.send(client, "GET", config.url, headers=headers), ctx, what=f"GET {shown}"
                )
            except httpx.TimeoutException:
                raise StepTimedOut(f"GET {shown} timed out after {config.timeout:g}s") from None
            except httpx.HTTPError as exc:
                raise PluginError(
                    f"GET {shown} failed: {type(exc).__name__}: {excerpt(str(exc)) or 'no detail'}"
                ) from None
        status = reply.response.status_code
        if not 200 <= status < 300:
            raise PluginError(f"GET {shown} returned HTTP {status}: {excerpt(reply.text)}")
        feed = parse_feed(reply.content, limit=config.limit, strip_html=config.strip_html)
        feed["url"] = shown
        return feed
