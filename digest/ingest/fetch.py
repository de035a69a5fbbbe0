"""HTTP fetching for sources: timeouts, a size cap, a redirect limit, conditional GET."""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

import requests
import urllib3

from digest.ingest.errors import ReadError

# Says who is fetching, so a publisher can tell a daily digest from a scraper.
DEFAULT_USER_AGENT = "digest/0.1 (daily news digest; source fetcher)"


@dataclass(frozen=True)
class FetchSettings:
    """Limits for one HTTP fetch, taken from the app config at the edge."""

    timeout: float = 10.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT


@dataclass
class Fetched:
    """The body of a response (or a 304), with what the next conditional GET needs."""

    url: str
    status: int
    content: bytes
    content_type: str | None
    charset: str | None
    etag: str | None
    last_modified: str | None

    @property
    def not_modified(self) -> bool:
        """The server said the resource is unchanged since our last fetch."""
        return self.status == 304


def _content_type(header: str | None) -> tuple[str | None, str | None]:
    if not header:
        return None, None
    message = Message()
    message["content-type"] = header
    charset = message.get_param("charset")
    return message.get_content_type(), charset if isinstance(charset, str) else None


def fetch_url(
    url: str,
    settings: FetchSettings,
    etag: str | None = None,
    last_modified: str | None = None,
) -> Fetched:
    """GET ``url`` within ``settings``; raises ``ReadError`` with a message an editor can act on.

    ``timeout`` bounds the whole transfer, not only each read, so a server that drips
    one byte at a time cannot hold the morning's run.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise ReadError(f"not an http(s) URL: {url}")
    headers = {
        "User-Agent": settings.user_agent,
        "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, "
        "text/html;q=0.8, text/plain;q=0.7, */*;q=0.5",
    }
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + settings.timeout
    with requests.Session() as http:
        http.max_redirects = settings.max_redirects
        try:
            response = http.get(
                url, headers=headers, timeout=settings.timeout, stream=True, allow_redirects=True
            )
        except requests.TooManyRedirects as error:
            raise ReadError(f"more than {settings.max_redirects} redirects from {url}") from error
        except requests.Timeout as error:
            raise ReadError(f"timed out after {settings.timeout:g}s: {url}") from error
        except requests.ConnectionError as error:
            raise ReadError(
                f"cannot connect to {urlsplit(url).netloc}: {_reason(error)}"
            ) from error
        except requests.RequestException as error:
            raise ReadError(f"request failed for {url}: {_reason(error)}") from error
        with response:
            if urlsplit(response.url).scheme not in ("http", "https"):
                raise ReadError(f"redirected to a non-http URL: {response.url}")
            content_type, charset = _content_type(response.headers.get("Content-Type"))
            result = Fetched(
                url=response.url,
                status=response.status_code,
                content=b"",
                content_type=content_type,
                charset=charset,
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
            )
            if response.status_code == 304:
                return result
            if response.status_code >= 400:
                raise ReadError(
                    f"HTTP {response.status_code} {response.reason or ''} from {url}".strip()
                )
            if response.status_code != 200:
                raise ReadError(f"unexpected HTTP {response.status_code} from {url}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > settings.max_bytes:
                raise ReadError(
                    f"response too large: {int(declared)} bytes (limit {settings.max_bytes})"
                )
            result.content = _read_capped(response, settings, deadline, url)
            return result


def _read_capped(
    response: requests.Response, settings: FetchSettings, deadline: float, url: str
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            # read1 returns what one socket read gives, so the deadline is checked even
            # when a server sends a byte at a time (a full-size read would wait for all).
            chunk = response.raw.read1(65536, decode_content=True)
            if not chunk:
                break
            size += len(chunk)
            if size > settings.max_bytes:
                raise ReadError(f"response too large: over {settings.max_bytes} bytes from {url}")
            if time.monotonic() > deadline:
                raise ReadError(f"timed out after {settings.timeout:g}s reading {url}")
            chunks.append(chunk)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
        raise ReadError(f"transfer failed from {url}: {_reason(error)}") from error
    return b"".join(chunks)


def _reason(error: Exception) -> str:
    """The innermost cause, without urllib3's long wrapper text."""
    cause: BaseException = error
    while cause.__context__ is not None and cause.__context__ is not cause:
        cause = cause.__context__
    text = str(cause) or type(cause).__name__
    return text if len(text) < 300 else text[:297] + "..."
