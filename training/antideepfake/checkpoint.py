"""Load the released AntiDeepfake checkpoints (and this project's own) into :class:`AntiDeepfakeDetector`.

Released files (Zenodo ``<model>.ckpt`` and Hugging Face ``model.safetensors``) hold the state dict of the
fairseq-based AntiDeepfake ``Model``: the SSL backbone under ``m_ssl.model.*`` with fairseq names, and the
head under ``proj_fc.*``. They also carry the backbone's pretraining heads (wav2vec 2.0 quantiser,
``project_q``, ``final_proj``; HuBERT ``label_embs_concat``), which detection never uses.

Conversion is strict, because a silently skipped tensor leaves random weights in a detector that still
produces plausible-looking numbers: every tensor of the file is either mapped to exactly one model tensor
(shape checked) or is a known pretraining-only tensor (shape checked, then dropped), and every model tensor
must be filled. Any deviation raises :class:`CheckpointError` naming the file, the missing / unexpected keys
and, when it can tell, the architecture the file actually holds.

The checkpoints are licensed CC BY-NC-SA 4.0 (non-commercial): users load their own downloaded copy; this
project never downloads or ships them.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.antideepfake.architectures import ARCHITECTURES, CONV_KERNELS, ArchSpec, get_arch
from training.antideepfake.model import AntiDeepfakeDetector

SSL_PREFIX = "m_ssl.model."
HEAD_PREFIX = "proj_fc."
#: Marker of this project's own training checkpoints (see :func:`save_training_checkpoint`).
TRAINING_FORMAT = "stream-guard/antideepfake-train"
_MAX_LISTED = 8


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file and says why (for the user, no traceback)."""


@dataclass
class LoadReport:
    """What :func:`load_detector` found and did, for logs and for the bundle's provenance."""

    path: str
    container: str  # "pytorch" | "safetensors"
    layout: str  # "fairseq" | "transformers" | "training"
    arch: str
    tensors_in_file: int = 0
    mapped: int = 0
    pretraining_dropped: list[str] = field(default_factory=list)
    head_loaded: bool = True
    candidates: list[str] = field(default_factory=list)
    training_state: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        head = "head loaded" if self.head_loaded else "head NOT in file (random init)"
        return (
            f"{self.path}: {self.container} file, {self.layout} layout, architecture {self.arch}; "
            f"{self.mapped} of {self.tensors_in_file} tensors loaded, {len(self.pretraining_dropped)} "
            f"pretraining-only tensors dropped; {head}"
        )


# --------------------------------------------------------------------------------------------------- key maps


def _conv_key_map(spec: ArchSpec) -> dict[str, str]:
    out: dict[str, str] = {}
    for i in range(len(CONV_KERNELS)):
        fs, hf = f"feature_extractor.conv_layers.{i}", f"feature_extractor.conv_layers.{i}"
        out[f"{fs}.0.weight"] = f"{hf}.conv.weight"
        if spec.conv_bias:
            out[f"{fs}.0.bias"] = f"{hf}.conv.bias"
        if spec.extractor == "layer":
            # fairseq: Sequential(conv, dropout, Sequential(TransposeLast, LayerNorm, TransposeLast), GELU)
            out[f"{fs}.2.1.weight"] = f"{hf}.layer_norm.weight"
            out[f"{fs}.2.1.bias"] = f"{hf}.layer_norm.bias"
        elif i == 0:
            # fairseq "default" mode: Sequential(conv, dropout, GroupNorm, GELU) on the first layer only
            out[f"{fs}.2.weight"] = f"{hf}.layer_norm.weight"
            out[f"{fs}.2.bias"] = f"{hf}.layer_norm.bias"
    return out


