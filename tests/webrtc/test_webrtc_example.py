"""``examples/webrtc_file_client.py`` as a user runs it, against ``stream-guard serve`` on loopback."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import soundfile as sf
from rtc_harness import TOKEN, noise, running_server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "webrtc_file_client.py"


async def run_example(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


def test_example_streams_two_files_as_two_participants(bundle_path, tmp_path):
    quiet, loud = tmp_path / "quiet.wav", tmp_path / "loud.wav"
    sf.write(quiet, noise(2.0, 0.05, rate=16000, seed=5), 16000)
    sf.write(loud, noise(2.0, 0.5, rate=48000, seed=6), 48000)

    async def main():
        async with running_server(bundle_path, tmp_path) as server:
            url = f"ws://127.0.0.1:{server.port}/v1/webrtc"
            ok = await run_example(str(quiet), str(loud), "--url", url, "--token", TOKEN, "--loopback")
            no_token = await run_example(str(quiet), "--url", url, "--loopback")
            missing = await run_example(str(tmp_path / "nope.wav"), "--url", url, "--loopback")
            return ok, no_token, missing

    (code, out, err), no_token, missing = asyncio.run(main())
    assert code == 3, (out, err)  # 3: a participant was found synthetic (the loud one)
    assert "summary: real" in out and "summary: synthetic" in out
    assert "quiet (opus)" in out and "loud (opus)" in out
    assert no_token[0] == 1 and "HTTP 401" in no_token[2] and "Traceback" not in no_token[2]
    assert missing[0] != 0 and "nope.wav" in missing[2] and "Traceback" not in missing[2]
