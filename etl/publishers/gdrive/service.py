"""The Drive v3 service object: the bundled discovery document, the authorized HTTP client and the retry seam."""

from __future__ import annotations

import json
from typing import Any

import google_auth_httplib2
from google.auth.credentials import Credentials
from googleapiclient.discovery import Resource, build_from_document
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.http import build_http

from etl.publishers.gdrive.compat import Sleep, request_builder
from utils.config import shown
from utils.errors import ConfigError


def discovery_document(api_root: str) -> dict[str, Any]:
    """The Drive v3 discovery document shipped with google-api-python-client, with every root URL set to `api_root`.

    `client_options.api_endpoint` would not do: googleapiclient builds upload URLs as rootUrl + "upload/" +
    servicePath and only swaps their host for the endpoint's, keeping https.
    """
    if not api_root.startswith(("https://", "http://")):
        raise ConfigError(f"GDRIVE_API_ROOT={shown('GDRIVE_API_ROOT', api_root)!r} is invalid: expected an "
                          "http(s):// URL such as https://www.googleapis.com/")
    document = json.loads(get_static_doc("drive", "v3"))
    root = api_root if api_root.endswith("/") else api_root + "/"
    document.update(rootUrl=root, mtlsRootUrl=root, baseUrl=root + document["servicePath"])
    return document


def build_service(credentials: Credentials, api_root: str, sleep: Sleep) -> Resource:
    """A Drive v3 client sending its requests to `api_root` and waiting between retries with `sleep`."""
    # build_http() stops httplib2 from following 308, the status of an unfinished resumable upload.
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=build_http())
    return build_from_document(discovery_document(api_root), http=http, requestBuilder=request_builder(sleep))
