"""Stream audio files to stream-guard over WebRTC, one participant per file, and print what it says.

This is what a conferencing integration written in Python does: one WebRTC peer, one audio track per
participant, the scores coming back on the same signalling websocket.

    stream-guard serve --token s3cret &                     # a server on 127.0.0.1:8765
    python examples/webrtc_file_client.py alice.wav bob.wav --token s3cret --loopback

``--loopback`` offers only 127.0.0.1 as an ICE candidate (client and server on one machine, no STUN); across
networks, give ``--ice-server stun:stun.example.org:3478`` (or a TURN server) instead. Files are played
in real time, as a microphone would send them. Needs the ``webrtc`` extra (``pip install
"stream-guard[webrtc]"``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    """The file as mono float32 and its sample rate, or SystemExit with a message naming the file."""
    import soundfile as sf

    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as exc:  # soundfile raises LibsndfileError (a RuntimeError) on bad files
        raise SystemExit(f"{path}: cannot read audio ({exc})") from None
    if audio.shape[0] == 0:
        raise SystemExit(f"{path}: no audio in the file")
    return audio.mean(axis=1), int(rate)


def with_token(url: str, token: str | None) -> str:
    if not token:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"token": token})) if q)
    return urlunsplit(parts._replace(query=query))


async def run(args: argparse.Namespace) -> int:
    from stream_guard.sources.webrtc import ClientTrack, IceServer, WebRTCClient, pcm_audio_track

    tracks = []
    for i, name in enumerate(args.files):
        path = Path(name)
        audio, rate = read_mono(path)
        participant = args.participant[i] if i < len(args.participant) else path.stem
        tracks.append(ClientTrack(pcm_audio_track(audio, rate), participant, participant, codec=args.codec))
    try:
        ice = tuple(IceServer.parse(s) for s in args.ice_server)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None

    client = WebRTCClient(with_token(args.url, args.token), tracks, ice_servers=ice, loopback=args.loopback)
    try:
        await client.connect()
    except (ConnectionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    async def say_bye_when_played() -> None:
        while any(t.track.readyState == "live" for t in tracks):
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # the last packets are on their way
        await client.bye()

    done = asyncio.ensure_future(say_bye_when_played())
    synthetic = False
    try:
        async for msg in client.messages():
            kind = msg["type"]
            if kind == "stream":
                print(f"{msg['stream']}: {msg['label']} ({msg['codec']})")
            elif kind == "error":
                print(f"error: {msg['code']}: {msg['message']}", file=sys.stderr)
            elif kind == "event":
                ev = msg["event"]
                if ev["type"] == "score":
                    print(
                        f"{ev['stream']:<28} {ev['end_s']:7.2f} s  p(synthetic) {ev['probability']:.2f}  "
                        f"smoothed {ev['smoothed']:.2f}  {ev['verdict']}"
                    )
                elif ev["type"] == "alert":
                    print(f"{ev['stream']:<28} ALERT {ev['state']} at {ev['at_s']:.2f} s")
                elif ev["type"] == "summary":
                    synthetic |= ev["verdict"] == "synthetic"
                    print(
                        f"{ev['stream']:<28} summary: {ev['verdict']} over {ev['duration_s']:.1f} s "
                        f"({ev['windows']} windows, {ev['alerts']} alerts)"
                    )
    finally:
        done.cancel()
        await client.close()
    return 3 if synthetic else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="audio files, one participant each")
    parser.add_argument("--url", default="ws://127.0.0.1:8765/v1/webrtc", help="signalling websocket")
    parser.add_argument("--token", default=None, help="the server's bearer token")
    parser.add_argument(
        "--participant", action="append", default=[], help="participant id per file (in order)"
    )
    parser.add_argument("--codec", choices=("opus", "PCMU", "PCMA"), default=None, help="force a codec")
    parser.add_argument(
        "--ice-server", action="append", default=[], help="stun:HOST:PORT or turn:USER:PASS@HOST"
    )
    parser.add_argument("--loopback", action="store_true", help="client and server on this machine")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
