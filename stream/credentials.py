"""Credentials never leave the process: `redact` gives the display form of any text that may hold a URL.

A camera URL carries its user and password (`rtsp://admin:s3cret@10.0.0.5/live`); only the
capture that opens it needs them. Everything else that shows a source (log lines, status
reasons, HTTP answers, error lines) shows `redact(text)`, where the user and password of every
URL are `***`, and so are the values of password-like query keys and GStreamer properties
(`?password=...`, `user-pw=...`).

>>> redact("connecting rtsp://admin:s3cret@10.0.0.5:554/live")
'connecting rtsp://***:***@10.0.0.5:554/live'
>>> redact("http://viewer@cam.local/mjpg and rtsp://a:p%40ss@[::1]/x?channel=1&password=hunter2")
'http://***@cam.local/mjpg and rtsp://***:***@[::1]/x?channel=1&password=***'
>>> redact("no URL here: 42 frames, user@example.com")
'no URL here: 42 frames, user@example.com'
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://userinfo@ -- userinfo runs to the last '@' before the host's end (a raw '@' in a
# password is common), never across whitespace, a quote or the start of the path.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#\"'<>]*)@")
# key=value where the key names a secret: URL query keys and GStreamer element properties.
_SECRET_VALUE = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])(?P<key>password|passwd|pwd|pass|user-pw|proxy-pw|token"
    r"|access_token|secret|api_key|apikey)=(?P<value>[^\s&;#\"'<>]+)"
)


def _mask_userinfo(match: re.Match) -> str:
    masked = f"{MASK}:{MASK}" if ":" in match["userinfo"] else MASK
    return f"{match['scheme']}{masked}@"


def redact(text: str) -> str:
    """`text` with every URL's user and password, and every password-like key's value, as `***`."""
    if "@" not in text and "=" not in text:  # the common case: nothing to look for
        return text
    text = _USERINFO.sub(_mask_userinfo, text)
    return _SECRET_VALUE.sub(lambda m: f"{m['key']}={MASK}", text)


def redact_value(value):
    """A JSON-ready value with every string in it redacted (dicts and lists walked); other
    objects become their redacted `str`."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value))
