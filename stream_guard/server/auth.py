"""Who may connect: bearer tokens, Twilio request signatures, AudioHook API keys, and browser origins.

All checks run in the HTTP upgrade request, before a websocket exists, so an unauthenticated peer never gets a
parser or a stream. Comparisons are constant-time. Platform-native checks are used where the platform has one:

- Twilio signs every request with ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, full URL)) (for the
  websocket GET there are no POST parameters to append); the URL is the public one Twilio connected to, so
  behind a proxy set ``public_url``.
- Genesys AudioHook sends the configured API key in ``X-API-KEY`` (it also signs requests with HTTP Message
  Signatures; stream-guard checks the API key).
- Every other endpoint takes ``Authorization: Bearer <token>`` or, for platforms and browsers that cannot set
  headers on a websocket, ``?token=<token>`` in the URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs, urlsplit, urlunsplit


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def any_match(value: str | None, candidates: Iterable[str]) -> bool:
    if not value:
        return False
    matched = False
    for c in candidates:
        matched |= _eq(value, c)  # no early exit: time does not reveal which token matched
    return matched


def bearer_token(headers: Mapping[str, str], path: str) -> str | None:
    """The token from ``Authorization: Bearer`` or the ``token`` query parameter."""
    value = headers.get("Authorization") or headers.get("authorization")
    if value and value.lower().startswith("bearer "):
        return value[7:].strip()
    query = parse_qs(urlsplit(path).query)
    tokens = query.get("token")
    return tokens[0] if tokens else None


def twilio_signature(auth_token: str, url: str) -> str:
    """What Twilio puts in ``X-Twilio-Signature`` for a request to ``url`` without POST parameters."""
    mac = hmac.new(auth_token.encode(), url.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def check_twilio(auth_token: str, signature: str | None, url: str) -> bool:
    """Validate a Twilio signature; like Twilio's own validator, accept the URL with and without its port."""
    if not signature:
        return False
    parts = urlsplit(url)
    variants = {url}
    if parts.port is not None:
        variants.add(urlunsplit(parts._replace(netloc=parts.hostname or "")))
    else:
        default = 443 if parts.scheme in ("https", "wss") else 80
        variants.add(urlunsplit(parts._replace(netloc=f"{parts.hostname}:{default}")))
    return any(any_match(signature, [twilio_signature(auth_token, v)]) for v in variants)


def origin_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    """Non-browser clients send no Origin and pass; a browser's Origin must be listed (``*`` allows all)."""
    if origin is None:
        return True
    allowed = list(allowed)
    return "*" in allowed or origin in allowed
