"""The one redaction rule for URLs that carry secrets: what a log line, an error, a manifest or `make settings` may
show of them. Which setting gets which rule is in its field's metadata (utils/config.py, `redact=`)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

URL = "url"  # drop user:password@, ?query and #fragment: where tokens and passwords ride
ORIGIN = "origin"  # keep scheme://host[:port] only: a webhook's path is its secret (Slack, Telegram bot tokens)
DEFAULT_PORTS = {"http": 80, "https": 443}


def redact_url(url: str, keep: str = URL) -> str:
    """`url` without its secret parts under the rule `keep` (URL or ORIGIN); an empty value stays empty."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<an unparseable URL>"
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    if keep == ORIGIN:
        return f"{parts.scheme}://{netloc}" if parts.scheme else "<not a URL>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def secret_parts(url: str, keep: str = URL) -> list[str]:
    """The pieces of `url` that `redact_url` hides, longest first (to scrub them from foreign error texts)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url] if url else []
    pieces = [parts.netloc.rpartition("@")[0], parts.password or "", parts.query, parts.fragment]
    if keep == ORIGIN:
        pieces.append(parts.path)
    return sorted({piece for piece in pieces if piece and piece != "/"}, key=len, reverse=True)


def scrub(text: str, url: str, keep: str = URL) -> str:
    """`text` (e.g. a library's error message) with `url` shown redacted and none of its secret parts left."""
    if not url:
        return text
    text = text.replace(url, redact_url(url, keep))
    for piece in secret_parts(url, keep):
        text = text.replace(piece, "***")
    return text


def origin(url: str) -> tuple[str, str, int | None]:
    """The origin of `url`, the one place credentials written for it may go: scheme, host and port (the scheme's
    default port when none is written); ValueError for a port that is not a number."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname or "", parts.port or DEFAULT_PORTS.get(scheme)
