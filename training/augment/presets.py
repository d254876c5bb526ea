"""Named augmentation presets and the per-run ``augment`` config section the trainers read.

Two presets define what "real" includes:

* ``full``: the project's recommended chain: microphone colouring, room reverberation, one channel (telephone
  band-pass, G.711, a lossy codec: G.722 / Opus / AMR-NB, or a lower-rate recording), coloured noise, level
  and mild clipping.
* ``compact``: a cheaper chain of numpy/soxr operations only (no codec libraries): reverberation, white noise,
  one channel (G.711 mu-law/A-law or a lower-rate recording, or none) and a level change that never clips.

A run's section (YAML, the same in the one-class and supervised configs)::

    augment:
      enabled: true
      preset: full              # or compact
      seed: null                # null: augmentation draws from each crop's generator; an int: its own stream
      overrides:                # per augmentation (by name, wherever it sits in the preset)
        noise: {p: 0.6, snr_db: [10, 30]}
        codec: {weight: 1.0}    # inside a one_of: the choice's weight
      augmentations: null       # or an explicit chain (list of entries), instead of a preset

The older form ``params`` is still read, with its old meaning: ``{}`` or ``{chain: project}`` is the ``full``
preset, ``{builtin: {p_telephone: ..., ...}}`` the ``compact`` preset with those parameters, and
``{augmentations: [...]}`` an explicit chain.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.augment.chain import AugmentConfigError, Chain, Codec
from training.augment.codecs import unavailable_codecs

log = logging.getLogger(__name__)


def full_config(seed: int = 0) -> dict[str, Any]:
    """The ``full`` preset: the recommended "what real includes" chain for 16 kHz training crops."""
    return {
        "seed": seed,
        "augmentations": [
            {"name": "mic_colouring", "p": 0.5},
            {"name": "reverb", "p": 0.3},
            {
                "name": "one_of",
                "p": 0.5,
                "choices": [
                    {"name": "telephone_band", "weight": 1.0},
                    {"name": "g711", "weight": 1.0},
                    {"name": "codec", "codecs": ["g722", "opus", "amrnb"], "weight": 2.0},
                    {"name": "band_limit", "weight": 1.0},
                ],
            },
            {"name": "noise", "p": 0.4},
            {"name": "gain", "p": 0.5},
            {"name": "clipping", "p": 0.05},
        ],
    }


#: The reverberation of the ``compact`` preset: a plain decaying noise tail whose energy is a quarter of the
#: direct path's (direct-to-reverberant ratio 20 log10 2 dB), no pre-delay, no damping, level not restored.
_COMPACT_DRR_DB = 20.0 * math.log10(2.0)


def compact_config(
    seed: int = 0,
    *,
    p_telephone: float = 0.4,
    p_bandlimit: float = 0.15,
    p_noise: float = 0.3,
    snr_db: tuple[float, float] = (15.0, 40.0),
    p_reverb: float = 0.2,
    rt60_s: tuple[float, float] = (0.15, 0.6),
    gain_db: tuple[float, float] = (-12.0, 6.0),
) -> dict[str, Any]:
    """The ``compact`` preset; the keyword arguments are the older ``params: {builtin: {...}}`` fields.

    Per clip: reverberation (probability ``p_reverb``), white noise at ``snr_db`` (``p_noise``), then one
    channel: G.711 at 8 kHz (``p_telephone``; mu-law 70 %, A-law 30 %), a recording at 8, 11.025 or 12 kHz
    (``p_bandlimit``) or none, and always a level change within ``gain_db`` that is normalised rather than
    clipped.
    """
    p_none = 1.0 - p_telephone - p_bandlimit
    if min(p_telephone, p_bandlimit) < 0 or p_none < -1e-9:
        raise AugmentConfigError(
            f"compact: p_telephone ({p_telephone}) and p_bandlimit ({p_bandlimit}) must be >= 0 and sum to "
            "at most 1"
        )
    return {
        "seed": seed,
        "augmentations": [
            {
                "name": "reverb",
                "p": p_reverb,
                "rt60_s": list(rt60_s),
                "drr_db": [_COMPACT_DRR_DB, _COMPACT_DRR_DB],
                "predelay_ms": [0.0, 0.0],
                "length_rt60": 1.0,
                "damping": False,
                "keep_level": False,
            },
            {"name": "noise", "p": p_noise, "snr_db": list(snr_db), "colours": ["white"]},
            {
                "name": "one_of",
                "p": 1.0,
                "choices": [
                    {"name": "g711", "law": "random", "mulaw_share": 0.7, "weight": p_telephone},
                    {"name": "band_limit", "rates": [8000, 11025, 12000], "weight": p_bandlimit},
                    {"name": "identity", "weight": max(p_none, 0.0)},
                ],
            },
            {"name": "gain", "p": 1.0, "gain_db": list(gain_db), "limit": "normalise"},
        ],
    }


def default_config(seed: int = 0) -> dict[str, Any]:
    """The chain used when a run names no preset: ``full``."""
    return full_config(seed)


PRESETS: dict[str, Callable[..., dict[str, Any]]] = {"full": full_config, "compact": compact_config}


def preset_config(name: str, seed: int = 0) -> dict[str, Any]:
    """The chain config of preset ``name``."""
    if name not in PRESETS:
        raise AugmentConfigError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name](seed)


def _names(entries: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for e in entries:
        out.add(str(e.get("name")))
        out |= _names(list(e.get("choices", [])))
    return out


def apply_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``config`` with each ``overrides[name]`` mapping merged into every entry called ``name``.

    ``p`` applies to entries of the chain itself, ``weight`` to choices of a ``one_of``; any other key is a
    parameter of that augmentation (checked when the chain is built). Naming an augmentation the chain does
    not contain is an error, so a typo cannot silently leave the preset as it was.
    """
    out = copy.deepcopy(dict(config))
    if not overrides:
        return out
    if not isinstance(overrides, Mapping):
        raise AugmentConfigError("overrides: must map augmentation names to parameter mappings")
    entries = out.get("augmentations", [])
    present = _names(entries)
    for name, params in overrides.items():
        if name not in present:
            raise AugmentConfigError(f"overrides: the chain has no {name!r}; it has {sorted(present)}")
        if not isinstance(params, Mapping):
            raise AugmentConfigError(f"overrides/{name}: expected a mapping of parameters, got {params!r}")

    def visit(items: list[dict[str, Any]], inside_one_of: bool) -> None:
        for e in items:
            params = overrides.get(e.get("name"))
            if params is not None:
                if inside_one_of and "p" in params:
                    raise AugmentConfigError(
                        f"overrides/{e['name']}: a one_of choice takes 'weight', not 'p'"
                    )
                if not inside_one_of and "weight" in params:
                    raise AugmentConfigError(
                        f"overrides/{e['name']}: 'weight' is for one_of choices; use 'p'"
                    )
                e.update(copy.deepcopy(dict(params)))
            if "choices" in e:
                visit(e["choices"], True)

    visit(entries, False)
    return out


