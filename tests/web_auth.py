"""The exporter-toolkit web-config file and its basic-auth hashes, for the locked-port tests."""

from base64 import b64encode
from pathlib import Path

import bcrypt


def web_config(path: Path, tls: dict | None = None, users: dict | None = None, headers: dict | None = None) -> Path:
    lines = []
    if tls:
        lines += ["tls_server_config:"] + [f"  {key}: {value}" for key, value in tls.items()]
    if users:
        lines += ["basic_auth_users:"] + [f"  {user}: '{hashed}'" for user, hashed in users.items()]
    if headers:
        lines += ["http_server_config:", "  headers:"] + [f"    {name}: {value}" for name, value in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()  # cost 4: a fast test, same format


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}
