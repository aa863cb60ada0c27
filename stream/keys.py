"""CURVE key pairs for an encrypted publisher that admits only known subscribers.

Layout of a key folder (ZeroMQ certificate files, `zmq.auth.create_certificates`):

    server.key, server.key_secret        the publisher's pair; give server.key to subscribers
    <client>.key, <client>.key_secret    one pair per subscriber; give each its own
    authorized_clients/<client>.key      the public keys the publisher accepts

>>> make_keys("keys")                        # doctest: +SKIP
>>> publisher = Publisher(curve=load_server_keys("keys"))   # doctest: +SKIP
>>> subscriber = Subscriber(endpoint, curve=load_client_keys("keys"))   # doctest: +SKIP
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from lrcn.stream.errors import LrcnError

SERVER = "server"
AUTHORIZED = "authorized_clients"


@dataclass(frozen=True)
class ServerKeys:
    public: bytes
    secret: bytes
    authorized_dir: Path     # public keys of the clients allowed in


@dataclass(frozen=True)
class ClientKeys:
    public: bytes
    secret: bytes
    server_public: bytes


def make_keys(directory, client: str = "client") -> list[Path]:
    """Create the server pair (unless present) and a new client pair, and authorize the client.
    Returns the files written. Raises LrcnError if that client already exists."""
    if not zmq.has("curve"):
        raise LrcnError("this libzmq has no CURVE support")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", client) or client == SERVER:
        raise LrcnError(f"client name must be letters, digits, _ . - and not 'server', got {client!r}")
    folder = Path(directory)
    if (folder / f"{client}.key").exists():
        raise LrcnError(f"keys for client {client!r} already exist in {folder}")
    (folder / AUTHORIZED).mkdir(parents=True, exist_ok=True)
    written = []
    names = [client] if (folder / f"{SERVER}.key_secret").exists() else [SERVER, client]
    for name in names:
        public, secret = zmq.auth.create_certificates(str(folder), name)
        os.chmod(secret, 0o600)
        written += [Path(public), Path(secret)]
    authorized = folder / AUTHORIZED / f"{client}.key"
    shutil.copyfile(folder / f"{client}.key", authorized)
    return written + [authorized]


def load_server_keys(directory) -> ServerKeys:
    folder = Path(directory)
    public, secret = _load(folder / f"{SERVER}.key_secret")
    if secret is None:
        raise LrcnError(f"no secret key in {folder / (SERVER + '.key_secret')}")
    if not (folder / AUTHORIZED).is_dir():
        raise LrcnError(f"no {AUTHORIZED}/ folder in {folder}: run `lrcn keys {folder}`")
    return ServerKeys(public=public, secret=secret, authorized_dir=folder / AUTHORIZED)


def load_client_keys(directory, client: str = "client") -> ClientKeys:
    folder = Path(directory)
    public, secret = _load(folder / f"{client}.key_secret")
    if secret is None:
        raise LrcnError(f"no secret key in {folder / (client + '.key_secret')}")
    server_public, _ = _load(folder / f"{SERVER}.key")
    return ClientKeys(public=public, secret=secret, server_public=server_public)


def _load(path: Path) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise LrcnError(f"key file not found: {path}")
    try:
        return zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as err:
        raise LrcnError(f"not a ZeroMQ certificate: {path} ({err})") from None
