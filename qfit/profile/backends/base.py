"""What `qfit profile` needs from an inference engine, so accuracy and speed code is engine-agnostic.

A backend scores token sequences (full next-token log-distributions when it can, per-token log-likelihoods at least)
and times prefill and decode. Engines that only expose sampled log-probs (vLLM) return None from `full_logprobs`;
KL and top-1 agreement are then reported as not available rather than approximated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence


@dataclass
class ModelInfo:
    """Facts about the loaded model that the report and the bandwidth estimate need (all measured from the loaded object)."""

    path: str
    precision: str  # planner precision name: fp32, bf16, fp16, gptq-int4, gguf-q4_1, ...
    dtype: str
    params: int | None
    weight_bytes: int | None  # bytes of the checkpoint's weights (qfit.model.checkpoint_bytes: tied once) or file
    decode_read_bytes: int | None  # bytes read per decode step, weights only (an untied input embedding is a lookup)
    kv_bytes_per_token: int | None  # K and V over all layers, per sequence and token
    layers: int | None = None
    vocab: int | None = None
    extra: dict = field(default_factory=dict)
    max_positions: int | None = None   # the longest sequence the loaded model takes (config or the engine's context)
    loaded_bytes: int | None = None    # parameters and buffers in memory (compute dtype), None when not visible
    weight_bytes_how: str = ""         # what weight_bytes counts

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DecodeTiming:
    ttft_s: float  # prefill of the prompt plus the first generated token
    step_s: list[float]  # one entry per further decoded token (time per output token)


class Backend:
    name = "base"
    supports_full_logprobs = False

    device: str
    info: ModelInfo

    def use_dequantized_weights(self) -> str | None:
        """Backends that can evaluate accuracy on dequantized weights say how they did; others keep their kernels."""
        return None

    # ---- tokens
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        raise NotImplementedError

    @property
    def bos_id(self) -> int | None:
        return None

    def adds_bos(self) -> bool:
        """Whether the tokenizer's default encoding starts with BOS (the 'auto' perplexity protocol follows it)."""
        bos = self.bos_id
        ids = self.encode("a", add_special_tokens=True)
        return bos is not None and bool(ids) and ids[0] == bos

    # ---- scoring
    def full_logprobs(self, ids: Sequence[int]) -> Any:
        """Log-softmax of the next-token distribution at every position, float32 tensor [len(ids), vocab]; or None."""
        return None

    def token_logprobs(self, ids: Sequence[int]) -> list[float]:
        """log p(ids[i] | ids[:i]) for i = 1 .. len(ids)-1."""
        raise NotImplementedError

    def continuation_logliks(self, context: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[float]:
        """Summed log-likelihood of each continuation after the shared context."""
        out = []
        for cont in continuations:
            lps = self.token_logprobs(list(context) + list(cont))
            out.append(sum(lps[len(context) - 1:]))
        return out

    # ---- speed
    def time_prefill(self, input_len: int, batch: int = 1) -> float:
        raise NotImplementedError

    def time_decode(self, batch: int, input_len: int, output_tokens: int) -> DecodeTiming:
        raise NotImplementedError

    def reset_peak_memory(self) -> None:
        pass

    def peak_memory(self) -> dict:
        """{'kind': 'device-allocator'|'process-peak-rss', 'bytes': int|None, 'scope': str, 'how': str}."""
        from qfit.profile.speed import SPEED_SCOPE, process_peak_rss
        return process_peak_rss(SPEED_SCOPE)

    def versions(self) -> dict:
        return {}

    def close(self) -> None:
        pass
