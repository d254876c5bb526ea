"""The AntiDeepfake backbones, written down in this project so that nothing is ever fetched from a model hub.

AntiDeepfake (Ge, Wang, Liu, Yamagishi, ASRU 2025) builds each detector from a *randomly initialised* fairseq
model whose hyper-parameters live in its ``models/W2V_configs.py`` / ``models/HBT_configs.py``; the released
checkpoint then supplies every weight. Reproducing the architecture exactly is therefore the whole job: a
wrong feature-extractor variant loads nothing (different keys) or, worse, loads and computes something else.

The fields below are the fairseq settings that decide tensor names and shapes (the released configs leave
anything not listed at fairseq's defaults):

* ``w2v_small`` is the wav2vec 2.0 *base* layout: a group-normalised first conv layer, convs without bias,
  post-layer-norm transformer (``layer_norm_first=False``).
* every other model uses the "layer_norm" feature extractor (a LayerNorm after every conv) and pre-layer-norm
  transformer blocks (``layer_norm_first=True``, "stable layer norm" in transformers); wav2vec 2.0 models add
  a bias to each conv, HuBERT-XL does not.

Each :class:`ArchSpec` also knows the pretraining-only tensors that a released checkpoint carries (quantiser,
``project_q``, ``final_proj``, HuBERT's label embeddings), so the checkpoint loader can account for every
tensor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

#: The wav2vec 2.0 convolutional front end: (channels, kernel, stride) per layer; 20 ms hop, 25 ms field.
CONV_KERNELS: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDES: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
SAMPLE_RATE = 16_000
#: Samples per output frame (product of the strides) and samples seen by the first frame (receptive field).
FRAME_HOP = 320
RECEPTIVE_FIELD = 400


@dataclass(frozen=True)
class ArchSpec:
    """Everything needed to build one AntiDeepfake backbone and to map its checkpoint tensors.

    ``extractor`` is ``"group"`` (GroupNorm after the first conv only) or ``"layer"`` (LayerNorm after every
    conv). ``layer_norm_first`` selects pre-norm transformer blocks. ``final_dim``, ``latent_vars`` and
    ``latent_groups`` size the wav2vec 2.0 pretraining heads; ``num_classes`` sizes HuBERT's label embeddings.
    These heads are not used for detection but are present in released checkpoints.
    """

    name: str
    family: str  # "wav2vec2" | "hubert"
    hidden: int
    layers: int
    heads: int
    ffn: int
    extractor: str  # "group" | "layer"
    conv_bias: bool
    layer_norm_first: bool
    conv_dim: int = 512
    conv_pos: int = 128
    conv_pos_groups: int = 16
    final_dim: int = 256
    latent_vars: int = 320
    latent_groups: int = 2
    num_classes: int = 504
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    dropout_input: float = 0.0
    layerdrop: float = 0.0
    params_millions: float = 0.0
    description: str = ""

    def __post_init__(self) -> None:
        if self.family not in ("wav2vec2", "hubert"):
            raise ValueError(f"unknown backbone family {self.family!r}")
        if self.extractor not in ("group", "layer"):
            raise ValueError(f"unknown feature extractor variant {self.extractor!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden size {self.hidden} is not divisible by {self.heads} heads")

    @property
    def vq_dim(self) -> int:
        """Codebook vector size of the quantiser (fairseq: ``latent_dim``, else ``final_dim``)."""
        return self.final_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ArchSpec:
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)

    def tiny(self, hidden: int = 32, layers: int = 2, heads: int = 2, conv_dim: int = 16) -> ArchSpec:
        """A same-family, same-layout miniature for tests and smoke runs (random weights only)."""
        return replace(
            self,
            name=f"{self.name}-tiny",
            hidden=hidden,
            layers=layers,
            heads=heads,
            ffn=hidden * 2,
            conv_dim=conv_dim,
            conv_pos=16,
            conv_pos_groups=4,
            final_dim=12,
            latent_vars=8,
            num_classes=10,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            dropout_input=0.0,
            layerdrop=0.0,
            params_millions=0.0,
            description=f"tiny random {self.family} for tests",
        )

    def hf_config(self) -> Any:
        """This backbone's transformers config (``Wav2Vec2Config`` / ``HubertConfig``), built locally."""
        from transformers import HubertConfig, Wav2Vec2Config

        common: dict[str, Any] = dict(
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=self.ffn,
            hidden_act="gelu",
            feat_extract_activation="gelu",
            conv_dim=(self.conv_dim,) * len(CONV_KERNELS),
            conv_kernel=CONV_KERNELS,
            conv_stride=CONV_STRIDES,
            conv_bias=self.conv_bias,
            feat_extract_norm=self.extractor,
            do_stable_layer_norm=self.layer_norm_first,
            num_conv_pos_embeddings=self.conv_pos,
            num_conv_pos_embedding_groups=self.conv_pos_groups,
            hidden_dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            activation_dropout=self.activation_dropout,
            feat_proj_dropout=self.dropout_input,
            final_dropout=0.0,
            layerdrop=self.layerdrop,
            layer_norm_eps=1e-5,
            # AntiDeepfake runs the SSL model with mask=False. A non-zero mask probability only makes
            # transformers allocate `masked_spec_embed`, which holds fairseq's `mask_emb` so that a converted
            # checkpoint keeps every tensor; apply_spec_augment=False keeps masking off, also in training.
            mask_time_prob=0.05,
            apply_spec_augment=False,
        )
        if self.family == "hubert":
            config = HubertConfig(feat_proj_layer_norm=True, conv_pos_batch_norm=False, **common)
        else:
            config = Wav2Vec2Config(**common)
        # Eager attention exports to ONNX identically on every torch version; SDPA gives the same numbers.
        config._attn_implementation = "eager"
        return config


