"""``serve`` without a model runs the default, the embedded fused pair: its events name the pair, carry the
one-class map and a summary whose verdict agrees with its probability and threshold."""

from __future__ import annotations

import asyncio
import json

from serverkit import TOKEN, noise, pcm16
from websockets.asyncio.client import connect

from stream_guard.backends.fused import read_fusion
from stream_guard.bundle import default_model_path
from stream_guard.server import Limits, ServerConfig, StreamGuardServer


def test_serve_without_a_model_runs_the_fused_default(tmp_path):
    audio = noise(3.0, 0.05, rate=16000)

    async def main():
        config = ServerConfig(
            host="127.0.0.1",
            port=0,
            model=None,
            provider="cpu",
            threads=1,
            tokens=(TOKEN,),
            outbox_path=str(tmp_path / "outbox.sqlite"),
            shutdown_grace_s=5.0,
            stream_queue_limit=64,
            max_delay_ms=None,
            limits=Limits(max_messages_per_s=1e6, max_bytes_per_s=1e9),
        )
        server = StreamGuardServer(config)
        await server.start()
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/v1/stream?token={TOKEN}", proxy=None) as ws:
                await ws.send(
                    json.dumps({"type": "start", "stream": "d1", "sample_rate": 16000, "emit_map": True})
                )
                await ws.recv()  # started
                for i in range(0, len(audio), 3200):
                    await ws.send(pcm16(audio[i : i + 3200]))
                await ws.send(json.dumps({"type": "stop"}))
                events = []
                async with asyncio.timeout(60):
                    while not events or events[-1]["type"] != "summary":
                        events.append(json.loads(await ws.recv()))
            return server.engine.metadata, events
        finally:
            await server.stop()

    meta, events = asyncio.run(main())
    spec = read_fusion(default_model_path())
    assert meta.family == "fused" and meta.name == spec.name
    scores = [e for e in events if e["type"] == "score"]
    assert scores and all(e["model"] == spec.name for e in scores)
    maps = [e for e in events if e["type"] == "map"]
    assert maps and {len(e["columns"]) for e in maps} == {len(meta.map_axes.freq_hz)}  # the one-class map
    summary = events[-1]
    assert summary["threshold"] == spec.threshold
    assert summary["threshold_probability"] == meta.calibration.threshold_probability
    if summary["probability"] is not None:
        above = summary["probability"] >= summary["threshold_probability"]
        assert summary["verdict"] == ("synthetic" if above else "real")
