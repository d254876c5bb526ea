"""AudioHook upgrade authentication: API key plus RFC 9421 HMAC-SHA256 request signatures."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time

from serverkit import running
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from stream_guard.server.auth import AUDIOHOOK_COMPONENTS, check_audiohook_signature, signature_base

SECRET = base64.b64encode(b"audiohook-client-secret-0123456789").decode()
TARGET = "/audiohook?x=1"


def signed_headers(
    host: str, target: str = TARGET, key: str = "ah-key", secret: str = SECRET, **over
) -> dict:
    headers = {
        "Host": host,
        "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
        "audiohook-session-id": "e160e428-53e2-487c-977d-96989bf5c99d",
        "audiohook-correlation-id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
        "X-API-KEY": key,
    }
    params = [
        ("keyid", key),
        ("nonce", over.pop("nonce", "VGhpc0lzQVVuaXF1ZU5vbmNl")),
        ("alg", "hmac-sha256"),
        ("created", over.pop("created", int(time.time()))),
        ("expires", int(time.time()) + 10),
    ]
    components = over.pop("components", AUDIOHOOK_COMPONENTS)
    lower = {k.lower(): v for k, v in headers.items()}
    base = signature_base(components, params, lower, target)
    mac = hmac.new(base64.b64decode(secret), base.encode(), hashlib.sha256).digest()
    inner = "(" + " ".join(f'"{c}"' for c in components) + ")"
    plist = "".join(f";{k}={v}" if isinstance(v, int) else f';{k}="{v}"' for k, v in params)
    headers["Signature-Input"] = f"sig1={inner}{plist}"
    headers["Signature"] = f"sig1=:{base64.b64encode(mac).decode()}:"
    headers.update(over)
    return headers


def check(headers: dict, target: str = TARGET, secrets: dict | None = None) -> str | None:
    lower = {k.lower(): v for k, v in headers.items()}
    return check_audiohook_signature(lower, target, secrets or {"ah-key": SECRET}, time.time())


def test_valid_signature_is_accepted():
    assert check(signed_headers("guard.example.com")) is None


def test_signature_failures_are_named():
    host = "guard.example.com"
    assert "match" in check(signed_headers(host), target="/audiohook?x=2")
    assert "match" in check({**signed_headers(host), "audiohook-session-id": "other"})
    assert "old" in check(signed_headers(host, created=int(time.time()) - 60))
    assert "nonce" in check(signed_headers(host, nonce="short"))
    assert "cover" in check(signed_headers(host, components=AUDIOHOOK_COMPONENTS[:-1]))
    assert "X-API-KEY" in check(signed_headers(host, key="unknown"))
    unsigned = {k: v for k, v in signed_headers(host).items() if not k.startswith("Signature")}
    assert "not signed" in check(unsigned)
    assert check(unsigned, secrets={"ah-key": ""}) is None  # integration without a client secret
    assert "malformed" in check({**signed_headers(host), "Signature": "sig1=:!!!:"})


def test_signed_upgrade_on_a_live_socket(phone_bundle, tmp_path):
    async def main():
        async with running(phone_bundle, tmp_path, audiohook_api_keys=(f"ah-key:{SECRET}",)) as server:
            host = f"127.0.0.1:{server.port}"
            address = f"ws://{host}{TARGET}"
            # websockets sets Host itself; the signature covers the same value
            good = {k: v for k, v in signed_headers(host).items() if k != "Host"}
            async with connect(address, proxy=None, additional_headers=good):
                pass
            bad = {**good, "audiohook-session-id": "tampered"}
            try:
                async with connect(address, proxy=None, additional_headers=bad):
                    return "accepted"
            except InvalidStatus as exc:
                return exc.response.status_code

    assert asyncio.run(main()) == 401
