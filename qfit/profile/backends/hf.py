"""transformers backend (CPU, CUDA, MPS): full next-token distributions, so KL and top-1 agreement are exact."""

from __future__ import annotations

import time
from typing import Sequence

from qfit.errors import QfitError
from qfit.profile.backends.base import Backend, DecodeTiming, ModelInfo

_DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
           "fp16": "float16", "float16": "float16"}


def pick_device(device: str) -> str:
    import torch
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise QfitError("--device cuda: no CUDA device is visible to torch")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise QfitError("--device mps: the MPS backend is not available in this torch build")
    return device


def _load(model_ref: str, dtype: str, device: str, trust_remote_code: bool):
    """Model and tokenizer through qfit.loading (local folder, .gguf converted once to a float folder, hub id)."""
    from qfit import loading
    folder = loading.resolve_model_dir(model_ref)
    model = loading.load_causal_lm(folder, dtype=_DTYPES[dtype], device=device, trust_remote_code=trust_remote_code)
    return folder, model, loading.load_tokenizer(folder, trust_remote_code=trust_remote_code)


def precision_of(config, dtype: str) -> str:
    """The planner's precision name for a loaded model: its quantization_config read as a Recipe (as `qfit plan`
    reads it); the method's own name when the planner does not model it; else the compute dtype."""
    from qfit.precision import float_recipe, recipe_from_config

    qc = _qc_dict(config)
    if qc is not None:
        recipe = recipe_from_config(qc)
        return recipe.name if recipe else str(qc.get("quant_method") or "quantized").lower()
    return float_recipe(_DTYPES[dtype]).name


def _loaded_bytes(model) -> tuple[int, int]:
    """(bytes, float parameters) of the parameters and buffers the loaded model holds, shared storage counted once."""
    seen, total, params = set(), 0, 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = (t.untyped_storage().data_ptr(), t.numel())  # tied weights share storage: count once
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
        params += t.numel() if t.is_floating_point() else 0
    return total, params


