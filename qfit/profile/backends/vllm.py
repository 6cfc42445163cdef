"""vLLM backend (CUDA/ROCm GPUs; tensor parallel for models beyond one GPU).

vLLM returns log-probs of the prompt tokens (prompt_logprobs), not full distributions, so perplexity and
multiple-choice scoring work and KL / top-1 agreement are reported as not available.
Timing uses max_tokens=1 for prefill/TTFT and the request's metrics-free wall clock for decode: TPOT =
(time for N tokens - time for 1 token) / (N - 1) at batch B, measured on one generate() call per trial.
"""

from __future__ import annotations

import time
from typing import Sequence

from qfit.errors import QfitError
from qfit.profile.backends.base import Backend, DecodeTiming, ModelInfo


class VllmBackend(Backend):
    name = "vllm"
    supports_full_logprobs = False

    def __init__(self, model_ref: str, device: str = "auto", dtype: str = "fp32", threads: int | None = None,
                 trust_remote_code: bool = False, seed: int = 0, tensor_parallel: int = 1):
        if device not in ("auto", "cuda"):
            raise QfitError("backend vllm runs on GPUs only: use --device cuda or --backend transformers")
        import torch
        if not torch.cuda.is_available():
            raise QfitError("backend vllm needs a GPU and none is visible: use --backend transformers")
        from vllm import LLM, SamplingParams

        from qfit import loading
        folder = loading.resolve_model_dir(model_ref)
        vdtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, "auto")
        self._sp = SamplingParams
        self.llm = LLM(model=str(folder), dtype=vdtype, tensor_parallel_size=tensor_parallel, seed=seed,
                       trust_remote_code=trust_remote_code, enforce_eager=False)
        self.tok = self.llm.get_tokenizer()
        self.device = "cuda"
        from transformers import AutoConfig

        from qfit.model.checkpoint_bytes import checkpoint_weight_bytes
        from qfit.profile.backends.hf import precision_of
        cfg = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
        self.info = ModelInfo(path=str(folder), precision=precision_of(cfg, dtype), dtype=vdtype, params=None,
                              weight_bytes=checkpoint_weight_bytes(folder), decode_read_bytes=None,
                              kv_bytes_per_token=None, vocab=getattr(cfg, "vocab_size", None),
                              extra={"tensor_parallel": tensor_parallel},
                              weight_bytes_how="the checkpoint's safetensors tensors, tied weights once (as qfit "
                                               "inspect); vLLM's own memory is not visible here")
        self._seed = seed

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.tok(text, add_special_tokens=add_special_tokens)["input_ids"])

    @property
    def bos_id(self):
        return self.tok.bos_token_id

    def token_logprobs(self, ids: Sequence[int]) -> list[float]:
        from vllm.inputs import TokensPrompt
        params = self._sp(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        out = self.llm.generate([TokensPrompt(prompt_token_ids=list(ids))], params, use_tqdm=False)[0]
        lps = out.prompt_logprobs[1:]  # position 0 has no prediction
        return [float(d[t].logprob) for d, t in zip(lps, ids[1:])]

    def _ids(self, batch: int, length: int) -> list[list[int]]:
        import random
        rng = random.Random(self._seed)
        vocab = self.info.vocab or 32000
        return [[rng.randrange(vocab) for _ in range(length)] for _ in range(batch)]

    def _generate(self, batch: int, length: int, tokens: int) -> float:
        from vllm.inputs import TokensPrompt
        params = self._sp(max_tokens=tokens, min_tokens=tokens, temperature=0.0, ignore_eos=True)
        prompts = [TokensPrompt(prompt_token_ids=p) for p in self._ids(batch, length)]
        t0 = time.perf_counter()
        self.llm.generate(prompts, params, use_tqdm=False)
        return time.perf_counter() - t0

    def time_prefill(self, input_len: int, batch: int = 1) -> float:
        return self._generate(batch, input_len, 1)

    def time_decode(self, batch: int, input_len: int, output_tokens: int) -> DecodeTiming:
        ttft = self._generate(batch, input_len, 1)
        total = self._generate(batch, input_len, output_tokens)
        tpot = max(total - ttft, 0.0) / max(output_tokens - 1, 1)
        # vLLM's offline API gives no per-step times: every step gets the average (the spread is across trials).
        return DecodeTiming(ttft, [tpot] * max(output_tokens - 1, 1))

    def reset_peak_memory(self) -> None:
        import torch
        torch.cuda.reset_peak_memory_stats()

    def peak_memory(self) -> dict:
        import torch
        free, total = torch.cuda.mem_get_info()
        return {"kind": "device-used", "bytes": int(total - free),
                "scope": "end of the speed phase: the whole GPU's memory in use, other processes included",
                "how": "torch.cuda.mem_get_info (total - free): vLLM pre-allocates gpu_memory_utilization of the card"}

    def versions(self) -> dict:
        import vllm
        return {"vllm": vllm.__version__}
