"""The shipped JSON Schema matches events.py and validates real engine output."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from importlib import resources

import jsonschema
import numpy as np
import pytest
from bundles import speechlike

from stream_guard import AudioFormat, Engine, StreamConfig
from stream_guard.events import EVENT_TYPES


@pytest.fixture(scope="module")
def schema() -> dict:
    text = resources.files("stream_guard").joinpath("schemas/events.schema.json").read_text()
    data = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(data)
    return data


def test_schema_lists_every_field_of_every_event(schema: dict) -> None:
    for name, cls in EVENT_TYPES.items():
        fields = {f.name for f in dataclasses.fields(cls)} | {"v"}
        props = set(schema["$defs"][name]["properties"])
        assert props == fields, name
        assert set(schema["$defs"][name]["required"]) | {"v", "stream"} == fields, name


def test_real_engine_output_validates(schema: dict, backend) -> None:
    validator = jsonschema.Draft202012Validator(schema)

    async def main():
        events = []
        async with Engine(backend) as engine:
            loud = np.concatenate([speechlike(3.0, level=0.03), speechlike(5.0, level=0.3), np.zeros(48000)])
            events += await engine.scan(loud.astype(np.float32), AudioFormat(16000, "float32"), "loud")
            s = await engine.open_stream(
                "bad", AudioFormat(8000, "mulaw", channels=2), StreamConfig(split_channels=True)
            )
            consumer = asyncio.create_task(_collect(s))
            await s.feed(bytes(range(256)) * 64)
            await s.feed(b"\x00")  # half a frame: carried, not an error
            await s.feed(np.array([[np.nan, 0.0]], np.float32))
            await s.close()
            events += await consumer
            events += await engine.scan(np.zeros(100, np.float32), AudioFormat(16000, "float32"), "tiny")
        return events

    events = asyncio.run(main())
    types = {e.type for e in events}
    assert types == {"score", "map", "alert", "summary", "error"}
    for ev in events:
        doc = json.loads(ev.to_json())
        errors = sorted(validator.iter_errors(doc), key=str)
        assert not errors, f"{doc}: {errors[0].message}"
    bogus = json.loads(events[0].to_json()) | {"surprise": 1}
    assert list(validator.iter_errors(bogus))


async def _collect(stream) -> list:
    return [e async for e in stream.events()]
