"""The key map checked against an independent forward pass that reads the fairseq tensor names directly.

fairseq itself cannot be installed here, so this test re-states fairseq's wav2vec 2.0 / HuBERT forward pass
(``ConvFeatureExtractionModel``, ``layer_norm`` + ``post_extract_proj``, weight-normed positional conv with
``SamePad`` and GELU, ``TransformerSentenceEncoderLayer`` in post- or pre-norm order, AntiDeepfake's mean
pooling and ``proj_fc``) in plain torch functions over a released-format state dict. If the key map swapped
any tensor (q/k, weight_g/weight_v, which layer norm is which, group vs layer norm), the logits would differ.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.antideepfake.architectures import ARCHITECTURES, CONV_KERNELS, CONV_STRIDES, ArchSpec
from training.antideepfake.checkpoint import SSL_PREFIX, released_state
from training.antideepfake.model import AntiDeepfakeDetector


def _ln(x: torch.Tensor, sd: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], eps=1e-5)


def _attention(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str, heads: int) -> torch.Tensor:
    b, t, d = x.shape
    hd = d // heads
    q = F.linear(x, sd[p + "q_proj.weight"], sd[p + "q_proj.bias"]) * hd**-0.5  # fairseq scales q
    k = F.linear(x, sd[p + "k_proj.weight"], sd[p + "k_proj.bias"])
    v = F.linear(x, sd[p + "v_proj.weight"], sd[p + "v_proj.bias"])
    q, k, v = (z.view(b, t, heads, hd).transpose(1, 2) for z in (q, k, v))
    out = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
    return F.linear(out.transpose(1, 2).reshape(b, t, d), sd[p + "out_proj.weight"], sd[p + "out_proj.bias"])


def fairseq_reference_logits(
    state: dict[str, torch.Tensor], spec: ArchSpec, wav: torch.Tensor
) -> torch.Tensor:
    sd = {k[len(SSL_PREFIX) :]: v for k, v in state.items() if k.startswith(SSL_PREFIX)}
    x = F.layer_norm(wav, wav.shape[-1:])[
        :, None, :
    ]  # AntiDeepfake: layer_norm(wav, wav.shape) per utterance
    for i, (_, stride) in enumerate(zip(CONV_KERNELS, CONV_STRIDES, strict=True)):
        p = f"feature_extractor.conv_layers.{i}."
        x = F.conv1d(x, sd[p + "0.weight"], sd.get(p + "0.bias"), stride=stride)
        if spec.extractor == "layer":  # Sequential(TransposeLast, LayerNorm, TransposeLast)
            x = F.layer_norm(
                x.transpose(1, 2), (x.shape[1],), sd[p + "2.1.weight"], sd[p + "2.1.bias"]
            ).transpose(1, 2)
        elif i == 0:  # Fp32GroupNorm(dim, dim)
            x = F.group_norm(x, x.shape[1], sd[p + "2.weight"], sd[p + "2.bias"], eps=1e-5)
        x = F.gelu(x)
    x = x.transpose(1, 2)
    x = _ln(x, sd, "layer_norm")
    x = F.linear(x, sd["post_extract_proj.weight"], sd["post_extract_proj.bias"])
    g, v = sd["encoder.pos_conv.0.weight_g"], sd["encoder.pos_conv.0.weight_v"]
    weight = g * v / v.norm(dim=(0, 1), keepdim=True)  # weight_norm(dim=2)
    pos = F.conv1d(x.transpose(1, 2), weight, sd["encoder.pos_conv.0.bias"], padding=spec.conv_pos // 2,
                   groups=spec.conv_pos_groups)  # fmt: skip
    if spec.conv_pos % 2 == 0:  # SamePad
        pos = pos[:, :, :-1]
    x = x + F.gelu(pos).transpose(1, 2)
    if not spec.layer_norm_first:
        x = _ln(x, sd, "encoder.layer_norm")
    for i in range(spec.layers):
        p = f"encoder.layers.{i}."

        def ffn(h: torch.Tensor, p: str = p) -> torch.Tensor:
            h = F.gelu(F.linear(h, sd[p + "fc1.weight"], sd[p + "fc1.bias"]))
            return F.linear(h, sd[p + "fc2.weight"], sd[p + "fc2.bias"])

        if spec.layer_norm_first:
            x = x + _attention(_ln(x, sd, p + "self_attn_layer_norm"), sd, p + "self_attn.", spec.heads)
            x = x + ffn(_ln(x, sd, p + "final_layer_norm"))
        else:
            x = _ln(x + _attention(x, sd, p + "self_attn.", spec.heads), sd, p + "self_attn_layer_norm")
            x = _ln(x + ffn(x), sd, p + "final_layer_norm")
    if spec.layer_norm_first:
        x = _ln(x, sd, "encoder.layer_norm")
    return F.linear(x.mean(dim=1), state["proj_fc.weight"], state["proj_fc.bias"])


def perturbed_tiny(
    name: str, layers: int, scale: float, seed: int
) -> tuple[ArchSpec, AntiDeepfakeDetector, dict[str, torch.Tensor]]:
    """A tiny detector whose every parameter is moved off its initial value (non-trivial norms and biases,
    so a swapped tensor cannot hide), with its state dict in the released fairseq naming."""
    torch.manual_seed(seed)
    spec = ARCHITECTURES[name].tiny(layers=layers)
    model = AntiDeepfakeDetector(spec).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return spec, model, released_state(model)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_transformers_model_matches_fairseq_semantics(name: str) -> None:
    spec, model, state = perturbed_tiny(name, layers=3, scale=0.1, seed=3)
    wav = torch.randn(2, 9_600)
    with torch.inference_mode():
        ours = model(wav).logits
        ref = fairseq_reference_logits(state, spec, wav)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)


def test_reference_detects_a_swapped_tensor() -> None:
    """The comparison has teeth: swapping q and k in one layer changes the logits."""
    # large perturbations give sharp attention, so that transposing its score matrix shows
    spec, model, state = perturbed_tiny("mms_300m", layers=2, scale=0.5, seed=4)
    wav = torch.randn(1, 8000)
    with torch.inference_mode():
        ours = model(wav).logits
        torch.testing.assert_close(ours, fairseq_reference_logits(state, spec, wav), atol=2e-5, rtol=1e-4)
        q, k = (SSL_PREFIX + f"encoder.layers.1.self_attn.{n}_proj.weight" for n in ("q", "k"))
        state[q], state[k] = state[k], state[q]
        assert not torch.allclose(ours, fairseq_reference_logits(state, spec, wav), atol=1e-4)