#: The three layouts of the released models: the fields that decide tensor names and shapes, and the
#: training-time dropouts each fairseq recipe sets (``w2v_small`` is the base recipe; the large wav2vec 2.0
#: models follow the LV-60 / XLS-R recipes; HuBERT-XL has no conv bias).
_LAYOUTS: dict[str, dict[str, Any]] = {
    "base": dict(
        family="wav2vec2",
        heads=12,
        extractor="group",
        conv_bias=False,
        layer_norm_first=False,
        dropout=0.1,
        attention_dropout=0.1,
        layerdrop=0.05,
    ),
    "prenorm": dict(family="wav2vec2", heads=16, extractor="layer", conv_bias=True, layer_norm_first=True),
    "hubert": dict(family="hubert", heads=16, extractor="layer", conv_bias=False, layer_norm_first=True),
}

#: (name, layout, hidden, layers, ffn, final_dim, dropout_input, params in millions, description), from
#: AntiDeepfake's ``W2V_configs.py`` / ``HBT_configs.py``.
_RELEASED: tuple[tuple[str, str, int, int, int, int, float, float, str], ...] = (
    ("w2v_small", "base", 768, 12, 3072, 256, 0.1, 95, "wav2vec 2.0 Small (base layout)"),
    ("w2v_large", "prenorm", 1024, 24, 4096, 768, 0.0, 317, "wav2vec 2.0 Large (LV-60 layout)"),
    ("mms_300m", "prenorm", 1024, 24, 4096, 768, 0.0, 317, "MMS-300M"),
    ("mms_1b", "prenorm", 1280, 48, 5120, 1024, 0.1, 965, "MMS-1B"),
    ("xlsr_1b", "prenorm", 1280, 48, 5120, 1024, 0.1, 965, "XLS-R 1B"),
    ("xlsr_2b", "prenorm", 1920, 48, 7680, 1024, 0.1, 2200, "XLS-R 2B"),
    ("hubert_xl", "hubert", 1280, 48, 5120, 1024, 0.0, 964, "HuBERT-XL (fairseq hubert_xlarge_ll60k)"),
)


def _released_spec(
    name: str,
    layout: str,
    hidden: int,
    layers: int,
    ffn: int,
    final_dim: int,
    dropout_input: float,
    params_millions: float,
    description: str,
) -> ArchSpec:
    """One row of :data:`_RELEASED` on top of its layout."""
    return ArchSpec(
        name=name,
        hidden=hidden,
        layers=layers,
        ffn=ffn,
        final_dim=final_dim,
        dropout_input=dropout_input,
        params_millions=params_millions,
        description=description,
        **_LAYOUTS[layout],
    )


#: Every released AntiDeepfake architecture, keyed by the model names of its hparams files.
ARCHITECTURES: dict[str, ArchSpec] = {row[0]: _released_spec(*row) for row in _RELEASED}

#: Other spellings users meet: AntiDeepfake's fairseq model name and the Hugging Face repository names.
ALIASES: dict[str, str] = {
    "hubert_xlarge_ll60k": "hubert_xl",
    "hubert_xtralarge": "hubert_xl",
    "hubert-xlarge-anti-deepfake": "hubert_xl",
    "wav2vec-small-anti-deepfake": "w2v_small",
    "wav2vec-large-anti-deepfake": "w2v_large",
    "mms-300m-anti-deepfake": "mms_300m",
    "mms-1b-anti-deepfake": "mms_1b",
    "xls-r-1b-anti-deepfake": "xlsr_1b",
    "xls-r-2b-anti-deepfake": "xlsr_2b",
}


def get_arch(name: str) -> ArchSpec:
    """Look up an architecture by name or alias (``-nda`` variants share their architecture)."""
    key = name.strip().lower().removeprefix("nii-yamagishilab/")
    key = key.removesuffix("-nda")
    key = ALIASES.get(key, key)
    if key.endswith("-tiny") and key[: -len("-tiny")] in ARCHITECTURES:
        return ARCHITECTURES[key[: -len("-tiny")]].tiny()
    if key not in ARCHITECTURES:
        raise KeyError(f"unknown AntiDeepfake architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[key]


def num_frames(samples: int) -> int:
    """Frames the conv front end produces for ``samples`` input samples (0 when shorter than 400 samples)."""
    length = samples
    for kernel, stride in zip(CONV_KERNELS, CONV_STRIDES, strict=True):
        length = (length - kernel) // stride + 1
        if length <= 0:
            return 0
    return length