_SECTION_KEYS = ("enabled", "preset", "seed", "overrides", "augmentations", "params")


def _section(section: Any) -> dict[str, Any]:
    """The ``augment`` section as a dict, from a mapping or a config dataclass."""
    if section is None:
        return {}
    if isinstance(section, Mapping):
        unknown = sorted(set(section) - set(_SECTION_KEYS))
        if unknown:
            raise AugmentConfigError(f"augment: unknown key(s) {unknown}; known: {list(_SECTION_KEYS)}")
        return dict(section)
    return {k: getattr(section, k) for k in _SECTION_KEYS if hasattr(section, k)}


def resolve(section: Any, seed: int = 0) -> dict[str, Any] | None:
    """The chain config a run's ``augment`` section stands for (None when augmentation is off).

    ``seed`` (the run's training seed) seeds the chain's own generator when the section gives no ``seed``.
    """
    s = _section(section)
    if not s.get("enabled", True):
        return None
    chain_seed = int(s["seed"]) if s.get("seed") is not None else int(seed)
    preset = s.get("preset") or "full"
    overrides = s.get("overrides") or {}
    explicit = s.get("augmentations")
    params = dict(s.get("params") or {})
    if params:
        if preset != "full" or overrides or explicit is not None:
            raise AugmentConfigError(
                "augment: give either 'params' (the older form) or preset/overrides/augmentations, not both"
            )
        unknown = sorted(set(params) - {"builtin", "chain", "augmentations", "seed"})
        if unknown:
            raise AugmentConfigError(
                f"augment.params: unknown key(s) {unknown}; known: builtin, chain, augmentations, seed"
            )
        if "builtin" in params:
            try:
                return compact_config(chain_seed, **dict(params["builtin"] or {}))
            except TypeError as exc:
                raise AugmentConfigError(f"augment.params.builtin: {exc}") from None
        if "augmentations" in params:
            return {"seed": int(params.get("seed", chain_seed)), "augmentations": params["augmentations"]}
        if params.get("chain", "project") != "project":
            raise AugmentConfigError(
                f"augment.params.chain: only 'project' is known, got {params['chain']!r}"
            )
        return full_config(chain_seed)
    if explicit is not None:
        if not isinstance(explicit, list):
            raise AugmentConfigError("augment.augmentations: must be a list of entries")
        return apply_overrides({"seed": chain_seed, "augmentations": explicit}, overrides)
    return apply_overrides(preset_config(str(preset), chain_seed), overrides)


