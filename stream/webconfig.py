"""The web-config file that locks the HTTP port: the format of the Prometheus exporter-toolkit
(docs/web-configuration.md in github.com/prometheus/exporter-toolkit), so that one file serves
lrcn and the exporters beside it. The subset lrcn reads:

    tls_server_config:            # HTTPS instead of HTTP
      cert_file: server.crt       # relative paths are relative to this file, as there
      key_file: server.key
      client_ca_file: ca.crt      # optional: client certificates, with
      client_auth_type: RequireAndVerifyClientCert    # or VerifyClientCertIfGiven
      min_version: TLS12          # TLS10..TLS13 (default TLS12), max_version likewise
    basic_auth_users:             # user: bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')
      prometheus: $2b$10$...
    http_server_config:
      headers: {X-Frame-Options: deny, ...}   # the five the toolkit allows
      http2: true                 # accepted and ignored (HTTP/1.1 only)

Any other key, including the toolkit keys lrcn does not implement (rate_limit, cipher_suites,
client_allowed_sans, inline cert/key ...), is refused: silently ignoring a security setting
would leave the port less locked than its file says.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lrcn.stream.errors import LrcnError

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Python's ssl verifies every client certificate it asks for, so the toolkit's two policies that
# take a certificate without verifying it (RequestClientCert, RequireAnyClientCert) are refused.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
SECURITY_HEADERS = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
)
TOOLKIT_ONLY = {
    "rate_limit",
    "cert",
    "key",
    "client_ca",
    "client_allowed_sans",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
}
SECTIONS = {
    "tls_server_config": {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"},
    "http_server_config": {"headers", "http2"},
    "basic_auth_users": None,
}
GOOD_CHECKS_KEPT = 256
# bcrypt of a password nobody has (cost 10): checked for an unknown user too, so that the time
# of an answer does not tell which user names exist.
DUMMY_HASH = b"$2b$10$7xnVeAmOivIPKL7VdrZkeOF9K9MQ4LZ2gmWh5lEjwmUBkhpMedNVm"


@dataclass(frozen=True)
class TlsSettings:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = "TLS13"

    def context(self) -> ssl.SSLContext:
        """The server's SSLContext; a file that cannot be read or does not match is one LrcnError."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        context.maximum_version = TLS_VERSIONS[self.max_version]
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as err:
            raise LrcnError(
                f"web config: cannot load cert_file {self.cert_file} with key_file {self.key_file}: "
                f"{getattr(err, 'strerror', None) or err}"
            ) from None
        if self.client_ca_file is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ssl.SSLError) as err:
                raise LrcnError(
                    f"web config: cannot load client_ca_file {self.client_ca_file}: "
                    f"{getattr(err, 'strerror', None) or err}"
                ) from None
        context.verify_mode = CLIENT_AUTH[self.client_auth_type]
        return context


@dataclass(frozen=True)
class WebConfig:
    tls: TlsSettings | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: dict[str, str] = field(default_factory=dict)  # added to every answer


