"""Build the offline corpus: bona fide clips from Debian packages, synthetic clips from classic TTS engines
and vocoder resyntheses, each through the same shortcut removal and the same channel chains, plus a manifest.

The build is a list of independent *jobs*, one per source clip or synthetic utterance. A job writes its audio
(one file per channel) and then a small JSON sidecar with its manifest rows or the reason it was skipped; both
through temporary files and renames. A rerun skips every job whose sidecar exists, so the build is idempotent
and resumes after a kill. The manifest is assembled from the sidecars at the end.

Per clip, identically for both classes::

    read (any format, ffmpeg for raw G.722) -> trim leading/trailing silence -> speech check (silero VAD)
      -> minimum duration -> resample to 16 kHz -> level (-26 dBFS active, peak <= -1 dBFS)
      -> channel (wideband: G.722 round trip; telephone: mu-law 8 kHz round trip) -> dither -> 16-bit FLAC
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from training.audio_io import (
    AudioReadError,
    CodecError,
    LevelConfig,
    TrimConfig,
    add_dither,
    g711_roundtrip,
    g722_roundtrip,
    normalize_level,
    read_audio,
    read_raw_pcm16,
    resample,
    trim_silence,
    write_audio_atomic,
)
from training.corpus import debs as debs_mod
from training.corpus.manifest import ManifestRow, summarize, write_manifest
from training.corpus.sources import (
    ASTERISK_LANGS,
    SourceClip,
    asterisk_transcripts,
    discover_asterisk,
    discover_codec2,
    discover_fillets,
    discover_hedgewars,
    discover_klettres,
    discover_ktuberling,
)
from training.corpus.splits import (
    RESYNTHESIS_PARENT_SPLIT,
    SPOOF_FAMILY,
    SPOOF_SPLIT,
    hashed_speaker_splits,
    real_split,
)
from training.corpus.synth import (
    RESYNTHESIZERS,
    SynthesisError,
    TTSVoice,
    clean_text,
    engine_available,
    synthesize,
    tts_voices,
)

SAMPLE_RATE = 16000
CHANNELS = ("wideband", "telephone")
VAD_FRAME = 512  # samples at 16 kHz per voice-activity frame (silero-vad)
#: bump when the processing changes in a way ProcessConfig does not capture: finished clips are then redone
PIPELINE_VERSION = 2
#: skip reasons that say nothing about the clip itself; such skips are not remembered between runs
TRANSIENT_MARKERS = ("is not installed", "timed out")


def default_cache() -> Path:
    """``$STREAM_GUARD_CACHE`` or ``~/.cache/stream-guard``."""
    env = os.environ.get("STREAM_GUARD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stream-guard"


# ----------------------------------------------------------------------------------------------------
# profiles


@dataclass(frozen=True)
class Profile:
    """What a build includes. ``real_per_group`` caps real clips per (source, split) (``None``: all)."""

    name: str
    asterisk_langs: tuple[str, ...]
    asterisk_variants: tuple[str, ...]
    other_sources: tuple[str, ...]
    tts_per_voice: dict[str, int]  # system -> texts per voice
    resynth_count: dict[str, int]  # system -> clips
    real_per_group: int | None = None
    espeak_voices: tuple[str, ...] | None = None  # None: all of synth.ESPEAK_VOICES


PROFILES: dict[str, Profile] = {
    "full": Profile(
        name="full",
        asterisk_langs=tuple(ASTERISK_LANGS),
        asterisk_variants=("g722", "wav"),
        other_sources=("fillets_cs", "fillets_en", "klettres", "ktuberling", "hedgewars", "codec2"),
        tts_per_voice={
            "espeak": 30,
            "flite_kal16": 100,
            "flite_slt": 100,
            "flite_awb": 100,
            "flite_rms": 100,
            "festival_kal": 150,
            "festival_ked": 150,
        },
        resynth_count={"world": 400, "griffinlim": 400},
    ),
    "tiny": Profile(
        name="tiny",
        asterisk_langs=("en", "ru"),
        asterisk_variants=("g722",),
        other_sources=("fillets_cs",),
        tts_per_voice={"espeak": 3, "flite_kal16": 6},
        resynth_count={},
        real_per_group=6,
        espeak_voices=("en-us", "en-gb"),
    ),
}

OTHER_SOURCES: dict[str, tuple[str, Callable[[Path], Iterable[SourceClip]]]] = {
    "fillets_cs": ("fillets-ng-data-cs", lambda r: discover_fillets(r, "cs", "fillets-ng-data-cs")),
    "fillets_en": ("fillets-ng-data", lambda r: discover_fillets(r, "en", "fillets-ng-data")),
    "klettres": ("klettres-data", lambda r: discover_klettres(r, "klettres-data")),
    "ktuberling": ("ktuberling-data", lambda r: discover_ktuberling(r, "ktuberling-data")),
    "hedgewars": ("hedgewars-data", lambda r: discover_hedgewars(r, "hedgewars-data")),
    "codec2": ("codec2-examples", lambda r: discover_codec2(r, "codec2-examples")),
}

TTS_LICENCE = {
    "espeak": "GPL-3.0-or-later (espeak-ng)",
    "flite": "BSD-style (flite, CMU)",
    "festival": "BSD-style (festival, festvox kal/ked diphones)",
}


def profile_packages(profile: Profile) -> list[str]:
    pkgs: list[str] = []
    for lang in profile.asterisk_langs:
        pkgs.append(f"asterisk-core-sounds-{lang}")  # transcripts
        pkgs += [f"asterisk-core-sounds-{lang}-{v}" for v in profile.asterisk_variants]
    pkgs += [OTHER_SOURCES[s][0] for s in profile.other_sources]
    return pkgs


# ----------------------------------------------------------------------------------------------------
# jobs


@dataclass(frozen=True)
class ProcessConfig:
    """Shortcut-removal settings shared by every clip of both classes."""

    sample_rate: int = SAMPLE_RATE
    min_duration_s: float = 0.8
    max_duration_s: float = 20.0
    min_speech_s: float = 0.3
    min_speech_fraction: float = 0.1
    vad_threshold: float = 0.5
    vad_margin_s: float = 0.1
    use_vad: bool = True
    trim: TrimConfig = field(default_factory=TrimConfig)
    level: LevelConfig = field(default_factory=LevelConfig)
    channels: tuple[str, ...] = CHANNELS


@dataclass(frozen=True)
class Job:
    """One clip to produce. ``kind`` is ``real`` (``path`` is the recording), ``tts`` (``text`` read by
    ``voice``) or ``resynth`` (``path`` is the real parent, vocoded by ``system``)."""

    kind: str
    clip_id: str
    label: str
    system: str
    family: str
    source: str
    speaker: str
    language: str
    split: str
    licence: str
    path: str = ""
    input_format: str | None = None
    raw_rate: int | None = None
    band: str = ""
    text: str = ""
    parent: str = ""
    voice: tuple[str, str, str, str] | None = None  # TTSVoice fields

    @property
    def folder(self) -> str:
        return self.source if self.label == "bonafide" else self.system


@dataclass
class JobResult:
    clip_id: str
    rows: list[dict[str, object]]
    skipped: str = ""
    config: str = ""


def config_fingerprint(cfg: ProcessConfig) -> str:
    """Identifies the processing a finished clip went through; a rerun with other settings redoes the clip."""
    blob = json.dumps([PIPELINE_VERSION, asdict(cfg)], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


_VAD = None
_VAD_LOADED = False


def _vad():
    global _VAD, _VAD_LOADED
    if not _VAD_LOADED:
        from training.corpus.vad import load_vad

        _VAD = load_vad()
        _VAD_LOADED = True
    return _VAD


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha1("\x1f".join(parts).encode()).digest()[:8], "little")


def _load_source(job: Job) -> tuple[np.ndarray, int]:
    if job.raw_rate is not None:
        return read_raw_pcm16(job.path, job.raw_rate)
    return read_audio(job.path, input_format=job.input_format)


def apply_channel(x: np.ndarray, sample_rate: int, channel: str) -> np.ndarray:
    """The channel chains every clip of both classes goes through."""
    if channel == "wideband":
        return g722_roundtrip(x, sample_rate)
    if channel == "telephone":
        return g711_roundtrip(x, sample_rate, "mulaw")
    raise ValueError(f"unknown channel {channel!r} (expected one of {CHANNELS})")


def prepare(x: np.ndarray, sr: int, cfg: ProcessConfig, what: str) -> np.ndarray:
    """Trim, check speech and duration, resample and normalise; raises ``ValueError`` naming ``what`` when the
    clip has no usable speech.

    Energy trimming cuts digital and near-digital silence; the voice-activity step then cuts what energy
    trimming keeps on noisy recordings (room tone, music or effect tails), so that real and synthetic clips
    alike start and end ``vad_margin_s`` around their speech, and nothing but the speech can tell them apart.
    """
    y = trim_silence(x, sr, cfg.trim)
    dur = y.shape[0] / sr
    if dur < cfg.min_duration_s:
        raise ValueError(f"{what}: too short after trimming ({dur:.2f} s < {cfg.min_duration_s} s)")
    vad = _vad() if cfg.use_vad else None
    if vad is not None:
        prob = vad.probabilities(y, sr)
        active = np.flatnonzero(prob >= cfg.vad_threshold)
        frame_s = VAD_FRAME / 16000.0
        speech_s = active.size * frame_s
        frac = active.size / max(1, prob.size)
        if speech_s < cfg.min_speech_s or frac < cfg.min_speech_fraction:
            raise ValueError(
                f"{what}: no speech detected (voice activity {speech_s:.2f} s, {frac:.0%} of the clip)"
            )
        start = max(0.0, active[0] * frame_s - cfg.vad_margin_s)
        end = min(dur, (active[-1] + 1) * frame_s + cfg.vad_margin_s)
        y = y[int(start * sr) : int(np.ceil(end * sr))]
        dur = y.shape[0] / sr
        if dur < cfg.min_duration_s:
            raise ValueError(
                f"{what}: too short after trimming to speech ({dur:.2f} s < {cfg.min_duration_s} s)"
            )
    if dur > cfg.max_duration_s:
        y = y[: int(cfg.max_duration_s * sr)]
    y = resample(y, sr, cfg.sample_rate)
    return normalize_level(y, cfg.sample_rate, cfg.level)


def run_job(job: Job, out_root: Path, cfg: ProcessConfig) -> JobResult:
    """Produce one clip in every channel (or a skip reason). Never raises for bad input."""
    sidecar = out_root / "rows" / f"{job.clip_id}.json"
    try:
        if job.kind == "real":
            x, sr = _load_source(job)
            band = job.band or ("narrowband" if sr <= 8000 else "wideband")
        elif job.kind == "tts":
            if job.voice is None:
                raise ValueError(f"{job.clip_id}: TTS job without a voice")
            x, sr = synthesize(TTSVoice(*job.voice), job.text)
            band = "wideband"
        elif job.kind == "resynth":
            x, sr = _load_source(job)
            band = job.band or ("narrowband" if sr <= 8000 else "wideband")
            # Vocode the parent after the same trimming and resampling, then run the standard chain on the
            # result.
            x = resample(trim_silence(x, sr, cfg.trim), sr, cfg.sample_rate)
            sr = cfg.sample_rate
            if x.shape[0] < cfg.min_duration_s * sr:
                raise ValueError(f"{job.path}: parent clip too short after trimming")
            x = RESYNTHESIZERS[job.system](x, sr)
        else:
            raise ValueError(f"unknown job kind {job.kind!r}")
        what = job.path if job.kind == "real" else f"{job.system} clip {job.clip_id}"
        y = prepare(x, sr, cfg, what)
        rows = []
        for channel in cfg.channels:
            z = apply_channel(y, cfg.sample_rate, channel)
            z = add_dither(z, np.random.default_rng(_seed(job.clip_id, channel)))
            path = out_root / "audio" / channel / job.folder / f"{job.clip_id}.flac"
            write_audio_atomic(path, z, cfg.sample_rate)
            row = ManifestRow(
                path=str(path),
                label=job.label,
                system=job.system,
                family=job.family,
                source=job.source,
                speaker=job.speaker,
                language=job.language,
                band=band,
                channel=channel,
                split=job.split,
                duration=round(z.shape[0] / cfg.sample_rate, 3),
                licence=job.licence,
                clip_id=job.clip_id,
                parent=job.parent,
                text=job.text,
            )
            rows.append(asdict(row))
        result = JobResult(job.clip_id, rows)
    except (AudioReadError, CodecError, SynthesisError, ValueError, OSError) as exc:
        result = JobResult(job.clip_id, [], skipped=str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug in one clip must not end a multi-hour build
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        result = JobResult(job.clip_id, [], skipped=f"{job.path or job.clip_id}: unexpected error: {tb}")
    if any(marker in result.skipped for marker in TRANSIENT_MARKERS):
        return result  # a missing tool or a timeout: not the clip's fault, so a rerun tries it again
    result.config = config_fingerprint(cfg)
    _write_json_atomic(sidecar, asdict(result))
    return result


def _write_json_atomic(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False)
    os.replace(tmp, path)


def _read_sidecar(path: Path) -> JobResult | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return JobResult(d["clip_id"], d["rows"], d.get("skipped", ""), d.get("config", ""))
    except (OSError, ValueError, KeyError):
        return None


# ----------------------------------------------------------------------------------------------------
# planning


def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def discover_real(
    profile: Profile, roots: dict[str, Path]
) -> tuple[list[SourceClip], dict[str, dict[str, str]]]:
    """All real clips of the profile (deduplicated by file content) and the Asterisk transcripts per
    language."""
    clips: list[SourceClip] = []
    texts: dict[str, dict[str, str]] = {}
    for lang in profile.asterisk_langs:
        doc = roots.get(f"asterisk-core-sounds-{lang}")
        texts[lang] = asterisk_transcripts(doc, lang) if doc else {}
        for variant in profile.asterisk_variants:
            pkg = f"asterisk-core-sounds-{lang}-{variant}"
            if pkg in roots:
                clips += list(discover_asterisk(roots[pkg], lang, variant, pkg, texts[lang]))
    for source in profile.other_sources:
        pkg, discover = OTHER_SOURCES[source]
        if pkg in roots:
            clips += list(discover(roots[pkg]))
    seen: set[str] = set()
    unique: list[SourceClip] = []
    for clip in clips:
        try:
            digest = _file_digest(clip.path.resolve())
        except OSError:
            digest = clip.clip_id  # unreadable: let its job report it by name
        if digest in seen:
            continue
        seen.add(digest)
        unique.append(clip)
    return unique, texts


def plan_jobs(profile: Profile, clips: list[SourceClip], texts: dict[str, dict[str, str]]) -> list[Job]:
    """Turn discovered clips and text pools into jobs, with splits (see :mod:`training.corpus.splits`)."""
    by_source: dict[str, set[str]] = defaultdict(set)
    for c in clips:
        by_source[c.source].add(c.speaker)
    speaker_splits = {s: hashed_speaker_splits(spks) for s, spks in by_source.items()}

    real_jobs: list[Job] = []
    for c in clips:
        split = real_split(c.source, c.speaker, c.language, speaker_splits.get(c.source, {}))
        band = "narrowband" if c.clip_id.startswith("asterisk-wav-") else ""
        real_jobs.append(
            Job(
                kind="real",
                clip_id=c.clip_id,
                label="bonafide",
                system="bonafide",
                family="none",
                source=c.source,
                speaker=c.speaker,
                language=c.language,
                split=split,
                licence=c.licence,
                path=str(c.path),
                input_format=c.input_format,
                raw_rate=c.raw_rate,
                band=band,
                text=c.text,
            )
        )
    if profile.real_per_group is not None:
        groups: dict[tuple[str, str], list[Job]] = defaultdict(list)
        for j in real_jobs:
            groups[(j.source, j.split)].append(j)
        real_jobs = []
        for key in sorted(groups):
            ordered = sorted(groups[key], key=lambda j: _seed("tiny", j.clip_id))
            real_jobs += ordered[: profile.real_per_group]

    jobs = list(real_jobs)
    # TTS: each voice reads its own seeded sample of prompts of its language.
    pools = {
        lang: sorted({t for t in (clean_text(v) for v in tx.values()) if len(t.split()) >= 3})
        for lang, tx in texts.items()
    }
    for voice in tts_voices():
        n = profile.tts_per_voice.get(voice.system, 0)
        if n == 0 or (
            voice.system == "espeak"
            and profile.espeak_voices is not None
            and voice.voice not in profile.espeak_voices
        ):
            continue
        pool = pools.get(voice.language) or []
        chosen = random.Random(_seed("texts", voice.speaker)).sample(pool, min(n, len(pool)))
        licence = f"text CC-BY-SA-3.0 (Asterisk prompts); voice {TTS_LICENCE[voice.engine]}"
        for i, text in enumerate(chosen):
            jobs.append(
                Job(
                    kind="tts",
                    clip_id=f"{voice.system}-{voice.voice.replace('+', '_')}-{i:04d}",
                    label="spoof",
                    system=voice.system,
                    family=SPOOF_FAMILY[voice.system],
                    source=voice.engine,
                    speaker=voice.speaker,
                    language=voice.language,
                    split=SPOOF_SPLIT[voice.system],
                    licence=licence,
                    text=text,
                    voice=(voice.system, voice.voice, voice.language, voice.engine),
                )
            )
    return jobs


def plan_resyntheses(profile: Profile, real_jobs: Iterable[Job], usable: set[str]) -> list[Job]:
    """Vocoder resyntheses, from held-out real clips only (WORLD from ``dev``, Griffin-Lim from ``eval``).

    Parents are drawn (seeded) among real clips that came through the build (``usable``), so that none is
    wasted on a clip that is too short or holds no speech.
    """
    jobs: list[Job] = []
    for system, n in profile.resynth_count.items():
        split = RESYNTHESIS_PARENT_SPLIT[system]
        parents = [j for j in real_jobs if j.kind == "real" and j.split == split and j.clip_id in usable]
        parents.sort(key=lambda j: _seed(system, j.clip_id))
        for p in parents[:n]:
            jobs.append(
                replace(
                    p,
                    kind="resynth",
                    clip_id=f"{system}-{p.clip_id}",
                    label="spoof",
                    system=system,
                    family=SPOOF_FAMILY[system],
                    split=SPOOF_SPLIT[system],
                    parent=p.clip_id,
                    licence=f"{p.licence} (resynthesis of {p.source})",
                )
            )
    return jobs


def available_jobs(jobs: list[Job], console: Console) -> list[Job]:
    """Drop TTS jobs whose engine is not installed, saying so once per engine."""
    missing = sorted(
        {j.voice[3] for j in jobs if j.kind == "tts" and j.voice and not engine_available(j.voice[3])}
    )
    for engine in missing:
        console.print(f"[yellow]skipping {engine} voices: the engine is not installed[/yellow]")
    return [j for j in jobs if not (j.kind == "tts" and j.voice and j.voice[3] in missing)]


# ----------------------------------------------------------------------------------------------------
# the build


@dataclass
class BuildReport:
    manifest: Path
    rows: int
    skipped: list[tuple[str, str, str]]  # (source or system, clip id, reason)
    failed_packages: dict[str, str]


def build(
    profile_name: str | Profile = "tiny",
    cache: Path | None = None,
    jobs: int = 1,
    debs_dir: Path | None = None,
    config: ProcessConfig | None = None,
    console: Console | None = None,
) -> BuildReport:
    """Build (or resume) a corpus profile; returns where the manifest is and what was skipped."""
    if isinstance(profile_name, Profile):
        profile = profile_name
    elif profile_name in PROFILES:
        profile = PROFILES[profile_name]
    else:
        raise ValueError(f"unknown profile {profile_name!r}; choose one of {sorted(PROFILES)}")
    cfg = config or ProcessConfig()
    cache = (cache or default_cache()).expanduser()
    console = console or Console(stderr=True, soft_wrap=True)
    out_root = cache / "corpus" / profile.name

    roots: dict[str, Path] = {}
    failed: dict[str, str] = {}
    packages = profile_packages(profile)
    with _progress(console) as progress:
        task = progress.add_task("packages", total=len(packages))
        for pkg in packages:
            progress.update(task, description=f"package {pkg}")
            try:
                roots.update(debs_mod.ensure_packages([pkg], cache, debs_dir))
            except debs_mod.PackageError as exc:
                failed[pkg] = str(exc)
            progress.advance(task)
    for pkg, msg in failed.items():
        console.print(f"[red]package {pkg} unavailable, its source is skipped:[/red] {msg}")

    clips, texts = discover_real(profile, roots)
    _report_empty_packages(profile, roots, clips, console)
    first = available_jobs(plan_jobs(profile, clips, texts), console)
    fingerprint = config_fingerprint(cfg)
    results: dict[str, JobResult] = {}
    with _progress(console) as progress:
        _run_phase(first, out_root, cfg, jobs, fingerprint, results, progress, f"building {profile.name}")
        # second phase: resyntheses need to know which held-out real clips came through
        usable = {cid for cid, res in results.items() if res.rows}
        second = plan_resyntheses(profile, first, usable)
        if second:
            _run_phase(second, out_root, cfg, jobs, fingerprint, results, progress, "resyntheses")
    plan = first + second

    by_id = {j.clip_id: j for j in plan}
    rows = [ManifestRow(**r) for job in plan for r in results[job.clip_id].rows]
    skipped = sorted(
        (by_id[cid].folder, cid, r.skipped) for cid, r in results.items() if r.skipped and cid in by_id
    )
    manifest = out_root / "manifest.csv"
    n = write_manifest(manifest, rows)
    _write_skipped(out_root / "skipped.csv", skipped)
    _prune(out_root, {Path(r.path) for r in rows}, {f"{j.clip_id}.json" for j in plan})
    _print_summary(console, rows, skipped, plan, manifest)
    return BuildReport(manifest, n, skipped, failed)


def _run_phase(
    plan: list[Job],
    out_root: Path,
    cfg: ProcessConfig,
    jobs: int,
    fingerprint: str,
    results: dict[str, JobResult],
    progress: Progress,
    title: str,
) -> None:
    """Run the jobs of ``plan`` that have no valid sidecar yet; record every result in ``results``."""
    todo: list[Job] = []
    for job in plan:
        done = _read_sidecar(out_root / "rows" / f"{job.clip_id}.json")
        if (
            done is not None
            and done.config == fingerprint
            and (done.skipped or all(Path(r["path"]).is_file() for r in done.rows))
        ):
            results[job.clip_id] = done
        else:
            todo.append(job)
    progress.console.print(
        f"{title} in {out_root}: {len(plan)} clips planned, {len(plan) - len(todo)} already done"
    )
    task = progress.add_task(title, total=len(plan), completed=len(plan) - len(todo))
    for res in _execute(todo, out_root, cfg, jobs):
        results[res.clip_id] = res
        progress.advance(task)


def _execute(todo: list[Job], out_root: Path, cfg: ProcessConfig, jobs: int) -> Iterable[JobResult]:
    if jobs <= 1 or len(todo) <= 1:
        for job in todo:
            yield run_job(job, out_root, cfg)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        pending = set()
        it = iter(todo)
        for job in it:  # keep a bounded number of jobs in flight
            pending.add(pool.submit(run_job, job, out_root, cfg))
            if len(pending) >= jobs * 4:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield fut.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.add(pool.submit(run_job, nxt, out_root, cfg))


def _prune(out_root: Path, keep_audio: set[Path], keep_sidecars: set[str]) -> None:
    """Delete clips and sidecars of this profile that the manifest no longer lists (left over from a build
    with other settings), so the folder holds exactly what the manifest describes."""
    audio = out_root / "audio"
    if audio.is_dir():
        for path in audio.rglob("*.flac"):
            if path not in keep_audio:
                path.unlink(missing_ok=True)
    rows = out_root / "rows"
    if rows.is_dir():
        for path in rows.glob("*.json"):
            if path.name not in keep_sidecars:
                path.unlink(missing_ok=True)


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _report_empty_packages(
    profile: Profile, roots: dict[str, Path], clips: list[SourceClip], console: Console
) -> None:
    found = Counter(c.package for c in clips)
    for pkg, root in roots.items():
        if pkg.startswith("asterisk-core-sounds-") and pkg.count("-") == 3:
            continue  # transcripts only
        if found[pkg] == 0:
            console.print(f"[red]{pkg}: no audio found under {root}; source skipped[/red]")


def _write_skipped(path: Path, skipped: list[tuple[str, str, str]]) -> None:
    import csv

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".csv")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["source_or_system", "clip_id", "reason"])
        w.writerows(skipped)
    os.replace(tmp, path)


def _reason_kind(reason: str) -> str:
    for key in ("too short", "no speech", "ffmpeg", "empty", "NaN", "unexpected", "timed out"):
        if key in reason:
            return key
    return "unreadable/other"


def _print_summary(
    console: Console,
    rows: list[ManifestRow],
    skipped: list[tuple[str, str, str]],
    plan: list[Job],
    manifest: Path,
) -> None:
    table = Table(title=f"corpus: {manifest}")
    for col in ("label", "source/system", "split", "clips", "hours"):
        table.add_column(col, justify="right" if col in ("clips", "hours") else "left")
    one_channel = [r for r in rows if r.channel == rows[0].channel] if rows else []
    for (label, name, split), (n, h) in summarize(
        [replace(r, source=r.source if r.label == "bonafide" else r.system) for r in one_channel],
        ("label", "source", "split"),
    ).items():
        table.add_row(label, name, split, str(n), f"{h:.3f}")
    console.print(table)
    if one_channel:
        console.print(
            f"(per channel; {len(rows)} manifest rows over {len({r.channel for r in rows})} channels)"
        )
    if skipped:
        kinds = Counter((s, _reason_kind(r)) for s, _, r in skipped)
        console.print(
            f"[yellow]skipped {len(skipped)} clips[/yellow] (all reasons in {manifest.parent}/skipped.csv):"
        )
        for (name, kind), n in sorted(kinds.items()):
            console.print(f"  {name}: {n} x {kind}")
    planned = Counter(j.folder for j in plan)
    kept = Counter((r.source if r.label == "bonafide" else r.system) for r in one_channel)
    for name in sorted(planned):
        if kept[name] == 0:
            console.print(f"[red]{name}: no usable clips ({planned[name]} tried); see skipped.csv[/red]")