def drop_unavailable(
    config: Mapping[str, Any], unavailable: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """``config`` without the codecs this machine cannot run, and those codecs with the reason.

    A ``codec`` entry left with no codec is removed (from the chain, or as a ``one_of`` choice with its
    weight), so the remaining choices keep their relative weights.
    """
    missing = dict(unavailable_codecs() if unavailable is None else unavailable)
    skipped: dict[str, str] = {}

    def keep(e: dict[str, Any]) -> dict[str, Any] | None:
        if e.get("name") == "codec":
            codecs = list(e.get("codecs", Codec().codecs))
            gone = [c for c in codecs if c in missing]
            for c in gone:
                skipped[c] = missing[c]
            left = [c for c in codecs if c not in missing]
            if not left:
                return None
            return {**e, "codecs": left}
        if "choices" in e:
            choices = [c for c in (keep(dict(c)) for c in e["choices"]) if c is not None]
            return {**e, "choices": choices} if choices else None
        return e

    out = copy.deepcopy(dict(config))
    entries = [keep(dict(e)) for e in out.get("augmentations", [])]
    out["augmentations"] = [e for e in entries if e is not None]
    return out, skipped


@dataclass
class Augmenter:
    """A run's augmentation: ``augmenter(crop, rng)`` -> augmented crop (float32, same length).

    With ``seed`` None the chain draws from the crop's generator (after the crop was cut), which is what
    makes a resumed run replay the same augmentation. With an integer ``seed`` each crop gets its own
    generator derived from ``seed`` and one draw of the crop's generator, so changing the augmentation seed
    changes the augmentation and leaves the crops as they were.
    """

    chain: Chain
    sample_rate: int
    seed: int | None = None
    preset: str = "full"
    skipped: dict[str, str] = field(default_factory=dict)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.seed is not None:
            rng = np.random.default_rng([self.seed, int(rng.integers(2**63))])
        return self.chain(x, self.sample_rate, rng)

    def summary(self) -> str:
        """One line for the run log: preset, seed and the codecs skipped on this machine."""
        seed = "crop generators" if self.seed is None else f"seed {self.seed}"
        text = f"augmentation: {self.preset} ({len(self.chain.steps)} steps, {seed})"
        if self.skipped:
            text += "; codecs unavailable here, skipped: " + "; ".join(
                f"{c} ({why})" for c, why in sorted(self.skipped.items())
            )
        return text


def preset_name(section: Any) -> str:
    """``full``, ``compact`` or ``explicit`` (a chain written out) for a run's section in either form, ``off``
    when augmentation is disabled. For run logs and the bundle's provenance."""
    s = _section(section)
    if not s.get("enabled", True):
        return "off"
    params = s.get("params") or {}
    if "builtin" in params:
        return "compact"
    if "augmentations" in params or s.get("augmentations") is not None:
        return "explicit"
    return str(s.get("preset") or "full")


_REPORTED: set[tuple[str, ...]] = set()


def build_augmenter(
    section: Any, sample_rate: int, seed: int = 0, *, check_codecs: bool = True
) -> Augmenter | None:
    """The augmenter for a run's ``augment`` section (None when disabled).

    With ``check_codecs`` the codecs are probed once per process and the unavailable ones dropped; that is
    reported once (a logging warning and :meth:`Augmenter.summary`), never per clip. Raises
    :class:`AugmentConfigError` naming the bad key or entry.
    """
    config = resolve(section, seed)
    if config is None:
        return None
    skipped: dict[str, str] = {}
    if check_codecs:
        config, skipped = drop_unavailable(config)
    chain = Chain.from_config(config)
    aug_seed = _section(section).get("seed")
    augmenter = Augmenter(
        chain, sample_rate, None if aug_seed is None else int(aug_seed), preset_name(section), skipped
    )
    key = tuple(sorted(skipped))
    if skipped and key not in _REPORTED:
        _REPORTED.add(key)
        log.warning(augmenter.summary())
    return augmenter


def check_section(section: Any) -> None:
    """Validate a run's ``augment`` section without probing codecs (for config loading)."""
    config = resolve(section)
    if config is not None:
        Chain.from_config(config)


__all__ = [
    "PRESETS",
    "Augmenter",
    "apply_overrides",
    "build_augmenter",
    "check_section",
    "compact_config",
    "default_config",
    "drop_unavailable",
    "full_config",
    "preset_config",
    "preset_name",
    "resolve",
]
