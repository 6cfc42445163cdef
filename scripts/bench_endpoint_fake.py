"""How much the endpoint client adds to what it measures: `qfit profile --endpoint` against the fake server of
tests/endpoint_servers.py, whose stream sleeps a fixed TTFT before the first token and a fixed ITL between tokens, so
every millisecond measured beyond the sleeps is the client's (and the fake server's own Python) overhead.

    PYTHONPATH=. python scripts/bench_endpoint_fake.py [--ttft-ms 50] [--itl-ms 10] [-b 1,4,16] [--output-len 32]

Prints per concurrency: measured TTFT p50 / mean ITL / TPOT mean and their excess over the sleeps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from endpoint_servers import FakeConfig, fake_server  # noqa: E402

from qfit.endpoint.run import EndpointOptions, run_endpoint  # noqa: E402
from qfit.profile.progress import line_progress  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("-b", default="1,4,16")
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--input-len", type=int, default=256)
    args = ap.parse_args()
    cfg = FakeConfig(ttft_s=args.ttft_ms / 1000, itl_s=args.itl_ms / 1000)
    with fake_server(cfg) as url:
        opts = EndpointOptions(url=url, input_len=args.input_len, output_len=args.output_len, text="pydoc",
                               concurrencies=tuple(int(b) for b in args.b.split(",")))
        result = run_endpoint(opts, line_progress(lambda line: print(line, file=sys.stderr)))
    print(f"fake server: TTFT sleep {args.ttft_ms:g} ms, ITL sleep {args.itl_ms:g} ms, "
          f"{args.input_len} prompt / {args.output_len} output tokens")
    print("concurrency  done  TTFT p50 ms (+excess)  ITL mean ms (+excess)  TPOT mean ms  out tok/s")
    for lv in result["levels"]:
        ttft, itl, tpot = (1000 * lv[k]["mean" if k != "ttft_s" else "p50"] for k in ("ttft_s", "itl_s", "tpot_s"))
        print(f"{lv['concurrency']:>11}  {lv['completed']:>2}/{lv['requests']:<2} {ttft:9.1f} (+{ttft - args.ttft_ms:5.1f})"
              f"      {itl:8.2f} (+{itl - args.itl_ms:5.2f})       {tpot:8.2f}  {lv['output_tokens_per_s']:9.1f}")


if __name__ == "__main__":
    main()
