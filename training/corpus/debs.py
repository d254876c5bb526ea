"""Fetch and unpack Debian packages into the cache, without installing them.

``apt-get download`` fetches a ``.deb`` into ``<cache>/debs``; ``dpkg -x`` unpacks it into
``<cache>/unpacked/<package>`` (through a temporary folder and a rename, so an interrupted unpack is redone,
never half-used). Users without apt-get download the files elsewhere and pass ``--debs DIR``. Where ``dpkg``
is missing the ``.deb`` (an ``ar`` archive holding ``data.tar.*``) is unpacked in Python.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path


class PackageError(RuntimeError):
    """A package could not be found, downloaded or unpacked; the message names it and says what to do."""


def find_deb(package: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        if d.is_dir():
            hits = sorted(d.glob(f"{package}_*.deb"))
            if hits:
                return hits[-1]
    return None


def apt_download(packages: list[str], dest: Path) -> None:
    """Download ``packages`` into ``dest`` with ``apt-get download`` (no root needed, nothing installed)."""
    if not packages:
        return
    if shutil.which("apt-get") is None:
        raise PackageError(
            "apt-get is not available, so these Debian packages cannot be downloaded: "
            + ", ".join(packages)
            + ". Download their .deb files on a Debian/Ubuntu machine (`apt-get download PKG`) and pass "
            "--debs DIR."
        )
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["apt-get", "download", *packages], cwd=dest, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("W:")]
        raise PackageError(
            f"apt-get download failed for {', '.join(packages)}: {' '.join(lines)[-500:]} "
            "(run `apt-get update` first, or pass --debs DIR with the .deb files)"
        )


def _extract_with_python(deb: Path, dest: Path) -> None:
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise PackageError(f"{deb}: not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                tar.extractall(dest, filter="data")
            return
    raise PackageError(f"{deb}: no data.tar member")


def unpack(deb: Path, dest: Path) -> Path:
    """Unpack ``deb`` into ``dest`` (atomically); returns ``dest``. A finished ``dest`` is reused."""
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        if shutil.which("dpkg") is not None:
            proc = subprocess.run(
                ["dpkg", "-x", str(deb), str(tmp)], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                raise PackageError(f"{deb}: dpkg -x failed: {proc.stderr.strip()[-300:]}")
        else:
            _extract_with_python(deb, tmp)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def ensure_packages(packages: list[str], cache: Path, debs_dir: Path | None = None) -> dict[str, Path]:
    """Make every package available unpacked under ``<cache>/unpacked``; returns package -> unpacked root.

    Already unpacked packages are reused without looking for their ``.deb``; missing ``.deb`` files are taken
    from ``debs_dir`` first, then downloaded into ``<cache>/debs``.
    """
    unpacked = cache / "unpacked"
    store = cache / "debs"
    out: dict[str, Path] = {}
    todo = [p for p in packages if not (unpacked / p).is_dir()]
    search = [d for d in (debs_dir, store) if d is not None]
    missing = [p for p in todo if find_deb(p, search) is None]
    if missing:
        if debs_dir is not None and shutil.which("apt-get") is None:
            raise PackageError(
                f"no .deb for {', '.join(missing)} in {debs_dir}, and apt-get is not available"
            )
        apt_download(missing, store)
    for p in packages:
        if not (unpacked / p).is_dir():
            deb = find_deb(p, search)
            if deb is None:
                raise PackageError(
                    f"{p}: .deb not found after download (looked in {', '.join(map(str, search))})"
                )
            unpack(deb, unpacked / p)
        out[p] = unpacked / p
    return out
