"""qfit: plan, quantize and profile open-weight LLM deployments."""

__version__ = "0.1.0"
