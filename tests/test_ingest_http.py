"""Sources over HTTP, against a real server on loopback serving fixture files."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from digest.extensions import db
from digest.ingest import ingest_locations
from digest.ingest.errors import ReadError
from digest.ingest.fetch import FetchSettings, fetch_url
from digest.ingest.sources import add_source
from digest.models import Article, Source

DATA = Path(__file__).parent / "data" / "ingest"
NOW = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
RSS = "application/rss+xml; charset=utf-8"


@dataclass
class Resource:
    """What the fixture server answers for one path."""

    body: bytes = b""
    content_type: str = RSS
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    # Custom writer for streaming cases (slow, endless); gets the handler.
    stream: Callable[[BaseHTTPRequestHandler], None] | None = None


@dataclass
class Seen:
    path: str
    status: int
    headers: dict[str, str]


class FixtureServer:
    """A threaded HTTP/1.0 server with ETag/Last-Modified support and a request log."""

    LAST_MODIFIED = "Wed, 01 May 2024 08:00:00 GMT"

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.log: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                """Keep test output quiet."""

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                resource = server.resources.get(path)
                headers = {key.lower(): value for key, value in self.headers.items()}
                if resource is None:
                    server.log.append(Seen(path, 404, headers))
                    self.send_error(404)
                    return
                if resource.stream is not None:
                    server.log.append(Seen(path, resource.status, headers))
                    # The client hanging up early is what several tests want.
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        resource.stream(self)
                    return
                etag = '"' + hashlib.sha256(resource.body).hexdigest()[:16] + '"'
                if resource.status == 200 and headers.get("if-none-match") == etag:
                    server.log.append(Seen(path, 304, headers))
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                server.log.append(Seen(path, resource.status, headers))
                self.send_response(resource.status)
                self.send_header("Content-Type", resource.content_type)
                self.send_header("Content-Length", str(len(resource.body)))
                if resource.status == 200:
                    self.send_header("ETag", etag)
                    self.send_header("Last-Modified", server.LAST_MODIFIED)
                for key, value in resource.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(resource.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def serve_file(self, path: str, name: str, content_type: str = RSS) -> str:
        self.resources[path] = Resource((DATA / name).read_bytes(), content_type)
        return self.url(path)

    def requests_for(self, path: str) -> list[Seen]:
        return [seen for seen in self.log if seen.path == path]


@pytest.fixture
def server() -> Iterator[FixtureServer]:
    """A fixture HTTP server on 127.0.0.1, stopped after the test."""
    fixture = FixtureServer()
    fixture.thread.start()
    yield fixture
    fixture.httpd.shutdown()
    fixture.httpd.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/feed.xml"


def drip(handler: BaseHTTPRequestHandler) -> None:
    """A server that answers at once, then sends one byte every 0.2 s."""
    handler.send_response(200)
    handler.send_header("Content-Type", RSS)
    handler.end_headers()
    for _ in range(100):
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.2)


def endless(handler: BaseHTTPRequestHandler) -> None:
    """50 MB of feed-looking bytes with no Content-Length."""
    handler.send_response(200)
    handler.send_header("Content-Type", RSS)
    handler.end_headers()
    handler.wfile.write(b"<?xml version='1.0'?><rss version='2.0'><channel>")
    chunk = b"<item><title>Encore</title></item>" * 2000
    for _ in range(50 * 1024 * 1024 // len(chunk)):
        handler.wfile.write(chunk)


def declared_huge(handler: BaseHTTPRequestHandler) -> None:
    """Announces 50 MB up front."""
    handler.send_response(200)
    handler.send_header("Content-Type", RSS)
    handler.send_header("Content-Length", str(50 * 1024 * 1024))
    handler.end_headers()
    handler.wfile.write(b"<rss>")


def count_articles() -> int:
    return db.session.scalar(select(func.count(Article.id))) or 0


def test_fetch_sends_user_agent_and_follows_a_few_redirects(server: FixtureServer) -> None:
    server.serve_file("/feed.xml", "rss2.xml")
    for hop in range(1, 8):
        target = "/feed.xml" if hop == 1 else f"/hop{hop - 1}"
        server.resources[f"/hop{hop}"] = Resource(status=302, headers={"Location": target})
    settings = FetchSettings(timeout=5, max_redirects=3, user_agent="digest-test/1.0")
    fetched = fetch_url(server.url("/hop3"), settings)
    assert fetched.status == 200 and fetched.url == server.url("/feed.xml")
    assert fetched.content == (DATA / "rss2.xml").read_bytes()
    assert server.requests_for("/feed.xml")[0].headers["user-agent"] == "digest-test/1.0"
    with pytest.raises(ReadError, match="more than 3 redirects"):
        fetch_url(server.url("/hop7"), settings)
    again = fetch_url(server.url("/feed.xml"), settings, etag=fetched.etag)
    assert again.not_modified and again.content == b""


def test_fetch_limits(server: FixtureServer) -> None:
    server.resources["/slow"] = Resource(stream=drip)
    server.resources["/endless"] = Resource(stream=endless)
    server.resources["/declared"] = Resource(stream=declared_huge)
    server.resources["/gone"] = Resource(b"Not here", "text/plain", status=410)
    settings = FetchSettings(timeout=1, max_bytes=1024 * 1024)
    with pytest.raises(ReadError, match="timed out"):
        fetch_url(server.url("/slow"), settings)
    # A generous deadline, so that only the size cap can stop this one on a busy machine.
    roomy = FetchSettings(timeout=60, max_bytes=1024 * 1024)
    with pytest.raises(ReadError, match="too large"):
        fetch_url(server.url("/endless"), roomy)
    with pytest.raises(ReadError, match="too large: 52428800 bytes"):
        fetch_url(server.url("/declared"), settings)
    with pytest.raises(ReadError, match="HTTP 410"):
        fetch_url(server.url("/gone"), settings)
    with pytest.raises(ReadError, match="cannot connect"):
        fetch_url(closed_port_url(), settings)
    with pytest.raises(ReadError, match="not an http"):
        fetch_url("file:///etc/passwd", settings)


def test_feed_source_is_ingested_then_costs_one_304(app: Flask, server: FixtureServer) -> None:
    url = server.serve_file("/rss.xml", "rss2.xml")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["sources", "add", url])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["ingest"])
    assert result.exit_code == 0, result.output
    assert count_articles() == 4
    source = db.session.scalars(select(Source)).one()
    assert (source.kind, source.status, source.name) == (
        "feed",
        "ok",
        "Le Courrier de l\u2019Atlas",
    )
    assert source.etag and source.last_modified == FixtureServer.LAST_MODIFIED
    liga = db.session.scalars(select(Article).where(Article.title.like("Real Madrid%"))).one()
    assert liga.language == "es" and liga.url == "https://courrier.example/sport/liga"
    assert liga.published_at is not None
    assert liga.published_at.astimezone(dt.UTC) == dt.datetime(2024, 5, 5, 19, 0, tzinfo=dt.UTC)

    result = runner.invoke(args=["ingest"])
    assert result.exit_code == 0, result.output
    assert "unchanged" in result.output
    second = server.requests_for("/rss.xml")[-1]
    assert second.status == 304
    assert second.headers["if-none-match"] == source.etag
    assert second.headers["if-modified-since"] == FixtureServer.LAST_MODIFIED
    assert count_articles() == 4

    body = (
        (DATA / "rss2.xml")
        .read_text(encoding="utf-8")
        .replace(
            "<item>",
            "<item><title>Nouvelle dépêche du soir</title><guid>courrier-9999</guid></item><item>",
            1,
        )
    )
    server.resources["/rss.xml"].body = body.encode("utf-8")
    result = runner.invoke(args=["ingest"])
    assert result.exit_code == 0, result.output
    assert server.requests_for("/rss.xml")[-1].status == 200
    assert count_articles() == 5


def test_same_story_in_two_feeds_is_stored_once(app: Flask, server: FixtureServer) -> None:
    rss = server.serve_file("/rss.xml", "rss2.xml")
    atom = server.serve_file("/atom.xml", "atom.xml", "application/atom+xml")
    report = ingest_locations(db.session(), [rss, atom], NOW)
    assert report.ok, report.failed
    assert count_articles() == 5
    tanger = db.session.scalars(select(Article).where(Article.title.like("Tanger Med%"))).one()
    assert sorted(source.location for source in tanger.sources) == sorted([rss, atom])
    # Re-reading both adds nothing and keeps one row per story.
    server.resources["/rss.xml"].body += b"\n"
    server.resources["/atom.xml"].body += b"\n"
    again = ingest_locations(db.session(), [rss, atom], NOW + dt.timedelta(hours=1))
    assert again.ok and again.added == 0 and count_articles() == 5


def test_pages_and_text_dumps_over_http(app: Flask, server: FixtureServer) -> None:
    page = server.serve_file("/economie/emprunt", "article.html", "text/html; charset=utf-8")
    text = (DATA / "two_articles.txt").read_text(encoding="utf-8").replace("\n", "\r\n")
    server.resources["/dump.txt"] = Resource(
        text.encode("cp1252"), "text/plain; charset=windows-1252"
    )
    # The server says latin-1 but sends UTF-8: the bytes win.
    rss091 = (DATA / "rss091.xml").read_bytes()
    server.resources["/breves.xml"] = Resource(rss091, "application/rss+xml; charset=iso-8859-1")
    report = ingest_locations(
        db.session(), [page, server.url("/dump.txt"), server.url("/breves.xml")], NOW
    )
    assert report.ok, report.failed
    article = db.session.scalars(select(Article).where(Article.url == page)).one()
    assert article.title == "Le Trésor lance un emprunt obligataire de 5 milliards"
    assert article.author == "Salma Benali"
    assert article.source_name == "Le Courrier de l'Atlas"
    assert article.blocks is not None and len(article.blocks) == 6
    assert all("steal" not in block["text"] for block in article.blocks)
    budget = db.session.scalars(
        select(Article).where(Article.title.like("Budget : l'État lance%"))
    ).one()
    assert budget.source_name == "Le Matin" and budget.blocks is not None
    breves = db.session.scalars(
        select(Article).where(Article.url == "http://rapides.example/breve/1")
    ).one()
    assert breves.title == "La sécheresse pèse sur la campagne agricole"
    assert breves.summary == "Les précipitations restent inférieures à la moyenne."
    # One page, six items from the dump, two brèves.
    assert count_articles() == 9


def test_each_broken_source_fails_alone(app: Flask, server: FixtureServer) -> None:
    # Short enough to keep the slow source's test quick, long enough for 1 MB on loopback
    # to arrive first on a busy machine.
    app.config["INGEST_TIMEOUT"] = 3
    app.config["INGEST_MAX_BYTES"] = 1024 * 1024
    good = server.serve_file("/good.xml", "rss2.xml")
    ingest_locations(db.session(), [good], NOW)
    assert count_articles() == 4
    whole = (DATA / "rss2.xml").read_bytes()
    server.resources["/truncated.xml"] = Resource(whole[: len(whole) * 2 // 3])
    server.resources["/binary.xml"] = Resource(bytes(range(256)) * 64, "application/octet-stream")
    server.resources["/empty.xml"] = Resource(b"")
    server.resources["/error.xml"] = Resource(b"oops", "text/plain", status=500)
    server.resources["/slow.xml"] = Resource(stream=drip)
    server.resources["/huge.xml"] = Resource(stream=endless)
    server.resources["/loop"] = Resource(status=302, headers={"Location": "/loop"})
    expected = {
        server.url("/truncated.xml"): "truncated",
        server.url("/binary.xml"): "binary",
        server.url("/empty.xml"): "empty",
        server.url("/error.xml"): "HTTP 500",
        server.url("/slow.xml"): "timed out",
        server.url("/huge.xml"): "too large",
        server.url("/loop"): "redirects",
        closed_port_url(): "cannot connect",
    }
    for location in [*expected, good]:
        add_source(db.session(), location)
    db.session.commit()

    result = app.test_cli_runner().invoke(args=["ingest"])
    assert result.exit_code == 1
    assert "8 of 9 source(s) failed" in result.output
    assert "Traceback" not in result.output
    db.session.expire_all()
    for source in db.session.scalars(select(Source)):
        if source.location == good:
            # Read once before this run: the server answered 304.
            assert source.status == "unchanged" and source.last_error is None
        else:
            assert source.status == "error", source.location
            assert expected[source.location] in (source.last_error or ""), source.last_error
            assert source.last_fetched_at is not None
    assert count_articles() == 4
    # `sources check` sees the same failures and stores no articles.
    check = app.test_cli_runner().invoke(args=["sources", "check", good, server.url("/empty.xml")])
    assert check.exit_code == 1 and "FAILED" in check.output and "4 items" in check.output


def make_big_feed(count: int) -> bytes:
    """An RSS 2.0 feed of ``count`` distinct items."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        "<title>Fil massif</title><link>https://fil.example/</link><description>d</description>"
    ]
    start = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    for number in range(count):
        when = (start - dt.timedelta(minutes=number)).strftime("%a, %d %b %Y %H:%M:%S +0000")
        parts.append(
            f"<item><title>Dépêche n°{number} : le conseil vote la réforme</title>"
            f"<link>https://fil.example/d/{number}</link><guid>fil-{number}</guid>"
            f"<pubDate>{when}</pubDate><description><![CDATA[<p>Résumé&nbsp;{number}.</p>]]>"
            "</description></item>"
        )
    parts.append("</channel></rss>")
    return "\n".join(parts).encode("utf-8")


def test_a_feed_with_10000_items(app: Flask, server: FixtureServer) -> None:
    server.resources["/big.xml"] = Resource(make_big_feed(10_000))
    report = ingest_locations(db.session(), [server.url("/big.xml")], NOW)
    assert report.ok, report.failed
    assert report.added == 10_000 and count_articles() == 10_000
    distinct = db.session.scalar(select(func.count(func.distinct(Article.guid))))
    assert distinct == 10_000


def test_dry_run_over_http_prints_and_stores_nothing(app: Flask, server: FixtureServer) -> None:
    url = server.serve_file("/rss.xml", "rss2.xml")
    result = app.test_cli_runner().invoke(args=["ingest", "--dry-run", "--json", url])
    assert result.exit_code == 0, result.output
    (source,) = json.loads(result.output)["sources"]
    assert source["kind"] == "feed" and len(source["headlines"]) == 4
    (article,) = source["articles"]  # the one item with full content
    assert article["title"].startswith("Budget 2025")
    assert article["paragraphs"][1] == "Des taux attractifs"
    assert article["date"] == "2024-05-03"
    assert count_articles() == 0
    assert db.session.scalar(select(func.count(Source.id))) == 0