def model_info(folder, model, dtype: str) -> ModelInfo:
    from qfit.model.checkpoint_bytes import checkpoint_weight_bytes

    loaded, params = _loaded_bytes(model)
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    emb = model.get_input_embeddings().weight
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    # what a decode step reads is what the kernels hold (non-quantized parts at the compute dtype), not the file
    decode_read = loaded - (0 if tied else emb.numel() * emb.element_size())
    heads = getattr(cfg, "num_attention_heads", None)
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or (cfg.hidden_size // heads if heads else None)
    layers = getattr(cfg, "num_hidden_layers", None)
    kv_elt = model.get_input_embeddings().weight.element_size() if emb.is_floating_point() else 2
    kv = 2 * layers * kv_heads * head_dim * kv_elt if layers and kv_heads and head_dim else None
    return ModelInfo(path=str(folder), precision=precision_of(model.config, dtype), dtype=_DTYPES[dtype],
                     params=params, weight_bytes=checkpoint_weight_bytes(folder), decode_read_bytes=decode_read,
                     kv_bytes_per_token=kv, layers=layers, vocab=getattr(cfg, "vocab_size", None),
                     max_positions=getattr(cfg, "max_position_embeddings", None), loaded_bytes=loaded,
                     weight_bytes_how=WEIGHT_BYTES_HOW,
                     extra={"tied_embeddings": tied, "architecture": (model.config.architectures or ["?"])[0],
                            "quantization_config": _qc_dict(model.config)})


WEIGHT_BYTES_HOW = ("weight_bytes: the checkpoint's safetensors tensors, tied weights once (as qfit inspect); "
                    "loaded_bytes: parameters and buffers in memory, non-quantized tensors at the compute dtype")


def _qc_dict(config) -> dict | None:
    qc = getattr(config, "quantization_config", None)
    if qc is None:
        return None
    qc = qc if isinstance(qc, dict) else qc.to_dict()
    keep = ("quant_method", "bits", "group_size", "desc_act", "sym", "format", "checkpoint_format")
    # transformers' to_dict() keeps enums (QuantizationMethod.GPTQ): store their plain values
    return {k: getattr(qc[k], "value", qc[k]) for k in keep if k in qc}


class TransformersBackend(Backend):
    name = "transformers"
    supports_full_logprobs = True

    def __init__(self, model_ref: str, device: str = "auto", dtype: str = "fp32", threads: int | None = None,
                 trust_remote_code: bool = False, seed: int = 0):
        import torch
        if threads:
            torch.set_num_threads(threads)
        if dtype not in _DTYPES:
            raise QfitError(f"unknown dtype {dtype!r}: use one of fp32, bf16, fp16")
        self.device = pick_device(device)
        self.dtype, self.trust_remote_code = dtype, trust_remote_code
        self.folder, self.model, self.tok = _load(model_ref, dtype, self.device, trust_remote_code)
        self.model.eval()
        self.info = model_info(self.folder, self.model, dtype)
        self._gen = torch.Generator().manual_seed(seed)

    def use_dequantized_weights(self) -> str | None:
        """For accuracy metrics: swap a GPTQ model for the same weights dequantized once to the compute dtype (the
        values the kernels compute with, at float speed). None when the model is not GPTQ; the method line else."""
        if not str(self.info.precision).startswith("gptq"):
            return None
        import gc

        from qfit.quantize.dequant import load_dequantized
        self.model = None
        gc.collect()
        self.model = load_dequantized(self.folder, dtype=_DTYPES[self.dtype], device=self.device,
                                      trust_remote_code=self.trust_remote_code)
        return (f"accuracy on the GPTQ weights dequantized once to {_DTYPES[self.dtype]} (W = scale x (q - zero), "
                "the values the kernels compute with; speed was measured on the kernels)")

    # ---- tokens
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.tok(text, add_special_tokens=add_special_tokens)["input_ids"])

    @property
    def bos_id(self) -> int | None:
        return self.tok.bos_token_id

    # ---- scoring
    def _logits(self, batch):
        import torch
        with torch.inference_mode():
            return self.model(input_ids=batch.to(self.device), use_cache=False).logits.float()

    def full_logprobs(self, ids: Sequence[int]):
        import torch
        logits = self._logits(torch.tensor([list(ids)], dtype=torch.long))[0]
        return torch.log_softmax(logits, dim=-1).cpu()

    def token_logprobs(self, ids: Sequence[int]) -> list[float]:
        import torch
        lp = self.full_logprobs(ids)
        target = torch.tensor(list(ids[1:]), dtype=torch.long)
        return lp[:-1].gather(1, target[:, None])[:, 0].tolist()

    def continuation_logliks(self, context: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[float]:
        """All choices of one question in one right-padded batch; padding never precedes a scored token."""
        import torch
        seqs = [list(context) + list(c) for c in continuations]
        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        batch = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            batch[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        with torch.inference_mode():
            logits = self.model(input_ids=batch.to(self.device), attention_mask=mask.to(self.device),
                                use_cache=False).logits.float()
        lp = torch.log_softmax(logits, dim=-1).cpu()
        out = []
        for i, cont in enumerate(continuations):
            start = len(context)
            pos = torch.arange(start - 1, start - 1 + len(cont))
            out.append(float(lp[i, pos, torch.tensor(list(cont))].sum()))
        return out

    # ---- speed
    def _sync(self) -> None:
        import torch
        if self.device == "cuda":
            torch.cuda.synchronize()
        elif self.device == "mps":
            torch.mps.synchronize()

    def _random_ids(self, batch: int, length: int):
        import torch
        vocab = self.info.vocab or self.model.config.vocab_size
        # Random ids from the seeded generator: timing does not depend on content, and every run sees the same ids.
        return torch.randint(0, vocab, (batch, length), generator=self._gen).to(self.device)

    def time_prefill(self, input_len: int, batch: int = 1) -> float:
        import torch
        ids = self._random_ids(batch, input_len)
        self._sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            self.model(input_ids=ids, use_cache=True).logits[:, -1].argmax(-1)
        self._sync()
        return time.perf_counter() - t0

    def time_decode(self, batch: int, input_len: int, output_tokens: int) -> DecodeTiming:
        import torch
        ids = self._random_ids(batch, input_len)
        steps = []
        self._sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            self._sync()
            ttft = time.perf_counter() - t0
            cache = out.past_key_values
            for _ in range(output_tokens - 1):
                t = time.perf_counter()
                out = self.model(input_ids=nxt, past_key_values=cache, use_cache=True)
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                cache = out.past_key_values
                self._sync()
                steps.append(time.perf_counter() - t)
        return DecodeTiming(ttft, steps)

    def reset_peak_memory(self) -> None:
        import torch
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def peak_memory(self) -> dict:
        import torch
        if self.device == "cuda":
            return {"kind": "device-allocator", "bytes": int(torch.cuda.max_memory_allocated()),
                    "scope": "speed phase: MODEL alone", "how": "torch.cuda.max_memory_allocated since the start "
                    "of the speed run (tensors torch allocated on the GPU; not the process's RSS)"}
        if self.device == "mps":
            return {"kind": "device-allocator", "bytes": int(torch.mps.driver_allocated_memory()),
                    "scope": "end of the speed phase: MODEL alone", "how": "torch.mps.driver_allocated_memory at "
                    "the end of the speed run (MPS keeps no peak; not the process's RSS)"}
        return super().peak_memory()

    def versions(self) -> dict:
        import torch
        import transformers
        return {"torch": torch.__version__, "transformers": transformers.__version__}

    def close(self) -> None:
        self.model = None
