"""The KServe v2 backend against a real Triton server: the one inside the nvidia-pytriton wheel, on loopback.

The server is ``python -m stream_guard.backends.kserve_server`` (a subprocess) serving the test bundle. Its
interpreter is this one when it has nvidia-pytriton, else ``$STREAM_GUARD_PYTRITON_PYTHON`` (pytriton pins
numpy < 2, so it often lives in its own virtual environment: docs/triton.md). Without the client
(``stream-guard[triton]``) or a pytriton interpreter the module is skipped and says which is missing.

Tolerance: the server runs the same ONNX graph with onnxruntime's CPU provider, so scores and maps equal
the in-process backend's within 1e-5 (float32 round-off of a possibly different onnxruntime build).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from bundles import build_fused_pair, speechlike

from stream_guard import AudioFormat, Engine, EngineConfig, StreamConfig
from stream_guard.backends import BackendError, FusedBackend, load_backend
from stream_guard.bundle import read_metadata
from stream_guard.core.formats import encode
from stream_guard.events import ErrorEvent, ScoreEvent, SummaryEvent

REPO_ROOT = Path(__file__).resolve().parents[2]
ATOL = 1e-5
START_TIMEOUT_S = 180.0


def _pytriton_python() -> str | None:
    if os.environ.get("STREAM_GUARD_PYTRITON_PYTHON"):
        return os.environ["STREAM_GUARD_PYTRITON_PYTHON"]
    if importlib.util.find_spec("pytriton") is not None:
        return sys.executable
    # the README's test set-up gives the server its own environment next to .venv (pytriton pins numpy<2)
    local = Path(__file__).resolve().parents[2] / ".venv-triton" / "bin" / "python"
    return str(local) if local.exists() else None


def _have_client() -> bool:
    try:
        import tritonclient.grpc  # noqa: F401
    except ImportError:
        return False
    return True


PYTHON = _pytriton_python()
pytestmark = [
    pytest.mark.skipif(
        not _have_client(), reason="tritonclient is not installed: pip install 'stream-guard[triton]'"
    ),
    pytest.mark.skipif(
        PYTHON is None,
        reason="no interpreter with nvidia-pytriton: pip install 'stream-guard[pytriton]' here, or set "
        "STREAM_GUARD_PYTRITON_PYTHON to the python of an environment that has it",
    ),
]


def score_when_back(remote, x: np.ndarray, within_s: float = 30.0) -> np.ndarray:
    """Scores from a backend whose server is coming back: retried until it answers or ``within_s`` passes."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return remote.infer(x)[0]
        except BackendError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ServerProcess:
    """``kserve_server`` in its own process group, with its log in a file."""

    def __init__(self, model: Path, log: Path, name: str = "sg-test", ports: list[int] | None = None) -> None:
        self.name = name
        self.grpc_port, http_port, metrics_port = ports or free_ports(3)
        self.ports = [self.grpc_port, http_port, metrics_port]
        self.log = log
        cmd = [
            str(PYTHON), "-m", "stream_guard.backends.kserve_server", "--model", str(model), "--name", name,
            "--grpc-port", str(self.grpc_port), "--http-port", str(http_port),
            "--metrics-port", str(metrics_port), "--max-batch", "16", "--provider", "cpu", "--threads", "1",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    @property
    def url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}/{self.name}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_ready(self) -> None:
        import tritonclient.grpc as g

        client = g.InferenceServerClient(f"127.0.0.1:{self.grpc_port}")
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if client.is_model_ready(self.name, client_timeout=2.0):
                        return
                except Exception:  # not listening yet
                    pass
                time.sleep(0.3)
        finally:
            client.close()
        raise RuntimeError(f"server not ready after {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def tritonserver_pid(self) -> int:
        import psutil

        for child in psutil.Process(self.proc.pid).children(recursive=True):
            if child.name() == "tritonserver":
                return child.pid
        raise RuntimeError("no tritonserver process under the server")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        with contextlib.suppress(ProcessLookupError):  # whatever is left of the group (the server's helpers)
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture(scope="module")
def server(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory):
    s = ServerProcess(bundle_path, tmp_path_factory.mktemp("kserve") / "server.log")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def remote(server: ServerProcess):
    b = load_backend(server.url)
    yield b
    b.close()


def test_scores_and_maps_match_the_in_process_backend(remote, backend) -> None:
    rng = np.random.default_rng(5)
    # batch sizes 1 and 8, 40 (above the server's max batch of 16: sent in three requests), short windows
    for shape in [(1, 32000), (8, 32000), (40, 32000), (3, 12000)]:
        x = (rng.standard_normal(shape) * rng.uniform(0.01, 0.3, (shape[0], 1))).astype(np.float32)
        s_remote, m_remote = remote.infer(x)
        s_local, m_local = backend.infer(x)
        assert s_remote.shape == s_local.shape and m_remote.shape == m_local.shape
        np.testing.assert_allclose(s_remote, s_local, atol=ATOL, rtol=0)
        np.testing.assert_allclose(m_remote, m_local, atol=ATOL, rtol=0)


def test_metadata_and_limits_come_from_the_server(remote, bundle_path: Path) -> None:
    assert asdict(remote.metadata) == asdict(read_metadata(bundle_path))
    assert remote.max_batch_size == 16
    with pytest.raises(BackendError, match=r"infer expects float32 \[batch, samples\]"):
        remote.infer(np.zeros(16000, np.float32))


async def _collect(stream) -> list:
    return [ev async for ev in stream.events()]


async def _run_streams(backend, signals: list[np.ndarray], realtime: bool = False) -> tuple[list, list, dict]:
    fmt = AudioFormat(16000, "float32")
    async with Engine(backend, EngineConfig(max_batch=8, max_wait_ms=5, max_delay_ms=None)) as engine:
        streams = [
            await engine.open_stream(f"s{i}", fmt, StreamConfig(realtime=realtime))
            for i in range(len(signals))
        ]
        consumers = [asyncio.create_task(_collect(s)) for s in streams]
        for block in range(0, max(len(x) for x in signals), 4000):
            await asyncio.gather(
                *(s.feed(encode(x[block : block + 4000], fmt)) for s, x in zip(streams, signals, strict=True))
            )
        summaries = await asyncio.gather(*(s.close() for s in streams))
        events = await asyncio.gather(*consumers)
        return list(summaries), list(events), engine.stats()


def test_engine_runs_several_streams_through_the_server(remote, backend) -> None:
    signals = [speechlike(4.0, level=0.3 if i % 2 else 0.03, seed=i) for i in range(6)]
    summaries, events, stats = asyncio.run(asyncio.wait_for(_run_streams(remote, signals), 120))
    ref_summaries, ref_events, _ = asyncio.run(asyncio.wait_for(_run_streams(backend, signals), 120))
    assert stats["windows_failed"] == 0 and stats["windows_scored"] > 6
    assert stats["batch_size_max"] > 1  # windows of several streams shared requests
    for got, ref in zip(events, ref_events, strict=True):
        a = [(e.window_index, e.score) for e in got if isinstance(e, ScoreEvent)]
        b = [(e.window_index, e.score) for e in ref if isinstance(e, ScoreEvent)]
        assert [i for i, _ in a] == [i for i, _ in b]
        np.testing.assert_allclose([s for _, s in a], [s for _, s in b], atol=ATOL, rtol=0)
    assert [s.verdict for s in summaries] == [s.verdict for s in ref_summaries]
    assert [s.verdict for s in summaries] == ["real", "synthetic"] * 3


def test_unknown_model_is_one_line(server: ServerProcess) -> None:
    url = f"grpc://127.0.0.1:{server.grpc_port}/no-such-model"
    with pytest.raises(BackendError) as err:
        load_backend(url)
    text = str(err.value)
    assert text.startswith(f"{url}: model 'no-such-model' is not available") and "\n" not in text


def test_server_down_at_start_is_one_line_naming_the_url(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    url = f"grpc://127.0.0.1:{port}/sg-test"
    with pytest.raises(BackendError) as err:
        load_backend(url)
    assert str(err.value) == f"{url}: no KServe v2 server answers at 127.0.0.1:{port} (Connection refused)"
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, speechlike(2.0, level=0.1), 16000)
    proc = subprocess.run(
        [sys.executable, "-m", "stream_guard.cli.main", "scan", str(wav), "--model", url],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"stream-guard: error: {err.value}"]


def test_a_hung_server_times_out_then_calls_fail_fast_until_it_is_back(
    server: ServerProcess, backend
) -> None:
    b = load_backend(server.url + "?timeout=1")
    x = speechlike(2.0, level=0.1)[None, :]
    pid = server.tritonserver_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(BackendError, match=r"no answer within 1 s"):
            b.infer(x)
        # the next call does not wait for another deadline: it fails at once, saying so
        with pytest.raises(BackendError, match=r"server unavailable \(no answer within 1 s\); next try in"):
            b.infer(x)
    finally:
        os.kill(pid, signal.SIGCONT)
    np.testing.assert_allclose(score_when_back(b, x), backend.infer(x)[0], atol=ATOL, rtol=0)
    b.close()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_server_killed_mid_stream_fails_windows_cleanly_and_recovers(
    bundle_path: Path, tmp_path: Path, backend
) -> None:
    srv = ServerProcess(bundle_path, tmp_path / "server.log")
    try:
        srv.wait_ready()
        remote = load_backend(srv.url + "?timeout=5")
        fmt = AudioFormat(16000, "float32")
        signals = [speechlike(8.0, level=0.1, seed=i) for i in range(3)]

        async def main():
            cfg = EngineConfig(max_batch=8, max_wait_ms=5, max_delay_ms=None)
            async with Engine(remote, cfg) as engine:
                streams = [
                    await engine.open_stream(f"call{i}", fmt, StreamConfig(realtime=False)) for i in range(3)
                ]
                consumers = [asyncio.create_task(_collect(s)) for s in streams]
                for s, x in zip(streams, signals, strict=True):  # first half: scored normally
                    await s.feed(encode(x[:64000], fmt))
                while engine.stats()["windows_scored"] < 3 * 7:
                    await asyncio.sleep(0.05)
                os.kill(srv.tritonserver_pid(), signal.SIGKILL)  # the server vanishes mid-stream
                for s, x in zip(streams, signals, strict=True):
                    await s.feed(encode(x[64000:], fmt))
                summaries = await asyncio.gather(*(s.close() for s in streams))
                return summaries, await asyncio.gather(*consumers), engine.stats()

        summaries, events, stats = asyncio.run(asyncio.wait_for(main(), 120))
        assert stats["windows_failed"] > 0 and stats["windows_scored"] >= 21
        for evs, summary in zip(events, summaries, strict=True):
            assert isinstance(evs[-1], SummaryEvent) and evs[-1] is summary
            assert sum(isinstance(e, ScoreEvent) for e in evs) >= 7
            errors = [e for e in evs if isinstance(e, ErrorEvent)]
            assert errors and all(e.code == "inference_failed" for e in errors)
            assert all(srv.url in e.message and "\n" not in e.message for e in errors)
        # the server process notices its Triton is gone and exits with a one-line reason
        assert srv.proc.wait(60) == 2
        assert "the Triton server stopped unexpectedly" in srv.log_tail()

        # a server back on the same port: the same backend reconnects by itself
        srv2 = ServerProcess(bundle_path, tmp_path / "server2.log", ports=srv.ports)
        try:
            srv2.wait_ready()
            x = speechlike(2.0, level=0.1, seed=9)[None, :]
            np.testing.assert_allclose(score_when_back(remote, x), backend.infer(x)[0], atol=ATOL, rtol=0)
        finally:
            srv2.stop()
        remote.close()
    finally:
        srv.stop()


def test_a_fused_pair_is_served_as_one_model(tmp_path: Path) -> None:
    """The default model is a fusion file (two bundles + logistic regression): pytriton serves it whole."""
    fusion = build_fused_pair(tmp_path)
    local = FusedBackend(fusion, provider="cpu", threads=1)
    srv = ServerProcess(fusion, tmp_path / "server.log", name="fused")
    try:
        srv.wait_ready()
        remote = load_backend(srv.url)
        # the same metadata as JSON (the fused pair's extra nests its members' metadata: tuples become lists)
        assert json.loads(remote.metadata.to_json()) == json.loads(local.metadata.to_json())
        assert remote.metadata.calibration == local.metadata.calibration
        assert remote.metadata.score_kind == "logit" and remote.metadata.family == "fused"
        x = np.stack([speechlike(2.0, level=lv, seed=i) for i, lv in enumerate((0.02, 0.1, 0.3))])
        (s_r, m_r), (s_l, m_l) = remote.infer(x), local.infer(x)
        np.testing.assert_allclose(s_r, s_l, atol=ATOL, rtol=0)
        np.testing.assert_allclose(m_r, m_l, atol=ATOL, rtol=0)
        remote.close()
    finally:
        srv.stop()
        local.close()
