"""OpenAI-compatible servers for tests of `qfit profile --endpoint`: a fake one that injects faults (standard library,
127.0.0.1, port 0) and a starter for the real llama.cpp server (llama-cpp-python[server]) that waits until it answers.

The fake server's token stream is timed by sleeps: `ttft_s` before the first token, `itl_s` between tokens, so a
test can check the measured TTFT/ITL against those sleeps. Its tokenizer is "one token per 3 characters" (rounded up),
which the prompt-length search has to discover. Streamed requests numbered below `ok_first` (the probe's and warm-up's)
behave; from there on `mode` applies:
  ok           stream max_tokens tokens (+ a usage chunk when stream_options.include_usage), then [DONE]
  http-500     500 with an OpenAI error object
  not-json     200 text/html
  stall        the response headers, then nothing for `stall_s`
  die          `die_after` tokens, then the connection closes
  stall-mid    `die_after` tokens, then nothing for `stall_s`
  eos          finish_reason "stop" after `eos_after` tokens whatever max_tokens says (a server that ignores ignore_eos)
  alternate    every other request fails with 500
`reject_extras` makes any request carrying ignore_eos / min_tokens / stream_options a 400 (as OpenAI's own API does);
`models` = None makes /v1/models a 404, "html" a web page.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FakeConfig:
    mode: str = "ok"
    ok_first: int = 0
    ttft_s: float = 0.0
    itl_s: float = 0.0
    stall_s: float = 3.0
    die_after: int = 2
    eos_after: int = 3
    usage_in_stream: bool = True
    reject_extras: bool = False
    models: object = ("fake-model",)
    streamed: int = 0                      # streamed requests seen so far
    bodies: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def prompt_tokens(prompt: str) -> int:
    return max(1, math.ceil(len(prompt) / 3))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cfg: FakeConfig

    def log_message(self, *args):   # keep pytest's output clean
        pass

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # no Nagle delay on small chunks

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        models = self.cfg.models
        if self.path != "/v1/models" or models is None:
            return self._send(404, b'{"detail": "Not Found"}')
        if models == "html":
            return self._send(200, b"<html><body>welcome</body></html>", "text/html")
        self._send(200, json.dumps({"object": "list", "data": [{"id": m, "object": "model"} for m in models]}).encode())

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cfg = self.cfg
        with cfg.lock:
            cfg.bodies.append(body)
        if cfg.reject_extras and {"ignore_eos", "min_tokens", "stream_options"} & set(body):
            return self._send(400, b'{"error": {"message": "Unrecognized request argument supplied: ignore_eos"}}')
        n_prompt = prompt_tokens(body["prompt"])
        if not body.get("stream"):
            doc = {"object": "text_completion", "choices": [{"index": 0, "text": "x", "finish_reason": "length"}],
                   "usage": {"prompt_tokens": n_prompt, "completion_tokens": 1, "total_tokens": n_prompt + 1}}
            return self._send(200, json.dumps(doc).encode())
        with cfg.lock:
            index, cfg.streamed = cfg.streamed, cfg.streamed + 1
        mode = "ok" if index < cfg.ok_first else cfg.mode
        if mode == "alternate":
            mode = "http-500" if index % 2 else "ok"
        if mode == "http-500":
            return self._send(500, b'{"error": {"message": "CUDA out of memory", "type": "InternalServerError"}}')
        if mode == "not-json":
            return self._send(200, b"<html>a proxy page</html>", "text/html")
        self._stream(body, n_prompt, mode)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _event(self, doc) -> None:
        self._chunk(b"data: " + (doc if isinstance(doc, bytes) else json.dumps(doc).encode()) + b"\r\n\r\n")

    def _stream(self, body: dict, n_prompt: int, mode: str) -> None:
        cfg = self.cfg
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        if mode == "stall":
            time.sleep(cfg.stall_s)
            return
        self._chunk(b": ping - keep-alive comment\r\n\r\n")
        n = body["max_tokens"] if mode != "eos" else min(body["max_tokens"], cfg.eos_after)
        time.sleep(cfg.ttft_s)
        for i in range(n):
            if i:
                time.sleep(cfg.itl_s)
            if mode == "die" and i == cfg.die_after:
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if mode == "stall-mid" and i == cfg.die_after:
                time.sleep(cfg.stall_s)
                return
            self._event({"choices": [{"index": 0, "text": f"t{i} ", "finish_reason": None}]})
        self._event({"choices": [{"index": 0, "text": "", "finish_reason": "stop" if mode == "eos" else "length"}]})
        if cfg.usage_in_stream and (body.get("stream_options") or {}).get("include_usage"):
            self._event({"choices": [], "usage": {"prompt_tokens": n_prompt, "completion_tokens": n,
                                                  "total_tokens": n_prompt + n}})
        self._event(b"[DONE]")
        self._chunk(b"")


@contextlib.contextmanager
def fake_server(cfg: FakeConfig):
    """Yields the base URL (http://127.0.0.1:PORT) of a fake server running `cfg` in a thread."""
    handler = type("Handler", (_Handler,), {"cfg": cfg})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_cpp_server(gguf: str, *, timeout_s: float = 120.0, extra_args: tuple[str, ...] = (), log=None):
    """Start `python -m llama_cpp.server --model GGUF` on a free 127.0.0.1 port; yield its base URL once GET
    /v1/models answers 200; stop it on exit. Raises RuntimeError (with the server's last output) if it exits or is
    not ready within timeout_s."""
    port = closed_port()
    out = log if log is not None else tempfile.TemporaryFile()   # a file, not a pipe that fills and blocks the server
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1",
                             "--port", str(port), *extra_args], stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                out.seek(0)
                tail = out.read()[-2000:].decode(errors="replace") if log is None else ""
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server not ready on {url} within {timeout_s:g} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log is None:
            out.close()
