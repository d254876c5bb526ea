"""ONNX bundle: contract, dynamic batch and length (0.5 s to 30 s), parity, metadata, int8 cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxscript")

from export.antideepfake import export_detector, quantize_int8, speechlike_signals  # noqa: E402
from stream_guard.bundle import read_metadata  # noqa: E402
from training.antideepfake.architectures import ARCHITECTURES, num_frames  # noqa: E402
from training.antideepfake.model import AntiDeepfakeDetector  # noqa: E402

from .conftest import speechlike  # noqa: E402


def _export(tmp: Path, name: str, quantize: bool = False):
    torch.manual_seed(0)
    detector = AntiDeepfakeDetector(ARCHITECTURES[name].tiny()).eval()
    result = export_detector(
        detector, tmp / f"{name}.onnx", name=f"test-{name}", licence="test", quantize=quantize, threads=1
    )
    return detector, result


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory):
    return _export(tmp_path_factory.mktemp("adf_bundle"), "w2v_small")


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def test_bundle_metadata_follows_the_contract(small_bundle) -> None:
    _, result = small_bundle
    meta = read_metadata(result.path)
    assert meta.family == "antideepfake" and meta.score_kind == "logit"
    assert meta.sample_rate == 16_000 and meta.min_audio_s == 0.5
    assert meta.map_axes.kind == "time" and meta.map_axes.frame_step_s == 0.02 and meta.map_axes.freq_hz == ()
    assert meta.calibration.center == 0.0 and meta.calibration.scale == 1.0
    assert meta.calibration.probability(0.0) == pytest.approx(0.5)
    assert "logit(fake) - logit(real)" in meta.extra["antideepfake"]["score"]
    assert meta.extra["parity"]["max_abs_score_diff"] < 1e-4


@pytest.mark.parametrize("seconds", [0.5, 1.0, 4.0, 13.7, 30.0])
@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_lengths_and_batch_match_pytorch(small_bundle, seconds: float, batch: int) -> None:
    detector, result = small_bundle
    rng = np.random.default_rng(int(seconds * 10) + batch)
    audio = np.stack([speechlike(seconds, rng) for _ in range(batch)])
    score, track = _session(result.path).run(["score", "anomaly_map"], {"audio": audio})
    with torch.inference_mode():
        ref = detector(torch.from_numpy(audio))
    frames = num_frames(audio.shape[1])
    assert score.shape == (batch,) and track.shape == (batch, frames)
    assert abs(frames * 0.02 - seconds) <= 0.03  # 20 ms frames
    np.testing.assert_allclose(score, ref.score.numpy(), atol=1e-4)
    np.testing.assert_allclose(track, ref.frame_score.numpy(), atol=1e-3)
    np.testing.assert_allclose(track.mean(axis=1), score, atol=1e-4)


def test_int8_bundle_is_valid_and_its_cost_is_measured(small_bundle, tmp_path: Path) -> None:
    _, result = small_bundle
    q_path = tmp_path / "int8.onnx"
    q = quantize_int8(result.path, q_path, result.metadata, speechlike_signals())
    meta = read_metadata(q_path)
    assert meta.name.endswith("-int8")
    assert meta.extra["quantization"]["max_abs_score_diff_vs_fp32"] == q["max_abs_score_diff_vs_fp32"]
    assert q["max_abs_score_diff_vs_fp32"] > 0  # int8 is not free; the number is what users read
    audio = speechlike(2.0, np.random.default_rng(5))[None]
    score, track = _session(q_path).run(["score", "anomaly_map"], {"audio": audio})
    assert np.isfinite(score).all() and track.shape == (1, num_frames(audio.shape[1]))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mms_300m", "hubert_xl"])
def test_other_families_export_with_parity(tmp_path: Path, name: str) -> None:
    detector, result = _export(tmp_path, name)
    audio = speechlike(3.3, np.random.default_rng(0))[None]
    score, _ = _session(result.path).run(["score", "anomaly_map"], {"audio": audio})
    with torch.inference_mode():
        np.testing.assert_allclose(score, detector(torch.from_numpy(audio)).score.numpy(), atol=1e-4)
    assert read_metadata(result.path).extra["antideepfake"]["arch"] == f"{name}-tiny"


@pytest.mark.slow
def test_cli_random_tiny_export(tmp_path: Path) -> None:
    from export.antideepfake import main

    out = tmp_path / "cli.onnx"
    assert main(["--random-arch", "xlsr_1b", "--tiny", "--out", str(out)]) == 0
    meta = read_metadata(out)
    assert meta.training["data"].startswith("none: random weights")


def test_cli_bad_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from export.antideepfake import main

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00" * 64)
    assert main(["--checkpoint", str(bad), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "bad.ckpt: not a checkpoint" in capsys.readouterr().err


def test_runtime_streams_an_antideepfake_bundle(small_bundle) -> None:
    """The runtime engine loads the bundle, scores telephone audio in windows and stitches the time track."""
    import asyncio

    from stream_guard import AudioFormat, Engine
    from stream_guard.events import MapEvent, ScoreEvent, SummaryEvent

    _, result = small_bundle
    audio = speechlike(9.0, np.random.default_rng(11))
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    pcm8k = pcm[::2].tobytes()  # crude 8 kHz stream; the runtime resamples to the bundle's 16 kHz

    async def run() -> list:
        events = []
        async with Engine.from_bundle(result.path, threads=1) as engine:
            stream = await engine.open_stream("call-1", AudioFormat(8000, "pcm16"))
            for start in range(0, len(pcm8k), 3200):
                await stream.feed(pcm8k[start : start + 3200])
            summary = await stream.close()
            async for event in stream.events():
                events.append(event)
        return [*events, summary]

    events = asyncio.run(run())
    scores = [e for e in events if isinstance(e, ScoreEvent)]
    maps = [e for e in events if isinstance(e, MapEvent)]
    assert scores and all(np.isfinite(e.score) for e in scores)
    assert any(not e.low_confidence for e in scores)  # full 4 s windows were scored
    assert maps and all(m.frame_step_s == 0.02 and m.freq_hz == [] for m in maps)
    assert isinstance(events[-1], SummaryEvent) and events[-1].windows == len(scores)