def load_web_config(path: str | Path) -> WebConfig:
    """Read and check a web-config file; any mistake is one LrcnError naming the file."""
    import yaml  # here, not above: only a locked port pays for the import

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except OSError as err:
        raise LrcnError(f"web config {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise LrcnError(f"web config {path}: not UTF-8 text") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f":{where.line + 1}" if where is not None else ""
        raise LrcnError(f"web config {path}{line}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    try:
        return parse_web_config(document or {}, path.parent)
    except LrcnError as err:
        raise LrcnError(f"web config {path}: {err}") from None


def parse_web_config(document, base: Path) -> WebConfig:
    """The checked WebConfig of a parsed YAML document; relative paths are taken from `base`."""
    section = _mapping(document, "the file")
    _known_keys(section, SECTIONS, "")
    tls = _tls(_mapping(section.get("tls_server_config") or {}, "tls_server_config"), base)
    http = _mapping(section.get("http_server_config") or {}, "http_server_config")
    _known_keys(http, SECTIONS["http_server_config"], "http_server_config.")
    if not isinstance(http.get("http2", True), bool):
        raise LrcnError("http_server_config.http2 must be true or false")
    headers = _mapping(http.get("headers") or {}, "http_server_config.headers")
    _known_keys(headers, SECURITY_HEADERS, "http_server_config.headers.")
    for name, value in headers.items():
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise LrcnError(f"http_server_config.headers.{name} must be one line of text")
    users = _mapping(section.get("basic_auth_users") or {}, "basic_auth_users")
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise LrcnError(f"basic_auth_users: user {user!r} must be a name without ':'")
        if not isinstance(hashed, str) or not _is_bcrypt(hashed):
            raise LrcnError(
                f"basic_auth_users.{user} must be a bcrypt hash ($2b$..., 60 characters), "
                f"as `htpasswd -nBC 10 \"\" | tr -d ':\\n'` prints"
            )
    return WebConfig(
        tls=tls,
        users={user: hashed.encode() for user, hashed in users.items()},
        headers={name: value for name, value in headers.items() if value},
    )


def _tls(section: dict, base: Path) -> TlsSettings | None:
    _known_keys(section, SECTIONS["tls_server_config"], "tls_server_config.")
    if not section:
        return None
    for key, value in section.items():
        if not isinstance(value, str) or not value:
            raise LrcnError(f"tls_server_config.{key} must be a non-empty string")
    for key in ("cert_file", "key_file"):
        if key not in section:
            raise LrcnError(f"tls_server_config needs {key}")
    for key, choices in (
        ("min_version", TLS_VERSIONS),
        ("max_version", TLS_VERSIONS),
        ("client_auth_type", CLIENT_AUTH),
    ):
        if key in section and section[key] not in choices:
            refused = (
                " (lrcn cannot take a client certificate it does not verify)"
                if section[key] in ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
                else ""
            )
            raise LrcnError(f"tls_server_config.{key} {section[key]!r} is not one of {', '.join(choices)}{refused}")
    settings = TlsSettings(**{key: base / value if key.endswith("_file") else value for key, value in section.items()})
    if TLS_VERSIONS[settings.min_version] > TLS_VERSIONS[settings.max_version]:
        raise LrcnError("tls_server_config: min_version is above max_version")
    if settings.client_ca_file is not None and settings.client_auth_type == "NoClientCert":
        raise LrcnError(
            "tls_server_config: client_ca_file without a client_auth_type "
            "(RequireAndVerifyClientCert or VerifyClientCertIfGiven)"
        )
    if settings.client_ca_file is None and settings.client_auth_type != "NoClientCert":
        raise LrcnError(f"tls_server_config: client_auth_type {settings.client_auth_type} needs a client_ca_file")
    return settings


def _mapping(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise LrcnError(f"{where} must be a mapping of keys to values")
    return value


def _known_keys(section: dict, known, prefix: str) -> None:
    if known is None:
        return
    for key in section:
        if key not in known:
            why = "an exporter-toolkit setting lrcn does not implement" if key in TOOLKIT_ONLY else "unknown"
            raise LrcnError(f"{prefix}{key}: {why} (known: {', '.join(sorted(known))})")


def _is_bcrypt(text: str) -> bool:
    return len(text) == 60 and text[:4] in ("$2a$", "$2b$", "$2y$") and text[4:6].isdigit() and text[6] == "$"


class BasicAuth:
    """Checks `Authorization: Basic ...` headers against bcrypt hashes.

    A good check is remembered (by a SHA-256 of user, hash and password, never the password), so
    a scrape every second costs one bcrypt, not one per scrape; a wrong password costs a bcrypt
    every time. Only one bcrypt runs at a time, as in the exporter-toolkit, so that a flood of bad
    passwords takes one core, not all of them.
    """

    def __init__(self, users: dict[str, bytes]):
        self.users = dict(users)
        self._good: set[bytes] = set()
        self._lock = threading.Lock()

    def check(self, header: str | None) -> bool:
        credentials = parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self.users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), hashed or DUMMY_HASH, password.encode()))).digest()
        if hashed is not None and key in self._good:
            return True
        with self._lock:
            # bcrypt.checkpw compares in constant time; an unknown user is checked against DUMMY_HASH.
            ok = _bcrypt_matches(password.encode(), hashed or DUMMY_HASH) and hashed is not None
        if ok:
            if len(self._good) >= GOOD_CHECKS_KEPT:
                self._good.clear()
            self._good.add(key)
        return ok


def _bcrypt_matches(password: bytes, hashed: bytes) -> bool:
    import bcrypt

    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # a password over bcrypt's 72 bytes, or a hash bcrypt cannot read
        return False


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic` header, None when it is not one.

    >>> parse_basic("Basic dTpwOnc="), parse_basic("Bearer x"), parse_basic("Basic !!")
    (('u', 'p:w'), None, None)
    """
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (user, password) if colon else None
