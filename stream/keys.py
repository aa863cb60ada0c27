"""CURVE key pairs for an encrypted publisher (or proxy) that admits only known clients.

Layout of a key folder (ZeroMQ certificate files, `zmq.auth.create_certificates`):

    server.key, server.key_secret        the publisher's (or proxy's) pair; give server.key to clients
    <client>.key, <client>.key_secret    one pair per client; give each its own
    authorized_clients/<client>.key      the subscribers admitted (`lrcn keys DIR --client NAME`)
    authorized_publishers/<name>.key     the publishers an `lrcn proxy` admits on its XSUB side
                                         (`lrcn keys DIR --publisher NAME`)

Subscribers and publishers have a list each, so a key handed to a dashboard cannot publish fake
events into a proxy. Removing a file from a list and sending SIGHUP revokes that key.

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
AUTHORIZED_PUBLISHERS = "authorized_publishers"
ROLES = {"client": AUTHORIZED, "publisher": AUTHORIZED_PUBLISHERS}  # who a pair is for -> its list


@dataclass(frozen=True)
class ServerKeys:
    public: bytes
    secret: bytes
    authorized_dir: Path  # public keys of the clients (subscribers) allowed in
    publishers_dir: Path  # a proxy's: public keys of the publishers allowed in (it may not exist)


@dataclass(frozen=True)
class ClientKeys:
    public: bytes
    secret: bytes
    server_public: bytes


def make_keys(directory, client: str = "client", role: str = "client") -> list[Path]:
    """Create the server pair (unless present) and a new pair named `client`, and authorize it
    as a subscriber (`role` "client") or as a publisher into a proxy ("publisher").
    Returns the files written. Raises LrcnError if a pair of that name already exists."""
    if not zmq.has("curve"):
        raise LrcnError("this libzmq has no CURVE support")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", client) or client == SERVER:
        raise LrcnError(f"client name must be letters, digits, _ . - and not 'server', got {client!r}")
    folder = Path(directory)
    if (folder / f"{client}.key").exists():
        raise LrcnError(f"keys for client {client!r} already exist in {folder}")
    if role not in ROLES:
        raise LrcnError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    listing = ROLES[role]
    (folder / AUTHORIZED).mkdir(parents=True, exist_ok=True)
    (folder / listing).mkdir(exist_ok=True)
    written = []
    names = [client] if (folder / f"{SERVER}.key_secret").exists() else [SERVER, client]
    for name in names:
        public, secret = zmq.auth.create_certificates(str(folder), name)
        os.chmod(secret, 0o600)
        written += [Path(public), Path(secret)]
    authorized = folder / listing / f"{client}.key"
    shutil.copyfile(folder / f"{client}.key", authorized)
    return written + [authorized]


def load_server_keys(directory) -> ServerKeys:
    folder = Path(directory)
    public, secret = _load(folder / f"{SERVER}.key_secret")
    if secret is None:
        raise LrcnError(f"no secret key in {folder / (SERVER + '.key_secret')}")
    if not (folder / AUTHORIZED).is_dir():
        raise LrcnError(f"no {AUTHORIZED}/ folder in {folder}: run `lrcn keys {folder}`")
    return ServerKeys(
        public=public, secret=secret, authorized_dir=folder / AUTHORIZED, publishers_dir=folder / AUTHORIZED_PUBLISHERS
    )


def load_proxy_keys(directory) -> ServerKeys:
    """The server pair and both lists, which a CURVE proxy needs (an empty list admits no one)."""
    keys = load_server_keys(directory)
    if not keys.publishers_dir.is_dir():
        raise LrcnError(
            f"no {AUTHORIZED_PUBLISHERS}/ folder in {directory}: run "
            f"`lrcn keys {directory} --publisher NAME` for each publisher"
        )
    return keys


def read_authorized(folder: Path) -> frozenset[bytes]:
    """The public keys (Z85 text, as in the files) in the certificate files of `folder`; LrcnError
    naming a file that is not one."""
    if not folder.is_dir():
        raise LrcnError(f"no folder of authorized keys: {folder}")
    keys = set()
    for path in sorted(folder.glob("*.key")):
        public, _ = _load(path)
        if len(public) != 40:
            raise LrcnError(f"not a CURVE public key: {path}")
        keys.add(public)
    return frozenset(keys)


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
