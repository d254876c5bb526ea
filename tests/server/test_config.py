"""Configuration from files and flags, TLS, subscription filters and sequence handling on live sockets."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess

import pytest
from serverkit import mulaw, noise, running, url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stream_guard.cli.main import build_parser
from stream_guard.cli.serve import build_config
from stream_guard.protocols.simulators import twilio_call
from stream_guard.server import ConfigError
from stream_guard.server.config import from_mapping, load_file

TOML = """
host = "127.0.0.1"
port = 9000
tokens = ["from-file"]
hop_s = 1.0

[limits]
max_streams = 7
idle_timeout_s = 12

[[webhooks]]
url = "http://127.0.0.1:9/hook"
secret = "whsec_c2VjcmV0"
types = ["alert"]
"""


def test_toml_config_file_and_flag_precedence(tmp_path):
    path = tmp_path / "serve.toml"
    path.write_text(TOML)
    config = from_mapping(load_file(path), str(path)).validate()
    assert config.limits.max_streams == 7 and config.limits.idle_timeout_s == 12
    assert config.webhooks[0].wants("alert.raised") and not config.webhooks[0].wants("stream.summary")
    args = build_parser().parse_args(["serve", "--config", str(path), "--port", "9100", "--max-streams", "3"])
    merged = build_config(args)
    assert merged.port == 9100 and merged.limits.max_streams == 3 and merged.limits.idle_timeout_s == 12
    assert merged.tokens == ("from-file",) and merged.hop_s == 1.0


def test_config_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('colour = "blue"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml.*colour"):
        from_mapping(load_file(bad), str(bad))
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    with pytest.raises(ConfigError, match=r"broken\.json.*JSON"):
        load_file(broken)
    with pytest.raises(ConfigError, match="missing.toml"):
        load_file(tmp_path / "missing.toml")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls(phone_bundle, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def main():
        async with running(phone_bundle, tmp_path, tls_cert=str(cert), tls_key=str(key)) as server:
            address = url(server, "/v1/stream").replace("ws://", "wss://")
            async with connect(address, ssl=client_ctx, proxy=None) as ws:
                await ws.send(json.dumps({"type": "start", "stream": "tls-1", "sample_rate": 8000}))
                return json.loads(await ws.recv())

    assert asyncio.run(main())["type"] == "started"


def test_subscription_filter_and_sequence_handling(phone_bundle, tmp_path):
    audio = mulaw(noise(3.0, 0.05))
    gap_call = list(twilio_call(audio, sid="MZgap"))
    del gap_call[6]  # one media message lost upstream: counted, the call goes on
    jump_call = list(twilio_call(audio, sid="MZjump"))
    jumped = json.loads(jump_call[5])
    jumped["sequenceNumber"] = "900000"
    jump_call[5] = json.dumps(jumped)

    async def main():
        async with running(phone_bundle, tmp_path) as server:
            only_gap = await connect(url(server, "/v1/events?prefix=MZgap"), proxy=None)
            while not server.hub.subscriptions:
                await asyncio.sleep(0.01)
            async with connect(url(server, "/twilio"), proxy=None) as ws:
                for m in gap_call:
                    await ws.send(m)
            seen = []
            while not seen or seen[-1]["type"] != "summary":
                seen.append(json.loads(await only_gap.recv()))
            ws = await connect(url(server, "/twilio"), proxy=None)
            for m in jump_call:
                try:
                    await ws.send(m)
                except ConnectionClosed:
                    break
            try:
                async with asyncio.timeout(20):
                    while True:
                        await ws.recv()
            except ConnectionClosed:
                pass
            await only_gap.close()
            return seen, (ws.close_code, ws.close_reason), server.metrics.render().decode()

    seen, (code, reason), metrics = asyncio.run(main())
    assert {e["stream"] for e in seen} == {"MZgap/inbound"}
    assert 'streamguard_protocol_notices_total{kind="sequence_gap",protocol="twilio"} 1.0' in metrics
    assert code == 1007 and "jumped" in reason


def test_cli_user_errors_are_one_line_and_exit_2(phone_bundle, tmp_path, capsys):
    from stream_guard.cli.main import main

    cases = [
        (["serve"], "no credential"),
        (["serve", "--host", "0.0.0.0", "--no-auth"], "loopback"),
        (["serve", "--no-auth", "--config", str(tmp_path / "nope.toml")], "nope.toml"),
        (["serve", "--no-auth", "--tls-cert", str(tmp_path / "c.pem")], "TLS needs both"),
        (["serve", "--no-auth", "--webhook", "http://127.0.0.1:9/h"], "--webhook-secret"),
        (["serve", "--no-auth", "--model", str(tmp_path / "missing.onnx")], "missing.onnx"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, (argv, err)

    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = ["serve", "--no-auth", "--port", str(port), "--model", str(phone_bundle), "--provider", "cpu"]
        argv += ["--outbox", str(tmp_path / "o.sqlite")]
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot listen" in err and "Traceback" not in err
