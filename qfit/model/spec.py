"""ModelSpec: the architecture facts the planner needs, read from a Hugging Face config.json.

Pure: takes a dict, returns a frozen dataclass; no I/O. One parser handles every family by reading the fields
that describe structure (GQA, MoE, MLA, sliding/alternating windows, linear-attention/DeltaNet layers) rather
than branching per model name, with a few model_type facts that configs do not spell out (Qwen2 q/k/v biases,
Gemma's extra norms). Missing required fields raise QfitError naming the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from qfit.errors import QfitError

# Architectures whose q/k/v projections carry biases although config.json has no attention_bias key.
_QKV_BIAS_TYPES = {"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"}
# Gemma 2/3 have four norms per block (pre/post attention, pre/post feed-forward).
_FOUR_NORM_TYPES = {"gemma2", "gemma3", "gemma3_text"}
# Cohere runs attention and MLP in parallel off one LayerNorm.
_ONE_NORM_TYPES = {"cohere", "cohere2"}
_LAYER_KIND = {
    "full_attention": "full", "attention": "full", "global": "full",
    "sliding_attention": "sliding", "sliding": "sliding", "local": "sliding",
    "chunked_attention": "sliding",
    "linear_attention": "linear", "mamba": "linear", "deltanet": "linear",
}


@dataclass(frozen=True)
class MoESpec:
    num_experts: int
    top_k: int
    expert_intermediate: int
    moe_layers: tuple[int, ...]          # layer indices whose MLP is routed
    shared_experts: int = 0              # shared (always-on) experts per MoE layer
    shared_intermediate: int = 0         # intermediate size of each shared expert
    shared_expert_gate: bool = False     # Qwen-MoE sigmoid gate (hidden -> 1) on the shared expert
    router_bias: bool = False            # gpt-oss router bias / DeepSeek e_score_correction_bias
    expert_bias: bool = False            # gpt-oss expert biases


@dataclass(frozen=True)
class MLASpec:
    """DeepSeek multi-head latent attention: the KV cache holds one latent of kv_lora_rank + rope dim per token."""

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class LinearAttnSpec:
    """Gated DeltaNet (Qwen3-Next / Qwen3.5) layers: a fixed recurrent state per sequence instead of a KV cache."""

    num_key_heads: int
    num_value_heads: int
    key_head_dim: int
    value_head_dim: int
    conv_kernel: int


@dataclass(frozen=True)
class VisionSpec:
    """Vision tower of a multimodal wrapper, estimated from its ViT shape (not exact: documented as such)."""

    depth: int
    hidden: int
    intermediate: int
    params: int


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    intermediate: int                    # dense MLP intermediate size
    tied_embeddings: bool
    layer_types: tuple[str, ...]         # per layer: full | sliding | linear (MLA models: full)
    sliding_window: int | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    gated_mlp: bool = True               # SwiGLU/GeGLU: gate+up+down; False: up+down
    qk_norm: bool = False
    attn_output_gate: bool = False       # q_proj also emits a sigmoid output gate (Qwen3-Next/3.5)
    attn_sinks: bool = False             # gpt-oss learned attention sinks (one per head)
    norms_per_layer: int = 2
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    linear: LinearAttnSpec | None = None
    vision: VisionSpec | None = None
    mtp_layers: int = 0                  # multi-token-prediction layers in the checkpoint (not loaded for plain decoding)
    mtp_own_embeddings: bool = False     # DeepSeek MTP stores its own embed + head copies
    max_position_embeddings: int | None = None
    dtype: str = "bfloat16"              # storage dtype of the released weights
    native_quant: str | None = None      # quant_method the checkpoint ships in (fp8, mxfp4, gptq ...)
    source: str = ""
    hub_id: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def attention_kind(self) -> str:
        if self.mla:
            return "mla"
        kinds = set(self.layer_types)
        if "linear" in kinds:
            return "hybrid-linear"
        if "sliding" in kinds:
            return "sliding" if kinds == {"sliding"} else "alternating"
        return "gqa" if self.kv_heads < self.heads else "mha"

    def count(self, kind: str) -> int:
        return sum(1 for t in self.layer_types if t == kind)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layer_types"] = {k: self.count(k) for k in ("full", "sliding", "linear") if self.count(k)}
        d["attention_kind"] = self.attention_kind
        d["warnings"] = list(self.warnings)
        return d

    def with_name(self, name: str, source: str | None = None) -> "ModelSpec":
        return replace(self, name=name, source=source if source is not None else self.source)


# ----------------------------------------------------------------------------------------------------------------
# parsing


def _req(cfg: dict, *keys: str, what: str | None = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    raise QfitError(f"unsupported architecture: config.json has no {what or keys[0]!r} field"
                    + (f" (looked for {', '.join(keys)})" if len(keys) > 1 else ""))


def _opt(cfg: dict, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


# Upper bounds well beyond any released model: a config past them is malformed, and refusing it at parse time keeps
# every later computation bounded (10 million layers would otherwise plan for minutes).
_LIMITS = {"num_hidden_layers": 4096, "hidden_size": 1 << 17, "num_attention_heads": 4096,
           "num_key_value_heads": 4096, "head_dim": 8192, "vocab_size": 1 << 24, "intermediate_size": 1 << 20,
           "num_experts": 1 << 16, "num_experts_per_tok": 4096, "moe_intermediate_size": 1 << 20,
           "max_position_embeddings": 1 << 26, "sliding_window": 1 << 26, "linear_conv_kernel_dim": 1024}
_DEFAULT_LIMIT = 1 << 20


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")) or int(value) != value or value < minimum:
        what = "a positive integer" if minimum > 0 else "a non-negative integer"
        raise QfitError(f"malformed config.json: {name} must be {what}, got {value!r}")
    if value > _LIMITS.get(name, _DEFAULT_LIMIT):
        raise QfitError(f"malformed config.json: {name} {value!r} is implausible (more than "
                        f"{_LIMITS.get(name, _DEFAULT_LIMIT):,})")
    return int(value)


def _positive(name: str, value: Any) -> int:
    return _int(name, value, 1)


def _natural(name: str, value: Any) -> int:
    return _int(name, value, 0)


def unwrap_text_config(cfg: dict) -> tuple[dict, dict | None]:
    """Multimodal wrappers keep the language model under text_config (llm_config for some): return it merged with
    top-level keys it inherits (tie_word_embeddings is often only at the top), plus the vision config if any."""
    vision = cfg.get("vision_config")
    for key in ("text_config", "llm_config", "language_config"):
        inner = cfg.get(key)
        if isinstance(inner, dict):
            merged = dict(inner)
            for k in ("tie_word_embeddings", "torch_dtype", "dtype", "quantization_config"):
                if k not in merged and k in cfg:
                    merged[k] = cfg[k]
            merged.setdefault("_wrapper_model_type", cfg.get("model_type"))
            return merged, vision if isinstance(vision, dict) else None
    return cfg, vision if isinstance(vision, dict) else None


def parse_config(cfg: dict, name: str = "model", source: str = "", hub_id: str | None = None) -> ModelSpec:
    if not isinstance(cfg, dict):
        raise QfitError("malformed config.json: top level is not a JSON object")
    text, vision_cfg = unwrap_text_config(cfg)
    model_type = str(text.get("model_type") or cfg.get("model_type") or "unknown")
    hidden = _positive("hidden_size", _req(text, "hidden_size", "d_model", "n_embd", what="hidden_size"))
    layers = _positive("num_hidden_layers", _req(text, "num_hidden_layers", "n_layer", "num_layers",
                                                  what="num_hidden_layers"))
    heads = _positive("num_attention_heads", _req(text, "num_attention_heads", "n_head", what="num_attention_heads"))
    kv_heads = _positive("num_key_value_heads", _opt(text, "num_key_value_heads", "n_head_kv", default=heads))
    vocab = _positive("vocab_size", _req(text, "vocab_size", what="vocab_size"))
    head_dim = _positive("head_dim", _opt(text, "head_dim", default=hidden // heads))
    mla = _parse_mla(text)
    linear = _parse_linear(text)
    moe = _parse_moe(text, layers)
    intermediate = _opt(text, "intermediate_size_mlp", "intermediate_size", "ffn_dim", "n_inner")
    if intermediate is None and moe is None:
        raise QfitError("unsupported architecture: config.json has no 'intermediate_size' field")
    intermediate = _positive("intermediate_size", intermediate) if intermediate is not None else 0
    layer_types, window = _parse_layer_types(text, layers, model_type, linear is not None)
    quant = text.get("quantization_config") or {}
    if not isinstance(quant, dict):
        raise QfitError(f"malformed config.json: quantization_config must be an object, got {quant!r:.40}")
    _check_consistency(heads, kv_heads, moe)
    return ModelSpec(
        name=name, model_type=model_type, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
        head_dim=head_dim, vocab=vocab, intermediate=intermediate,
        tied_embeddings=bool(_opt(text, "tie_word_embeddings", default=_default_tie(model_type))),
        layer_types=layer_types, sliding_window=window,
        qkv_bias=bool(text.get("attention_bias") or text.get("qkv_bias") or model_type in _QKV_BIAS_TYPES),
        o_bias=bool(text.get("attention_bias") and model_type in {"gpt_oss"}),
        mlp_bias=bool(text.get("mlp_bias")),
        gated_mlp=_is_gated(text),
        qk_norm=bool(text.get("use_qk_norm") or model_type in {"qwen3", "qwen3_moe", "qwen3_next", "qwen3_5_text",
                                                                "qwen3_5_moe_text", "gemma3", "gemma3_text",
                                                                "qwen3_5", "qwen3_5_moe"}),
        attn_output_gate=bool(text.get("attn_output_gate") or model_type == "qwen3_next"),
        attn_sinks=model_type == "gpt_oss",
        norms_per_layer=4 if model_type in _FOUR_NORM_TYPES else 1 if model_type in _ONE_NORM_TYPES else 2,
        moe=moe, mla=mla, linear=linear, vision=_parse_vision(vision_cfg),
        mtp_layers=_natural("mtp_num_hidden_layers", _opt(text, "num_nextn_predict_layers", "mtp_num_hidden_layers",
                                                         default=0)),
        mtp_own_embeddings=model_type in {"deepseek_v3", "kimi_k2", "glm4_moe"},
        max_position_embeddings=_max_position(text),
        dtype=str(_opt(text, "torch_dtype", "dtype", default="bfloat16")),
        native_quant=quant.get("quant_method") if isinstance(quant, dict) else None,
        source=source, hub_id=hub_id,
    )


def _max_position(text: dict) -> int | None:
    value = _opt(text, "max_position_embeddings")
    return None if value is None else _positive("max_position_embeddings", value)


def _check_consistency(heads: int, kv_heads: int, moe: MoESpec | None) -> None:
    if kv_heads > heads or heads % kv_heads:
        raise QfitError(f"malformed config.json: {heads} attention heads cannot share {kv_heads} KV heads "
                        "(KV heads must divide the attention heads)")
    if moe and moe.top_k > moe.num_experts:
        raise QfitError(f"malformed config.json: {moe.top_k} experts per token of only {moe.num_experts}")


def _default_tie(model_type: str) -> bool:
    # transformers' PretrainedConfig default is True; Gemma configs rely on it, most others set it explicitly.
    return model_type.startswith("gemma") or model_type in {"cohere", "cohere2"}


def _is_gated(text: dict) -> bool:
    act = str(_opt(text, "hidden_act", "hidden_activation", "activation_function", default="silu")).lower()
    # GPT-2/Phi-2 style MLPs (gelu_new, relu) have two matrices; SwiGLU/GeGLU families have three.
    return not (act in {"gelu_new", "relu", "gelu_fast"} and text.get("model_type") in {"gpt2", "phi", "gpt_neox"})


def _parse_mla(text: dict) -> MLASpec | None:
    if text.get("kv_lora_rank") is None:
        return None
    q_lora = text.get("q_lora_rank")
    return MLASpec(
        q_lora_rank=_positive("q_lora_rank", q_lora) if q_lora else None,
        kv_lora_rank=_positive("kv_lora_rank", text["kv_lora_rank"]),
        qk_nope_head_dim=_positive("qk_nope_head_dim", _req(text, "qk_nope_head_dim")),
        qk_rope_head_dim=_positive("qk_rope_head_dim", _opt(text, "qk_rope_head_dim", default=64)),
        v_head_dim=_positive("v_head_dim", _req(text, "v_head_dim")),
    )


def _parse_linear(text: dict) -> LinearAttnSpec | None:
    if text.get("linear_num_value_heads") is None:
        return None
    return LinearAttnSpec(
        num_key_heads=_positive("linear_num_key_heads", _req(text, "linear_num_key_heads")),
        num_value_heads=_positive("linear_num_value_heads", text["linear_num_value_heads"]),
        key_head_dim=_positive("linear_key_head_dim", _req(text, "linear_key_head_dim")),
        value_head_dim=_positive("linear_value_head_dim", _req(text, "linear_value_head_dim")),
        conv_kernel=_positive("linear_conv_kernel_dim", _opt(text, "linear_conv_kernel_dim", default=4)),
    )


def _parse_moe(text: dict, layers: int) -> MoESpec | None:
    experts = _opt(text, "n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts")
    if not experts or experts <= 1:
        return None
    top_k = _positive("num_experts_per_tok", _req(text, "num_experts_per_tok", "experts_per_token",
                                                  "moe_top_k", what="num_experts_per_tok"))
    mt = text.get("model_type", "")
    # gpt-oss / Mixtral / Llama-4 experts use intermediate_size; DeepSeek/Qwen-MoE use moe_intermediate_size.
    inter = _positive("moe_intermediate_size", _req(text, "moe_intermediate_size", "intermediate_size",
                                                    what="moe_intermediate_size"))
    shared, shared_inter, shared_gate = 0, 0, False
    if text.get("n_shared_experts"):
        shared, shared_inter = _positive("n_shared_experts", text["n_shared_experts"]), inter
    elif text.get("shared_expert_intermediate_size"):
        shared_inter = _positive("shared_expert_intermediate_size", text["shared_expert_intermediate_size"])
        shared, shared_gate = 1, True
    elif mt.startswith("llama4"):
        shared, shared_inter = 1, inter
    return MoESpec(
        num_experts=_positive("num_experts", experts), top_k=top_k, expert_intermediate=inter,
        moe_layers=_moe_layers(text, layers), shared_experts=shared, shared_intermediate=shared_inter,
        shared_expert_gate=shared_gate,
        router_bias=mt in {"gpt_oss", "deepseek_v3", "kimi_k2", "glm4_moe", "glm4_moe_lite"},
        expert_bias=mt == "gpt_oss",
    )


def _moe_layers(text: dict, layers: int) -> tuple[int, ...]:
    first_dense = _natural("first_k_dense_replace", text.get("first_k_dense_replace") or 0)
    only = text.get("mlp_only_layers") or []
    if not isinstance(only, list):
        raise QfitError(f"malformed config.json: mlp_only_layers must be a list, got {only!r:.40}")
    only_dense = {_natural("mlp_only_layers[]", i) for i in only}
    step = _positive("decoder_sparse_step", _opt(text, "decoder_sparse_step", "interleave_moe_layer_step",
                                                 "moe_layer_freq", default=1) or 1)
    if text.get("model_type", "").startswith("llama4") and step > 1:
        # Llama-4: every step-th layer (1-based) is MoE.
        return tuple(i for i in range(layers) if (i + 1) % step == 0)
    return tuple(i for i in range(layers)
                 if i >= first_dense and i not in only_dense and (i + 1) % step == 0)


def _parse_layer_types(text: dict, layers: int, model_type: str, has_linear: bool) -> tuple[tuple[str, ...], int | None]:
    window = _opt(text, "sliding_window", "attention_chunk_size")
    window = None if window is None else _positive("sliding_window", window)
    raw = text.get("layer_types")
    if isinstance(raw, list) and raw:
        if len(raw) != layers:
            raise QfitError(f"malformed config.json: layer_types has {len(raw)} entries for {layers} layers")
        kinds = []
        for t in raw:
            if not isinstance(t, str) or t not in _LAYER_KIND:
                raise QfitError(f"unsupported architecture: unknown layer type {t!r:.40} in layer_types")
            kinds.append(_LAYER_KIND[t])
        types = tuple(kinds)
    elif has_linear:
        interval = _positive("full_attention_interval", _req(text, "full_attention_interval"))
        types = tuple("full" if (i + 1) % interval == 0 else "linear" for i in range(layers))
    elif model_type in {"gemma3", "gemma3_text"}:
        pattern = _positive("sliding_window_pattern", _opt(text, "sliding_window_pattern", default=6))
        types = tuple("full" if (i + 1) % pattern == 0 else "sliding" for i in range(layers))
    elif model_type == "gemma2":
        types = tuple("sliding" if i % 2 == 0 else "full" for i in range(layers))
    elif model_type.startswith("llama4") and text.get("attention_chunk_size"):
        # Llama-4: chunked local attention on 3 of every 4 layers, global (NoPE) on every 4th.
        types = tuple("full" if (i + 1) % 4 == 0 else "sliding" for i in range(layers))
    elif window and text.get("use_sliding_window", True) and model_type in {"mistral", "mixtral", "phi3", "starcoder2"}:
        types = ("sliding",) * layers
    else:
        types = ("full",) * layers
    if "sliding" in types and not window:
        raise QfitError("unsupported architecture: sliding layers present but config.json has no 'sliding_window'")
    return types, int(window) if window and "sliding" in types else None


def _parse_vision(vcfg: dict | None) -> VisionSpec | None:
    if not vcfg:
        return None
    depth = _opt(vcfg, "depth", "num_hidden_layers")
    hidden = _opt(vcfg, "hidden_size", "embed_dim")
    inter = _opt(vcfg, "intermediate_size")
    if not (depth and hidden):
        return None
    depth, hidden = _positive("vision_config.depth", depth), _positive("vision_config.hidden_size", hidden)
    inter = _positive("vision_config.intermediate_size", inter) if inter else 4 * hidden
    patch = _positive("vision_config.patch_size", _opt(vcfg, "patch_size", default=14))
    channels = _positive("vision_config.in_channels", _opt(vcfg, "in_channels", "num_channels", default=3))
    temporal = _positive("vision_config.temporal_patch_size", _opt(vcfg, "temporal_patch_size", default=1))
    # ViT block: q,k,v,o (4 h^2 + biases) + 2-matrix MLP + 2 LayerNorms; plus patch embedding. Projector/merger
    # into the LM is not counted (it varies per family) — the estimate is a lower bound, flagged in assumptions.
    block = 4 * hidden * hidden + 4 * hidden + 2 * hidden * inter + hidden + inter + 4 * hidden
    params = depth * block + channels * temporal * patch * patch * hidden
    return VisionSpec(depth=int(depth), hidden=int(hidden), intermediate=int(inter), params=int(params))
