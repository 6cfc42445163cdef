"""llama.cpp backend through llama-cpp-python, for GGUF files.

With logits_all=True llama.cpp keeps the logits of every position, so full distributions (KL, agreement) are
available. Timing: prefill = llm.eval over the prompt; decode = one llm.eval per token, batch 1 only (the Python
binding runs one sequence; batches > 1 are refused rather than faked).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from qfit.errors import QfitError
from qfit.profile.backends.base import Backend, DecodeTiming, ModelInfo


class LlamaCppBackend(Backend):
    name = "llama.cpp"
    supports_full_logprobs = True

    def __init__(self, model_ref: str, device: str = "auto", dtype: str = "fp32", threads: int | None = None,
                 trust_remote_code: bool = False, seed: int = 0, n_ctx: int = 4096):
        path = Path(model_ref)
        if path.suffix.lower() != ".gguf" or not path.is_file():
            raise QfitError(f"backend llama.cpp needs a .gguf file, got {model_ref!r}")
        from llama_cpp import Llama
        gpu_layers = 0 if device == "cpu" else -1
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, n_threads=threads, seed=seed,
                         n_gpu_layers=gpu_layers, verbose=False)
        self.device = "cpu" if device == "cpu" else device
        size = path.stat().st_size
        self.info = ModelInfo(path=str(path), precision=_gguf_precision(path), dtype="gguf", params=None,
                              weight_bytes=size, decode_read_bytes=size, kv_bytes_per_token=None,
                              vocab=self.llm.n_vocab(), extra={"n_ctx": n_ctx, "n_gpu_layers": gpu_layers},
                              max_positions=n_ctx, weight_bytes_how="the .gguf file's size: its tensors plus "
                              "metadata and vocabulary (an upper bound on the weight bytes)")
        self._seed = seed

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=False))

    @property
    def bos_id(self):
        return self.llm.token_bos()

    def full_logprobs(self, ids: Sequence[int]):
        import numpy as np
        import torch
        self.llm.reset()
        self.llm.eval(list(ids))
        logits = torch.from_numpy(np.array(self.llm.scores[:len(ids)], dtype=np.float32))
        return torch.log_softmax(logits, dim=-1)

    def token_logprobs(self, ids: Sequence[int]) -> list[float]:
        import torch
        lp = self.full_logprobs(ids)
        return lp[:-1].gather(1, torch.tensor(list(ids[1:]))[:, None])[:, 0].tolist()

    def _ids(self, length: int) -> list[int]:
        import random
        rng = random.Random(self._seed)
        return [rng.randrange(self.info.vocab) for _ in range(length)]

    def time_prefill(self, input_len: int, batch: int = 1) -> float:
        if batch != 1:
            raise QfitError("backend llama.cpp measures batch 1 only (llama-cpp-python runs one sequence)")
        self.llm.reset()
        t0 = time.perf_counter()
        self.llm.eval(self._ids(input_len))
        return time.perf_counter() - t0

    def time_decode(self, batch: int, input_len: int, output_tokens: int) -> DecodeTiming:
        import numpy as np
        if batch != 1:
            raise QfitError("backend llama.cpp measures batch 1 only: use --batch 1")
        self.llm.reset()
        t0 = time.perf_counter()
        self.llm.eval(self._ids(input_len))
        nxt = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
        ttft = time.perf_counter() - t0
        steps = []
        for _ in range(output_tokens - 1):
            t = time.perf_counter()
            self.llm.eval([nxt])
            nxt = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            steps.append(time.perf_counter() - t)
        return DecodeTiming(ttft, steps)

    def versions(self) -> dict:
        import llama_cpp
        return {"llama_cpp_python": llama_cpp.__version__}


def _gguf_precision(path: Path) -> str:
    """Planner precision name from the GGUF header's general.file_type (e.g. gguf-q4_1), read by the planner's own
    header parser; 'gguf' when the file does not say (the planner then reports n/a)."""
    from qfit.model.gguf_source import load_gguf

    return load_gguf(path).header.file_type or "gguf"
