"""Input.rss: RSS 2.0, RSS 1.0 and Atom feeds served on 127.0.0.1."""

from __future__ import annotations

import pytest

from mimir_tui.pipelines.plugins.input_rss import RssInput, parse_feed
from mimir_tui.pipelines.registry import PluginError

RSS2 = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
  <channel>
    <title>Mimir News</title>
    <link>https://example.org/</link>
    <description>Things</description>
    <item>
      <title>First &amp; best</title>
      <link>https://example.org/1</link>
      <pubDate>Tue, 10 Jun 2025 04:00:00 GMT</pubDate>
      <description>&lt;p&gt;Hello &lt;b&gt;world&lt;/b&gt;&lt;/p&gt;</description>
      <guid>item-1</guid>
    </item>
    <item>
      <title>Second</title>
      <link>https://example.org/2</link>
      <pubDate>not a date</pubDate>
      <content:encoded><![CDATA[<p>Only content</p>]]></content:encoded>
    </item>
    <item><title>Third</title><link>https://example.org/3</link></item>
  </channel>
</rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Atom Feed</title>
  <link href="https://example.com/" rel="alternate"/>
  <link href="https://example.com/feed.xml" rel="self"/>
  <entry>
    <title>Atom entry</title>
    <link rel="self" href="https://example.com/e1.json"/>
    <link rel="alternate" href="https://example.com/e1"/>
    <id>urn:uuid:1</id>
    <updated>2025-06-01T12:00:00Z</updated>
    <summary>Short summary</summary>
  </entry>
  <entry>
    <title>Second entry</title>
    <link href="https://example.com/e2"/>
    <published>2025-06-02T08:30:00+02:00</published>
    <content type="html">Full content</content>
  </entry>
</feed>"""

RSS1 = """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
         xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="https://example.net/"><title>RDF feed</title><link>https://example.net/</link></channel>
  <item rdf:about="https://example.net/a"><title>RDF item</title><link>https://example.net/a</link>
    <dc:date>2025-01-02T03:04:05Z</dc:date><description>rdf text</description></item>
</rdf:RDF>"""


@pytest.fixture
def feeds(http_server):
    http_server.route("GET", "/rss", lambda r: (200, {"Content-Type": "application/rss+xml"}, RSS2))
    http_server.route("GET", "/atom", lambda r: (200, {"Content-Type": "application/atom+xml"}, ATOM))
    http_server.route("GET", "/rdf", lambda r: (200, {"Content-Type": "application/xml"}, RSS1))
    http_server.route("GET", "/html", lambda r: (200, {"Content-Type": "text/html"}, "<html><body>not a feed"))
    http_server.route("GET", "/gone", lambda r: (410, {"Content-Type": "text/plain"}, "gone"))
    return http_server


async def test_rss2(run_plugin, feeds):
    result = await run_plugin(RssInput, {"url": feeds.url("/rss")})
    assert result["title"] == "Mimir News"
    assert result["link"] == "https://example.org/"
    assert result["count"] == 3
    first, second, third = result["items"]
    assert first == {
        "title": "First & best",
        "link": "https://example.org/1",
        "published": "2025-06-10T04:00:00+00:00",
        "summary": "<p>Hello <b>world</b></p>",
        "id": "item-1",
    }
    assert second["published"] == "not a date"  # kept as written when it does not parse
    assert second["summary"] == "<p>Only content</p>"
    assert third["summary"] == "" and third["id"] == "https://example.org/3"


async def test_limit_and_strip_html(run_plugin, feeds):
    result = await run_plugin(RssInput, {"url": feeds.url("/rss"), "limit": 1, "strip_html": True})
    assert result["count"] == 1
    assert result["items"][0]["summary"] == "Hello world"


async def test_atom(run_plugin, feeds):
    result = await run_plugin(RssInput, {"url": feeds.url("/atom")})
    assert result["title"] == "Atom Feed" and result["link"] == "https://example.com/"
    one, two = result["items"]
    assert one["link"] == "https://example.com/e1"  # rel=alternate wins over rel=self
    assert one["published"] == "2025-06-01T12:00:00+00:00"
    assert one["summary"] == "Short summary" and one["id"] == "urn:uuid:1"
    assert two["link"] == "https://example.com/e2"
    assert two["published"] == "2025-06-02T08:30:00+02:00"
    assert two["summary"] == "Full content"


async def test_rss1_rdf(run_plugin, feeds):
    result = await run_plugin(RssInput, {"url": feeds.url("/rdf")})
    assert result["title"] == "RDF feed"
    assert result["items"] == [
        {
            "title": "RDF item",
            "link": "https://example.net/a",
            "published": "2025-01-02T03:04:05+00:00",
            "summary": "rdf text",
            "id": "https://example.net/a",
        }
    ]


async def test_not_a_feed_and_http_errors(run_plugin, feeds):
    with pytest.raises(PluginError, match="not a valid RSS/Atom feed"):
        await run_plugin(RssInput, {"url": feeds.url("/html")})
    with pytest.raises(PluginError, match="HTTP 410"):
        await run_plugin(RssInput, {"url": feeds.url("/gone")})


def test_entity_expansion_is_refused():
    bomb = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<rss><channel><title>&lol9;</title></channel></rss>"""
    with pytest.raises(PluginError):
        parse_feed(bomb)
