"""What the Drive publisher relies on that google-auth and google-api-python-client do not promise.

Each item below overrides or sets something private (a name starting with "_") or depends on how a library
method is used inside the library. Nothing else in etl/publishers/gdrive touches library internals, and the
`test_compat_*` tests in tests/test_gdrive.py fail with a message naming the item when an upgrade removes or
bypasses one. Each item names the library version it was checked against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.oauth2 import service_account
from googleapiclient.http import HttpRequest, MediaFileUpload

Sleep = Callable[[float], None]


class ServiceAccountCredentials(service_account.Credentials):
    """A service-account credential without google-auth's Regional Access Boundary lookup.

    google-auth >= 2.55 starts a background thread after each token refresh that asks
    iamcredentials.googleapis.com for the account's allowed locations (up to 6 attempts, failing open). There is
    no public switch (googleapis/google-cloud-python#17653); `_is_regional_access_boundary_lookup_required`, called
    by `Credentials._maybe_start_regional_access_boundary_refresh` before each request, is the hook google-auth's
    own user credentials override to opt out. The pipeline only calls the global Drive endpoint, so the lookup
    would be an unrelated extra request to Google from every task, and it would leave 127.0.0.1 when
    GDRIVE_API_ROOT points at a test fake. Checked against google-auth 2.62.2.
    """

    def _is_regional_access_boundary_lookup_required(self) -> bool:
        """Never look up the account's Regional Access Boundary."""
        return False


class ChunkBytesUpload(MediaFileUpload):
    """A resumable file upload whose chunks are sent as bytes.

    `has_stream` is public, but what it changes is internal: `HttpRequest.next_chunk` sends a slice of the open
    file when it is True and `getbytes(begin, length)` when it is False. As a stream, when googleapiclient retries
    a chunk after a 5xx or 429, that slice has already been read to its end, so the retry announces the chunk's
    length and sends nothing (the request then hangs until a timeout). Bytes read with `getbytes` are sent again
    whole. Checked against google-api-python-client 2.202.0.
    """

    def has_stream(self) -> bool:
        """Tell `next_chunk` to read each chunk with `getbytes`."""
        return False


def request_builder(sleep: Sleep) -> Callable[..., HttpRequest]:
    """Requests whose retry backoff waits with `sleep`, by setting the private `HttpRequest._sleep`.

    googleapiclient calls `self._sleep` between the retries of `execute` and `next_chunk` (its source calls it a
    "stub for testing"); there is no public parameter for it. Tests pass a function that records the delays.
    Checked against google-api-python-client 2.202.0.
    """

    def build(*args: Any, **kwargs: Any) -> HttpRequest:
        request = HttpRequest(*args, **kwargs)
        request._sleep = sleep
        return request

    return build
