"""Credentials go only to the origin they were written for: `load` against real HTTP(S) servers on 127.0.0.1 (two
ports are two origins) that redirect, each recording the Authorization header it actually received."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from etl import load
from tests.support.data import BUNDLED_CSV
from tests.support.servers import serving

GOOD = BUNDLED_CSV.read_bytes()
USER, PASSWORD, TOKEN = "reader", "s3cret-pw", "tok-9f2"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode("ascii")
REDIRECTS = (301, 302, 303, 307, 308)


@dataclass
class Origin:
    """One server: the redirects it answers by path (anything else gets the CSV), and each request it received
    as (path, Authorization header or None)."""

    redirects: dict[str, tuple[int, str]] = field(default_factory=dict)
    received: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""

    def with_credentials(self, path: str) -> str:
        """This origin's `path` with DATA_URL's user:password@ and a token in the query."""
        scheme, rest = self.url.split("://")
        return f"{scheme}://{USER}:{PASSWORD}@{rest}{path}?token={TOKEN}"


def handler_for(origin: Origin, tls: ssl.SSLContext | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            if tls:
                self.request = tls.wrap_socket(self.request, server_side=True)
            super().setup()

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            origin.received.append((path, self.headers.get("Authorization")))
            status, location = origin.redirects.get(path, (200, ""))
            body = GOOD if status == 200 else b""
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def origin_server(tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> Iterator[Origin]:
    """A recording server on a free port of 127.0.0.1, named `host` in its URL; https when `tls` is given."""
    origin = Origin()
    with serving(handler_for(origin, tls)) as httpd:
        origin.url = f"{'https' if tls else 'http'}://{host}:{httpd.server_port}"
        yield origin


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server-side TLS context with a self-signed certificate for 127.0.0.1, which the client trusts (only it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # read by every new default client context
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def obtain(make_settings, url: str) -> load.LoadedData:
    """What `load` obtains from `url`; DATA_FALLBACK=true, so a refused redirect must be an error all the same."""
    return load.obtain(make_settings(data_url=url, download_retries=1))


@pytest.mark.parametrize("status", REDIRECTS)
def test_a_redirect_to_another_origin_is_followed_without_the_credentials(make_settings, status):
    with origin_server() as mirror, origin_server() as source:
        source.redirects["/data.csv"] = (status, f"{mirror.url}/mirror.csv")
        loaded = obtain(make_settings, source.with_credentials("/data.csv"))
    assert (loaded.source, loaded.content) == ("url", GOOD)
    assert source.received == [("/data.csv", BASIC)]
    assert mirror.received == [("/mirror.csv", None)]


@pytest.mark.parametrize("location", ["/moved.csv", "{url}/moved.csv", "{upper}/moved.csv"],
                         ids=["relative", "absolute", "upper-case-scheme-and-host"])
def test_credentials_follow_a_redirect_within_the_origin_and_no_further(make_settings, location):
    with origin_server() as mirror, origin_server() as source:
        upper = source.url.replace("http://", "HTTP://")
        source.redirects["/data.csv"] = (302, location.format(url=source.url, upper=upper))
        source.redirects["/moved.csv"] = (307, f"{mirror.url}/mirror.csv")
        assert obtain(make_settings, source.with_credentials("/data.csv")).content == GOOD
    assert source.received == [("/data.csv", BASIC), ("/moved.csv", BASIC)]
    assert mirror.received == [("/mirror.csv", None)]


def test_another_host_name_for_the_same_address_is_another_origin(make_settings):
    with origin_server() as source:
        source.redirects["/data.csv"] = (302, source.url.replace("127.0.0.1", "localhost") + "/moved.csv")
        assert obtain(make_settings, source.with_credentials("/data.csv")).content == GOOD
    assert source.received == [("/data.csv", BASIC), ("/moved.csv", None)]


def test_credentials_dropped_on_the_way_do_not_come_back(make_settings):
    with origin_server() as mirror, origin_server() as source:
        source.redirects["/data.csv"] = (302, f"{mirror.url}/hop.csv")
        mirror.redirects["/hop.csv"] = (307, f"{source.url}/back.csv")
        assert obtain(make_settings, source.with_credentials("/data.csv")).content == GOOD
    assert source.received == [("/data.csv", BASIC), ("/back.csv", None)]
    assert mirror.received == [("/hop.csv", None)]


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/BreastCancer.csv",
                                    "data:text/csv,a,b", "gopher://127.0.0.1/x"],
                         ids=["file", "ftp", "data", "gopher"])
def test_a_redirect_to_another_scheme_is_refused(make_settings, target):
    with origin_server() as source:
        source.redirects["/data.csv"] = (302, target)
        with pytest.raises(load.PermanentDownloadError, match=r"redirected to .*refused.*http\(s\) only") as error:
            obtain(make_settings, source.with_credentials("/data.csv"))
    assert source.received == [("/data.csv", BASIC)]  # not retried, no fallback
    assert PASSWORD not in str(error.value) and TOKEN not in str(error.value)
    assert "the bundled copy is not used" in str(error.value)


def test_https_to_http_is_refused_even_on_the_same_host(make_settings, tls):
    with origin_server() as plain, origin_server(tls) as secure:
        secure.redirects["/data.csv"] = (302, f"{plain.url}/data.csv")
        with pytest.raises(load.PermanentDownloadError, match="never from https to http") as error:
            obtain(make_settings, secure.with_credentials("/data.csv"))
    assert secure.received == [("/data.csv", BASIC)] and plain.received == []
    assert PASSWORD not in str(error.value) and TOKEN not in str(error.value)


def test_https_to_another_https_origin_drops_the_credentials(make_settings, tls):
    with origin_server(tls) as mirror, origin_server(tls) as secure:
        secure.redirects["/data.csv"] = (301, f"{mirror.url}/mirror.csv")
        assert obtain(make_settings, secure.with_credentials("/data.csv")).content == GOOD
    assert secure.received == [("/data.csv", BASIC)] and mirror.received == [("/mirror.csv", None)]
