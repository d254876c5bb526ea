"""One-class bundles retrained per left-out real source, for the protocol's templated one-class row.

``python -m training.protocol oneclass-folds --out runs/loo-final/oneclass-folds``

The embedded one-class default trained on every real source, so its false alarms on a source fold are
in-domain figures. This driver makes, for each source S, the same model without S: the shipped recipe
(``--base``, by default ``training/oneclass/configs/default.yaml``, same step budget and augmentation) with
``data.exclude_sources: [S]`` (train and dev splits: the threshold is fitted on dev real clips without S),
then the shipped scoring refitted on that dev split (``--set pooling=mean``, exactly as ``stfpm-lite0-v2``
was made from its run), then the bundle ``OUT/S.onnx`` named ``<prefix>-S``. A protocol config row
``{oneclass-loso: OUT/{source}.onnx}`` scores it in fold ``source-S``.

Every step is a subprocess running the documented command (train, refit, export), so each fold is exactly
reproducible by hand; the driver only chains them, one fold at a time, in the order given (most informative
first, so a partial run says the most). It resumes: a fold whose bundle exists is skipped, a finished
training or refit is not redone, and an interrupted training resumes from its ``last.pt``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from training.oneclass.config import ConfigError

# Most informative first: the sources whose in-domain false alarms were highest or that are most unlike the
# rest (hedgewars 36.7 % wideband, asterisk the largest source), the narrowband codec2 last.
DEFAULT_SOURCES = (
    "hedgewars", "asterisk", "ktuberling", "klettres", "fillets_cs", "fillets_en", "codec2",
)  # fmt: skip
DEFAULT_BASE = Path(__file__).resolve().parents[1] / "oneclass" / "configs" / "default.yaml"
DEFAULT_REFIT = ("pooling=mean",)  # the scoring stfpm-lite0-v2 ships

Runner = Callable[[list[str], Path], int]


def fold_config(base: dict[str, Any], source: str, prefix: str) -> dict[str, Any]:
    """The base training config without ``source`` (train and dev splits), named ``<prefix>-<source>``."""
    cfg = yaml.safe_load(yaml.safe_dump(base))  # a deep copy that stays plain YAML
    if not isinstance(cfg.get("data"), dict):
        raise ConfigError("base config: no data section")
    cfg["name"] = f"{prefix}-{source}"
    excluded = list(cfg["data"].get("exclude_sources") or [])
    cfg["data"]["exclude_sources"] = [*excluded, source] if source not in excluded else excluded
    return cfg


def training_done(run_dir: Path, epochs: int) -> bool:
    """Whether a run finished its epochs and selected ``best.pt`` (then training is not rerun)."""
    if not (run_dir / "best.pt").exists() or not (run_dir / "last.pt").exists():
        return False
    from training.oneclass.checkpoint import load_checkpoint

    return int(load_checkpoint(run_dir / "last.pt")["epoch"]) >= epochs


def _subprocess(cmd: list[str], log: Path) -> int:
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode


class FoldError(RuntimeError):
    """A step of one fold failed (its log names the cause)."""


def make_folds(
    out: Path,
    sources: Sequence[str] = DEFAULT_SOURCES,
    base: Path = DEFAULT_BASE,
    prefix: str = "stfpm-lite0-v2-loso",
    refit_set: Sequence[str] = DEFAULT_REFIT,
    manifest: str | None = None,
    max_steps: int | None = None,
    run: Runner = _subprocess,
    say: Callable[[str], None] = print,
) -> dict[str, str]:
    """Make ``out/<S>.onnx`` for every source in order; returns source -> "done" | "skipped" | error text.

    A failed fold is reported and the next one starts (one bad source does not stop a long run)."""
    try:
        base_cfg = yaml.safe_load(Path(base).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{base}: base config not found") from None
    if not isinstance(base_cfg, dict):
        raise ConfigError(f"{base}: a config must be a mapping")
    if manifest:
        base_cfg.setdefault("data", {})["manifest"] = manifest
    epochs = int(base_cfg.get("train", {}).get("epochs", 1))
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    status: dict[str, str] = {}
    fold_times: list[float] = []
    for i, source in enumerate(sources, 1):
        tag = f"[{i}/{len(sources)}] {source}"
        bundle = out / f"{source}.onnx"
        if bundle.exists():
            say(f"{tag}: {bundle} exists, skipped")
            status[source] = "skipped"
            continue
        run_dir = out / source
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = run_dir / "fold.yaml"
        cfg_path.write_text(yaml.safe_dump(fold_config(base_cfg, source, prefix), sort_keys=False))
        log = run_dir / "driver.log"
        refitted = run_dir / "refit" / "best.pt"
        staged = run_dir / f"{source}.onnx"
        t0 = time.time()
        trained = False
        steps: list[tuple[str, list[str], Callable[[], bool]]] = [
            (
                "train",
                [py, "-m", "training.oneclass", "train", "--config", str(cfg_path), "--run-dir", str(run_dir)]
                + (["--max-steps", str(max_steps)] if max_steps else []),
                lambda rd=run_dir: max_steps is None and training_done(rd, epochs),
            ),
            (
                "refit",
                [py, "-m", "training.oneclass.refit", "--checkpoint", str(run_dir / "best.pt"),
                 "--out", str(refitted)] + [a for s in refit_set for a in ("--set", s)],
                lambda p=refitted: p.exists(),
            ),
            (
                "export",
                [py, "-m", "export", "oneclass", "--checkpoint", str(refitted if refit_set else
                 run_dir / "best.pt"), "--out", str(staged), "--name", f"{prefix}-{source}"],
                lambda: False,
            ),
        ]  # fmt: skip
        if not refit_set:
            steps = [steps[0], steps[2]]
        try:
            for step, cmd, finished in steps:
                if finished():
                    say(f"{tag}: {step} already done")
                    continue
                say(f"{tag}: {step} ({time.strftime('%H:%M:%S')}; log {log})")
                t1 = time.time()
                rc = run(cmd, log)
                if rc != 0:
                    raise FoldError(f"{step} exited with status {rc} (see {log})")
                trained = trained or step == "train"
                say(f"{tag}: {step} done in {time.time() - t1:.0f} s")
            if not staged.exists():
                raise FoldError(f"export wrote no bundle {staged} (see {log})")
            staged.replace(bundle)  # the bundle appears only once complete: its presence means done
        except FoldError as exc:
            say(f"{tag}: failed: {exc}")
            status[source] = str(exc)
            continue
        status[source] = "done"
        took = time.time() - t0
        if trained:  # a fold resumed after its training says nothing about the time a fold takes
            fold_times.append(took)
        left = sum(1 for s in sources[i:] if not (out / f"{s}.onnx").exists())
        eta = (
            f"; about {left * sum(fold_times) / len(fold_times) / 60:.0f} min for the {left} left"
            if left and fold_times
            else ""
        )
        say(f"{tag}: {bundle} in {took / 60:.1f} min{eta}")
    return status
