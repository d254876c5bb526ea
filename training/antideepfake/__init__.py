"""AntiDeepfake post-trained SSL detectors (Ge, Wang, Liu, Yamagishi, ASRU 2025) for stream-guard.

wav2vec 2.0 / MMS / XLS-R / HuBERT backbones built on Hugging Face transformers from configs written in this
project (no hub access), AntiDeepfake's head (mean pooling, Linear(D, 2) = [fake, real]) plus a per-frame
track, strict loading of the released checkpoints, fine-tuning with RawBoost, and evaluation. Export to an
ONNX bundle is in ``export/antideepfake.py``. Command line: ``python -m training.antideepfake --help``.
"""

from training.antideepfake.architectures import ARCHITECTURES, ArchSpec, get_arch, num_frames
from training.antideepfake.model import AntiDeepfakeDetector, DetectorOutput, normalise_waveform

__all__ = [
    "ARCHITECTURES",
    "AntiDeepfakeDetector",
    "ArchSpec",
    "DetectorOutput",
    "get_arch",
    "normalise_waveform",
    "num_frames",
]
