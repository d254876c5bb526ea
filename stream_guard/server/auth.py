"""Who may connect: bearer tokens, Twilio request signatures, AudioHook API keys, and browser origins.

All checks run in the HTTP upgrade request, before a websocket exists, so an unauthenticated peer never gets a
parser or a stream. Comparisons are constant-time. Platform-native checks are used where the platform has one:

- Twilio signs every request with ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, full URL)) (for the
  websocket GET there are no POST parameters to append); the URL is the public one Twilio connected to, so
  behind a proxy set ``public_url``.
- Genesys AudioHook sends the configured API key in ``X-API-KEY`` and, when the integration has a client
  secret, signs the upgrade with HTTP Message Signatures (RFC 9421, HMAC-SHA256 over the request target, host,
  the ``audiohook-*`` headers and the API key, with ``created`` at most 10 s old and a nonce).
- Every other endpoint takes ``Authorization: Bearer <token>`` or, for platforms and browsers that cannot set
  headers on a websocket, ``?token=<token>`` in the URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any
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


# -- Genesys AudioHook: HTTP Message Signatures (RFC 9421, as used by AudioHook) --
AUDIOHOOK_COMPONENTS = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
_MAX_SKEW_S = 3.0
_MAX_AGE_S = 10.0


class _SFParser:
    """Just enough of RFC 8941 structured fields for ``signature-input`` and ``signature`` dictionaries."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def error(self, what: str) -> ValueError:
        return ValueError(f"malformed structured field: {what} at {self.i}")

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def key(self) -> str:
        start = self.i
        while self.i < len(self.s) and (self.s[self.i].isalnum() or self.s[self.i] in "_-.*"):
            self.i += 1
        if start == self.i:
            raise self.error("key expected")
        return self.s[start : self.i]

    def bare(self) -> str | int | bytes | bool:
        c = self.s[self.i : self.i + 1]
        if c == '"':
            self.i += 1
            out = []
            while self.i < len(self.s):
                ch = self.s[self.i]
                self.i += 1
                if ch == "\\":
                    out.append(self.s[self.i : self.i + 1])
                    self.i += 1
                elif ch == '"':
                    return "".join(out)
                else:
                    out.append(ch)
            raise self.error("unterminated string")
        if c == ":":
            end = self.s.index(":", self.i + 1)
            raw = self.s[self.i + 1 : end]
            self.i = end + 1
            return base64.b64decode(raw, validate=True)
        if c == "?":
            self.i += 2
            return self.s[self.i - 1] == "1"
        start = self.i
        while self.i < len(self.s) and (self.s[self.i].isdigit() or self.s[self.i] == "-"):
            self.i += 1
        if start == self.i:
            raise self.error("value expected")
        return int(self.s[start : self.i])

    def params(self) -> list[tuple[str, Any]]:
        out = []
        while self.s[self.i : self.i + 1] == ";":
            self.i += 1
            self.ws()
            k = self.key()
            v: Any = True
            if self.s[self.i : self.i + 1] == "=":
                self.i += 1
                v = self.bare()
            out.append((k, v))
        return out

    def dictionary(self) -> dict[str, tuple[Any, list[tuple[str, Any]]]]:
        out: dict[str, tuple[Any, list[tuple[str, Any]]]] = {}
        self.ws()
        while self.i < len(self.s):
            k = self.key()
            if self.s[self.i : self.i + 1] != "=":
                raise self.error("'=' expected")
            self.i += 1
            if self.s[self.i : self.i + 1] == "(":
                self.i += 1
                items = []
                while True:
                    self.ws()
                    if self.s[self.i : self.i + 1] == ")":
                        self.i += 1
                        break
                    items.append((self.bare(), self.params()))
                value: Any = items
            else:
                value = self.bare()
            out[k] = (value, self.params())
            self.ws()
            if self.s[self.i : self.i + 1] == ",":
                self.i += 1
                self.ws()
            elif self.i < len(self.s):
                raise self.error("',' expected")
        return out