def backbone_key_map(spec: ArchSpec, pos_conv_names: tuple[str, str] | None = None) -> dict[str, str]:
    """fairseq backbone name -> transformers backbone name, for every detection tensor of ``spec``.

    ``pos_conv_names`` are the transformers names of the weight-norm magnitude and direction of the positional
    convolution (``parametrizations.weight.original0/1`` on current torch, ``weight_g/weight_v`` on old ones).
    """
    g_name, v_name = pos_conv_names or (
        "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
        "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    )
    out = _conv_key_map(spec)
    out.update(
        {
            "mask_emb": "masked_spec_embed",
            "layer_norm.weight": "feature_projection.layer_norm.weight",
            "layer_norm.bias": "feature_projection.layer_norm.bias",
            "post_extract_proj.weight": "feature_projection.projection.weight",
            "post_extract_proj.bias": "feature_projection.projection.bias",
            "encoder.pos_conv.0.weight_g": g_name,
            "encoder.pos_conv.0.weight_v": v_name,
            "encoder.pos_conv.0.bias": "encoder.pos_conv_embed.conv.bias",
            "encoder.layer_norm.weight": "encoder.layer_norm.weight",
            "encoder.layer_norm.bias": "encoder.layer_norm.bias",
        }
    )
    per_layer = {
        "self_attn.q_proj": "attention.q_proj",
        "self_attn.k_proj": "attention.k_proj",
        "self_attn.v_proj": "attention.v_proj",
        "self_attn.out_proj": "attention.out_proj",
        "self_attn_layer_norm": "layer_norm",
        "fc1": "feed_forward.intermediate_dense",
        "fc2": "feed_forward.output_dense",
        "final_layer_norm": "final_layer_norm",
    }
    for i in range(spec.layers):
        for fs, hf in per_layer.items():
            for p in ("weight", "bias"):
                out[f"encoder.layers.{i}.{fs}.{p}"] = f"encoder.layers.{i}.{hf}.{p}"
    return out


def pretraining_shapes(spec: ArchSpec) -> dict[str, tuple[int, ...]]:
    """fairseq names and shapes of the pretraining-only tensors a released checkpoint carries for ``spec``."""
    if spec.family == "hubert":
        return {
            "label_embs_concat": (spec.num_classes, spec.final_dim),
            "final_proj.weight": (spec.final_dim, spec.hidden),
            "final_proj.bias": (spec.final_dim,),
        }
    codewords = spec.latent_groups * spec.latent_vars
    return {
        "quantizer.vars": (1, codewords, spec.vq_dim // spec.latent_groups),
        "quantizer.weight_proj.weight": (codewords, spec.conv_dim),
        "quantizer.weight_proj.bias": (codewords,),
        "project_q.weight": (spec.final_dim, spec.vq_dim),
        "project_q.bias": (spec.final_dim,),
        "final_proj.weight": (spec.final_dim, spec.hidden),
        "final_proj.bias": (spec.final_dim,),
    }


def _pos_conv_names(model: AntiDeepfakeDetector) -> tuple[str, str]:
    keys = set(model.backbone.state_dict().keys())
    new = (
        "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
        "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    )
    if new[0] in keys:
        return new
    return ("encoder.pos_conv_embed.conv.weight_g", "encoder.pos_conv_embed.conv.weight_v")


def released_key_map(model: AntiDeepfakeDetector) -> dict[str, str]:
    """Released-file name (``m_ssl.model.*``, ``proj_fc.*``) -> detector state-dict name; complete and 1:1."""
    out = {
        SSL_PREFIX + fs: "backbone." + hf
        for fs, hf in backbone_key_map(model.spec, _pos_conv_names(model)).items()
    }
    out[HEAD_PREFIX + "weight"] = "head.weight"
    out[HEAD_PREFIX + "bias"] = "head.bias"
    return out


# ---------------------------------------------------------------------------------------------- reading files


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < header_len < 100_000_000


def _describe_non_checkpoint(head: bytes) -> str:
    if head.startswith(b"RIFF") or head.startswith(b"fLaC") or head.startswith(b"OggS") or head[:3] == b"ID3":
        return "an audio file"
    if head.startswith(b"\x08") and b"onnx" in head.lower():
        return "an ONNX model"
    if head[:1] in (b"{", b"["):
        return "a JSON/text file"
    return "neither a PyTorch checkpoint nor a safetensors file"


def read_tensors(path: str | Path, *, trust_pickle: bool = False) -> tuple[dict[str, Any], str]:
    """Read a checkpoint file into a flat mapping; returns (contents, container kind).

    PyTorch files are read with ``weights_only=True`` (no code runs). A fairseq training checkpoint that
    pickles its config needs ``trust_pickle=True``, which the user must ask for explicitly.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file")
    if not p.is_file():
        raise CheckpointError(f"{p}: is not a file")
    size = p.stat().st_size
    if size == 0:
        raise CheckpointError(f"{p}: the file is empty")
    with p.open("rb") as fh:
        head = fh.read(64)
    if _is_safetensors(head, size):
        (header_len,) = struct.unpack("<Q", head[:8])
        if 8 + header_len > size:
            raise CheckpointError(
                f"{p}: truncated safetensors file (header says {header_len} bytes, file has {size})"
            )
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(p))), "safetensors"
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{p}: truncated or corrupt safetensors file ({exc})") from None
    is_zip = head.startswith(b"PK\x03\x04")
    is_legacy_pickle = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    if not (is_zip or is_legacy_pickle):
        raise CheckpointError(f"{p}: not a checkpoint: this is {_describe_non_checkpoint(head)}")
    if is_zip and not zipfile.is_zipfile(p):
        raise CheckpointError(f"{p}: truncated or corrupt PyTorch checkpoint (the zip directory is missing)")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=not trust_pickle)
    except (RuntimeError, OSError) as exc:
        first = str(exc).splitlines()[0][:160]
        raise CheckpointError(f"{p}: truncated or corrupt PyTorch checkpoint ({first})") from None
    except EOFError:
        raise CheckpointError(f"{p}: truncated PyTorch checkpoint (unexpected end of file)") from None
    except Exception as exc:  # noqa: BLE001 - unpickling raises many types; all mean "cannot read safely"
        text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{p}: the file stores Python objects besides tensors (a fairseq training checkpoint?). "
                "Loading it runs code from the file; if you trust it, pass --trust-pickle"
            ) from None
        raise CheckpointError(f"{p}: unreadable PyTorch checkpoint ({text})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p}: a PyTorch file, but it holds a {type(obj).__name__}, not a state dict")
    return dict(obj), "pytorch"


def _unwrap(obj: dict[str, Any], source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Find the state dict inside common wrappers; returns (state dict, wrapper extras)."""
    extras: dict[str, Any] = {}
    if obj.get("format") == TRAINING_FORMAT:
        extras = {k: v for k, v in obj.items() if k != "model"}
        obj = obj.get("model", {})
    else:
        for key in ("model", "state_dict", "module"):
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                obj = dict(inner)
                break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source}: the file holds no tensors; it is not a model checkpoint")
    return tensors, extras


def _detect_layout(keys: set[str], extras: dict[str, Any]) -> str:
    if extras.get("format") == TRAINING_FORMAT or any(k.startswith("backbone.") for k in keys):
        return "training"
    if any(".feature_projection." in k or ".pos_conv_embed." in k for k in keys):
        return "transformers"
    if any(k.startswith(SSL_PREFIX) for k in keys):
        return "fairseq"
    if any(k.startswith("post_extract_proj.") or k.startswith("feature_extractor.") for k in keys):
        return "fairseq-ssl"  # a bare fairseq SSL model, no AntiDeepfake head
    return "unknown"


# ------------------------------------------------------------------------------------------- architecture
# guess


def describe_backbone(state: Mapping[str, torch.Tensor], prefix: str = SSL_PREFIX) -> dict[str, Any]:
    """Read the architecture off fairseq-named tensors (hidden size, depth, extractor variant, family)."""
    info: dict[str, Any] = {}
    proj = state.get(prefix + "post_extract_proj.weight")
    if proj is not None and proj.dim() == 2:
        info["hidden"] = int(proj.shape[0])
        info["conv_dim"] = int(proj.shape[1])
    layer_ids = {
        int(m.group(1))
        for k in state
        if (m := re.match(re.escape(prefix) + r"encoder\.layers\.(\d+)\.", k)) is not None
    }
    if layer_ids:
        info["layers"] = max(layer_ids) + 1
    fc1 = state.get(prefix + "encoder.layers.0.fc1.weight")
    if fc1 is not None and fc1.dim() == 2:
        info["ffn"] = int(fc1.shape[0])
    if prefix + "feature_extractor.conv_layers.1.2.1.weight" in state:
        info["extractor"] = "layer"
    elif prefix + "feature_extractor.conv_layers.0.2.weight" in state:
        info["extractor"] = "group"
    info["conv_bias"] = prefix + "feature_extractor.conv_layers.0.0.bias" in state
    if prefix + "label_embs_concat" in state:
        info["family"] = "hubert"
    elif prefix + "quantizer.vars" in state:
        info["family"] = "wav2vec2"
    return info


def matching_architectures(info: Mapping[str, Any]) -> list[str]:
    """Released architectures consistent with :func:`describe_backbone`'s findings."""
    out = []
    for name, spec in ARCHITECTURES.items():
        if all(getattr(spec, k) == v for k, v in info.items() if hasattr(spec, k)):
            out.append(name)
    return out


def _describe(info: Mapping[str, Any]) -> str:
    parts = []
    if "hidden" in info:
        parts.append(f"D={info['hidden']}")
    if "layers" in info:
        parts.append(f"{info['layers']} layers")
    if "extractor" in info:
        parts.append(f"{info['extractor']}-norm feature extractor")
    parts.append("conv bias" if info.get("conv_bias") else "no conv bias")
    if "family" in info:
        parts.append(info["family"])
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------------- loading


def _listing(keys: list[str]) -> str:
    shown = ", ".join(sorted(keys)[:_MAX_LISTED])
    more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return shown + more


def _problem_lines(missing: list[str], unexpected: list[str], mismatched: list[str]) -> list[str]:
    """The key problems of a checkpoint that does not fit, all listed together so one run shows every one."""
    lines = []
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if mismatched:
        lines.append(f"  shape mismatches ({len(mismatched)}): {_listing(mismatched)}")
    return lines


def _empty_detector(spec: ArchSpec) -> AntiDeepfakeDetector:
    """The detector on the meta device: shapes without spending time and memory on a random init."""
    with torch.device("meta"):
        return AntiDeepfakeDetector(spec)


def convert_released_state(
    state: Mapping[str, torch.Tensor],
    spec: ArchSpec,
    *,
    source: str,
    allow_missing_head: bool = False,
    ssl_prefix: str = SSL_PREFIX,
) -> tuple[dict[str, torch.Tensor], list[str], bool]:
    """Map a fairseq-named state dict onto the detector layout, strictly.

    Returns (detector state dict, pretraining-only keys dropped, head present). Raises
    :class:`CheckpointError` listing unexpected keys, missing keys and shape mismatches together, so one run
    shows every problem.
    """
    model = _empty_detector(spec)
    key_map = released_key_map(model)
    if ssl_prefix != SSL_PREFIX:
        key_map = {
            (ssl_prefix + k[len(SSL_PREFIX) :] if k.startswith(SSL_PREFIX) else k): v
            for k, v in key_map.items()
        }
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    dropped_shapes = {ssl_prefix + k: v for k, v in pretraining_shapes(spec).items()}
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    unexpected: list[str] = []
    mismatched: list[str] = []
    for key, tensor in state.items():
        if key in key_map:
            target = key_map[key]
            if tuple(tensor.shape) != expected[target]:
                mismatched.append(f"{key} {tuple(tensor.shape)} (expected {expected[target]})")
            else:
                out[target] = tensor
        elif key in dropped_shapes:
            if tuple(tensor.shape) != dropped_shapes[key]:
                mismatched.append(f"{key} {tuple(tensor.shape)} (expected {dropped_shapes[key]})")
            dropped.append(key)
        else:
            unexpected.append(key)
    head_keys = {"head.weight", "head.bias"}
    missing = [src for src, dst in key_map.items() if dst not in out and src not in state]
    head_present = not (head_keys - set(out))
    if allow_missing_head and not any(k.startswith(HEAD_PREFIX) for k in state):
        missing = [k for k in missing if not k.startswith(HEAD_PREFIX)]
    if unexpected or missing or mismatched:
        info = describe_backbone(state, ssl_prefix)
        found = matching_architectures(info)
        looks = f"the file looks like {' / '.join(found)}" if found else "the file holds"
        lines = [
            f"{source}: checkpoint does not match architecture {spec.name} ({_describe(spec.to_dict())})"
        ]
        lines.append(f"  {looks} ({_describe(info)})")
        raise CheckpointError("\n".join(lines + _problem_lines(missing, unexpected, mismatched)))
    return out, dropped, head_present


def load_detector(
    path: str | Path,
    arch: str | ArchSpec | None = None,
    *,
    trust_pickle: bool = False,
    allow_missing_head: bool = False,
) -> tuple[AntiDeepfakeDetector, LoadReport]:
    """Build the detector for a checkpoint file and load it strictly (see the module docstring).

    ``arch`` may be omitted for released checkpoints (read off the tensors) and for this project's training
    checkpoints (stored in the file). ``allow_missing_head`` accepts a bare SSL backbone (fairseq pretraining
    checkpoint) as the start of a fine-tune; the head then keeps its random initialisation.
    """
    source = str(Path(path).expanduser())
    raw, container = read_tensors(path, trust_pickle=trust_pickle)
    state, extras = _unwrap(raw, source)
    layout = _detect_layout(set(state), extras)
    spec: ArchSpec | None
    if isinstance(arch, ArchSpec):
        spec = arch
    elif arch is not None:
        try:
            spec = get_arch(arch)
        except KeyError as exc:
            raise CheckpointError(f"{source}: {exc.args[0]}") from None
    else:
        spec = None

    candidates: list[str] = []
    if layout == "training":
        stored = extras.get("arch")
        file_spec = ArchSpec.from_dict(stored) if isinstance(stored, dict) else None
        if spec is None:
            if file_spec is None:
                raise CheckpointError(f"{source}: no architecture stored in the file; name one with --arch")
            spec = file_spec
        elif file_spec is not None and file_spec.to_dict() != spec.to_dict():
            raise CheckpointError(
                f"{source}: the file holds a {file_spec.name} model ({_describe(file_spec.to_dict())}), "
                f"not {spec.name} ({_describe(spec.to_dict())})"
            )
        converted = {k: v for k, v in state.items()}
        dropped: list[str] = []
        head_present = "head.weight" in converted
        _check_native(converted, spec, source)
    elif layout in ("fairseq", "fairseq-ssl"):
        prefix = SSL_PREFIX if layout == "fairseq" else ""
        info = describe_backbone(state, prefix)
        candidates = matching_architectures(info)
        if spec is None:
            if not candidates:
                raise CheckpointError(
                    f"{source}: the backbone ({_describe(info)}) is none of the released AntiDeepfake "
                    f"architectures; name its architecture with --arch"
                )
            spec = ARCHITECTURES[candidates[0]]
        if layout == "fairseq-ssl":
            allow_missing_head = True
        converted, dropped, head_present = convert_released_state(
            state, spec, source=source, allow_missing_head=allow_missing_head, ssl_prefix=prefix
        )
    elif layout == "transformers":
        if spec is None:
            raise CheckpointError(
                f"{source}: transformers-layout checkpoint; name its architecture with --arch"
            )
        converted = {}
        for k, v in state.items():
            if k.startswith(SSL_PREFIX):
                converted["backbone." + k[len(SSL_PREFIX) :]] = v
            elif k.startswith(HEAD_PREFIX):
                converted["head." + k[len(HEAD_PREFIX) :]] = v
            else:
                converted[k] = v
        dropped = []
        head_present = "head.weight" in converted
        _check_native(converted, spec, source, allow_missing_head=allow_missing_head)
    else:
        sample = _listing(list(state)[:_MAX_LISTED])
        raise CheckpointError(
            f"{source}: tensors found, but not an AntiDeepfake / wav2vec 2.0 / HuBERT checkpoint "
            f"(keys: {sample})"
        )

    model = _empty_detector(spec)
    if not head_present:
        converted["head.weight"] = torch.empty(2, spec.hidden)
        converted["head.bias"] = torch.zeros(2)
        torch.nn.init.kaiming_uniform_(converted["head.weight"], a=5**0.5)
    model.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True, assign=True)
    model.eval()
    report = LoadReport(
        path=source,
        container=container,
        layout=layout,
        arch=spec.name,
        tensors_in_file=len(state),
        mapped=len(state) - len(dropped),
        pretraining_dropped=dropped,
        head_loaded=head_present,
        candidates=candidates,
        training_state={k: v for k, v in extras.items() if k in ("step", "epoch", "data", "commit")},
    )
    return model, report


def _check_native(
    state: Mapping[str, torch.Tensor], spec: ArchSpec, source: str, *, allow_missing_head: bool = False
) -> None:
    expected = {k: tuple(v.shape) for k, v in _empty_detector(spec).state_dict().items()}
    missing = [k for k in expected if k not in state]
    if allow_missing_head:
        missing = [k for k in missing if not k.startswith("head.")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(v.shape)} (expected {expected[k]})"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != expected[k]
    ]
    if missing or unexpected or mismatched:
        lines = [f"{source}: checkpoint does not match architecture {spec.name}"]
        raise CheckpointError("\n".join(lines + _problem_lines(missing, unexpected, mismatched)))


