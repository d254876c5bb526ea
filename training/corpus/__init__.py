"""The offline speech corpus: bona fide speech from Debian packages, classic TTS and vocoder resyntheses as
synthetic speech, shortcut removal and channel matching for both classes, and a manifest CSV.

``python -m training.corpus build --profile full|tiny`` builds it into
``~/.cache/stream-guard/corpus/<profile>``
(see ``training/corpus/README.md``); :func:`training.corpus.manifest.read_manifest` reads the result, and
:mod:`training.corpus.readers` turns corpora users already have into the same rows.
"""

from training.corpus.manifest import COLUMNS, ManifestError, ManifestRow, read_manifest, write_manifest

__all__ = ["COLUMNS", "ManifestError", "ManifestRow", "read_manifest", "write_manifest", "manifest_path"]


def manifest_path(profile: str = "full", cache: str | None = None) -> str:
    """Where ``build`` writes the manifest of ``profile`` (``<cache>/corpus/<profile>/manifest.csv``)."""
    from pathlib import Path

    from training.corpus.build import default_cache

    root = Path(cache).expanduser() if cache else default_cache()
    return str(root / "corpus" / profile / "manifest.csv")
