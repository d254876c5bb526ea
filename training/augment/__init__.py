"""On-the-fly, seeded augmentation that defines what "real" speech includes (channels, codecs, microphones,
rooms, noise, level, clipping). See :mod:`training.augment.chain`; ``python -m training.augment demo --out
DIR`` draws a spectrogram of each augmentation."""

from training.augment.chain import (
    CODECS,
    G711,
    REGISTRY,
    Augmentation,
    AugmentConfigError,
    BandLimit,
    Chain,
    Clipping,
    Codec,
    Gain,
    MicColouring,
    Noise,
    OneOf,
    Reverb,
    TelephoneBand,
    build_augmentation,
    default_config,
)

__all__ = [
    "AugmentConfigError",
    "Augmentation",
    "BandLimit",
    "CODECS",
    "Chain",
    "Clipping",
    "Codec",
    "G711",
    "Gain",
    "MicColouring",
    "Noise",
    "OneOf",
    "REGISTRY",
    "Reverb",
    "TelephoneBand",
    "build_augmentation",
    "default_config",
]
