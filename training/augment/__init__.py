"""On-the-fly, seeded augmentation that defines what "real" speech includes (channels, codecs, microphones,
rooms, noise, level, clipping): the only augmentation code of the trainers.

:mod:`training.augment.chain` holds the augmentations and the seeded :class:`Chain`;
:mod:`training.augment.presets` the named presets (``full``, ``compact``) and the per-run ``augment`` config
section (:func:`build_augmenter`); :mod:`training.augment.codecs` which codecs this machine can run.
``python -m training.augment demo --out DIR`` draws a spectrogram of each augmentation, ``python -m
training.augment codecs`` lists the codecs and their back ends.
"""

from training.augment.chain import (
    G711,
    REGISTRY,
    Augmentation,
    AugmentConfigError,
    BandLimit,
    Chain,
    Clipping,
    Codec,
    Gain,
    Identity,
    MicColouring,
    Noise,
    OneOf,
    Reverb,
    TelephoneBand,
    build_augmentation,
)
from training.augment.codecs import CODECS, codec_status, unavailable_codecs
from training.augment.presets import (
    PRESETS,
    Augmenter,
    apply_overrides,
    build_augmenter,
    check_section,
    compact_config,
    default_config,
    full_config,
    preset_config,
    preset_name,
    resolve,
)

__all__ = [
    "AugmentConfigError",
    "Augmentation",
    "Augmenter",
    "BandLimit",
    "CODECS",
    "Chain",
    "Clipping",
    "Codec",
    "G711",
    "Gain",
    "Identity",
    "MicColouring",
    "Noise",
    "OneOf",
    "PRESETS",
    "REGISTRY",
    "Reverb",
    "TelephoneBand",
    "apply_overrides",
    "build_augmentation",
    "build_augmenter",
    "check_section",
    "codec_status",
    "compact_config",
    "default_config",
    "full_config",
    "preset_config",
    "preset_name",
    "resolve",
    "unavailable_codecs",
]
