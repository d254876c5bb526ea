"""``import stream_guard`` and a whole scan work in a process where importing torch is impossible."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import sys

    class ForbidTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is forbidden in this test")
            return None

    sys.meta_path.insert(0, ForbidTorch())

    import stream_guard
    assert "onnxruntime" not in sys.modules, "import stream_guard must stay cheap"
    assert "numpy" not in sys.modules, "import stream_guard must stay cheap"
    from stream_guard import AudioFormat, Engine, EngineConfig, OnnxRuntimeBackend, StreamConfig, events
    import stream_guard.core, stream_guard.engine, stream_guard.backends, stream_guard.bundle
    import numpy as np

    rng = np.random.default_rng(0)
    x = (rng.standard_normal(16000 * 3) * 0.1).astype(np.float32)
    out = stream_guard.scan_array(x, 16000, sys.argv[1], provider="cpu", threads=1)
    assert out[-1].type == "summary" and out[-1].windows > 0, out[-1]
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
    print("ok")
""")


def test_runtime_never_imports_torch(bundle_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(bundle_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
