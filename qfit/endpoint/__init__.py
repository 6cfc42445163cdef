"""`qfit profile --endpoint URL`: load a running OpenAI-compatible server and measure what its users would see.

http (a minimal asyncio HTTP/1.1 client with hard timeouts), client (the OpenAI completions protocol over it: probe,
one streamed request), prompts (prompts of a token length from qfit's offline texts), stats (pure per-level
statistics), run (the sweep), report and plot (outputs). No third-party HTTP library: see README, "Profile a running
server", for why GuideLLM is not used.
"""
