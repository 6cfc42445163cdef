"""Inference engines: one EngineProfile per engine (profiles/engines/<engine>.yaml), one registry that normalises the
names users type and decides which engine runs which weights on which device.

    engines = load_engines()                         # I/O: profiles + the user's calibration overlays
    vllm = engines.get("trtllm")                     # an alias: vLLM's profile, with a note saying so
    engine = engines.choose(None, recipe, acc)       # the default engine for these weights on this device
"""

from qfit.engines.load import load_engines
from qfit.engines.profile import EngineProfile, Overlay, Policy
from qfit.engines.registry import EngineRegistry

__all__ = ["EngineProfile", "EngineRegistry", "Overlay", "Policy", "load_engines"]