def _serialize_param_value(v: Any) -> str:
    if isinstance(v, bool):
        return "?1" if v else "?0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):
        return ":" + base64.b64encode(v).decode() + ":"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def signature_params(components: Iterable[str], params: Iterable[tuple[str, Any]]) -> str:
    """The ``@signature-params`` value: the covered components and the signature parameters, serialized."""
    inner = "(" + " ".join(_serialize_param_value(c) for c in components) + ")"
    return inner + "".join(f";{k}={_serialize_param_value(v)}" for k, v in params)


def signature_base(
    components: Iterable[str], params: Iterable[tuple[str, Any]], headers: Mapping[str, str], target: str
) -> str:
    """The text an RFC 9421 signature covers (one ``"name": value`` line per component, then the params)."""
    lines = []
    comps = list(components)
    for name in comps:
        if name == "@request-target":
            value = target
        elif name == "@authority":
            value = (headers.get("Host") or headers.get("host") or "").strip().lower()
        elif name.startswith("@"):
            raise ValueError(f"derived component {name} is not supported")
        else:
            raw = headers.get(name)
            if raw is None:
                raise ValueError(f"header {name} is missing")
            value = " ".join(raw.strip().split("\r\n"))
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {signature_params(comps, params)}')
    return "\n".join(lines)


def check_audiohook_signature(
    headers: Mapping[str, str], target: str, secrets: Mapping[str, str], now: float
) -> str | None:
    """Verify an AudioHook upgrade request; returns None when valid, else the reason.

    ``secrets`` maps each accepted API key to its client secret (base64, as configured in Genesys). A key
    with an empty secret accepts unsigned requests, as Genesys integrations without a client secret send
    none.
    """
    api_key = headers.get("X-API-KEY") or headers.get("x-api-key")
    if not any_match(api_key, secrets):
        return "invalid or missing X-API-KEY"
    assert api_key is not None
    secret_b64 = next(v for k, v in secrets.items() if _eq(k, api_key))
    sig_input = headers.get("Signature-Input") or headers.get("signature-input")
    sig_header = headers.get("Signature") or headers.get("signature")
    if not sig_input and not sig_header:
        return None if not secret_b64 else "request is not signed (signature and signature-input missing)"
    try:
        inputs = _SFParser(sig_input or "").dictionary()
        sigs = _SFParser(sig_header or "").dictionary()
        label, (items, params) = next(iter(inputs.items()))
        signature = sigs[label][0]
        components = [str(v) for v, _ in items]
        p = dict(params)
        key = base64.b64decode(secret_b64, validate=True)
    except (ValueError, KeyError, StopIteration, TypeError):
        return "malformed signature or signature-input header"
    if not isinstance(signature, bytes):
        return "malformed signature header"
    missing = [c for c in AUDIOHOOK_COMPONENTS if c not in components]
    if missing:
        return f"signature does not cover {', '.join(missing)}"
    if p.get("alg", "hmac-sha256") != "hmac-sha256":
        return "unsupported signature algorithm"
    if not isinstance(p.get("nonce"), str) or len(p["nonce"]) < 22:
        return "signature nonce missing or too short"
    if p.get("keyid") != api_key:
        return "signature keyid does not match X-API-KEY"
    created, expires = p.get("created"), p.get("expires")
    if (
        not isinstance(created, int)
        or created > now + _MAX_SKEW_S
        or created + _MAX_AGE_S < now - _MAX_SKEW_S
    ):
        return "signature too old, from the future, or without 'created'"
    if isinstance(expires, int) and expires < now - _MAX_SKEW_S:
        return "signature expired"
    try:
        base = signature_base(components, params, headers, target)
    except ValueError as exc:
        return f"cannot verify signature ({exc})"
    expected = hmac.new(key, base.encode(), hashlib.sha256).digest()
    return None if hmac.compare_digest(expected, signature) else "signature does not match"