# ---------------------------------------------------------------------------------------------------- saving


def released_state(
    model: AntiDeepfakeDetector, *, include_pretraining: bool = True, seed: int = 0
) -> dict[str, torch.Tensor]:
    """The detector's weights under the released fairseq-style names (the inverse of the key map).

    ``include_pretraining`` adds the pretraining-only tensors with the right shapes (random values, as
    detection never reads them), so the result has exactly the layout of a released file.
    """
    inverse = {dst: src for src, dst in released_key_map(model).items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(inverse))
    if missing:
        raise RuntimeError(f"key map does not cover detector tensors: {missing[:5]}")
    out = {inverse[k]: v.detach().clone().contiguous() for k, v in own.items()}
    if include_pretraining:
        gen = torch.Generator().manual_seed(seed)
        for key, shape in pretraining_shapes(model.spec).items():
            out[SSL_PREFIX + key] = torch.randn(shape, generator=gen)
    return out


def save_released(model: AntiDeepfakeDetector, path: str | Path, **kwargs: Any) -> Path:
    """Write the detector as a released-format file: ``.safetensors`` by suffix, else a torch ``.ckpt``."""
    p = Path(path)
    state = released_state(model, **kwargs)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(p))
    else:
        torch.save(state, str(p))
    return p


def save_training_checkpoint(path: str | Path, model: AntiDeepfakeDetector, **state: Any) -> Path:
    """Atomically write a training checkpoint (model, arch and any extra state, e.g. optimizer, step).

    Written to a temporary name and renamed, so an interrupted save never leaves a half file that loads.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".partial")
    payload = {
        "format": TRAINING_FORMAT,
        "version": 1,
        "arch": model.spec.to_dict(),
        "model": model.state_dict(),
    }
    payload.update(state)
    torch.save(payload, str(tmp))
    tmp.replace(p)
    return p


def read_training_state(path: str | Path) -> dict[str, Any]:
    """The full contents of a training checkpoint (for resuming); validates the format marker."""
    raw, _ = read_tensors(path)
    if raw.get("format") != TRAINING_FORMAT:
        raise CheckpointError(
            f"{path}: not a stream-guard AntiDeepfake training checkpoint (cannot resume from it)"
        )
    return raw


def report_json(report: LoadReport) -> str:
    data = {
        "path": report.path,
        "container": report.container,
        "layout": report.layout,
        "arch": report.arch,
        "tensors_in_file": report.tensors_in_file,
        "mapped": report.mapped,
        "pretraining_dropped": len(report.pretraining_dropped),
        "head_loaded": report.head_loaded,
        "candidates": report.candidates,
    }
    return json.dumps(data, indent=2)
