"""Accelerators: the `Accelerator` dataclass (device.py), the catalog of profiles/gpus/*.yaml (catalog.py) and the
forgiving name lookup (lookup.py). Pure data and string handling: no torch, no numpy."""

from qfit.hardware.catalog import (
                                  build_accelerator,
                                  list_accelerators,
                                  load_accelerators,
                                  validate_record,
)
from qfit.hardware.device import (
                                  BACKEND_OF_VENDOR,
                                  SEGMENTS,
                                  TFLOPS_KEYS,
                                  VENDORS,
                                  Accelerator,
                                  Interconnect,
                                  Price,
                                  Tflops,
)
from qfit.hardware.lookup import HOST_NAMES, compact, get_accelerator

__all__ = ["BACKEND_OF_VENDOR", "HOST_NAMES", "SEGMENTS", "TFLOPS_KEYS", "VENDORS", "Accelerator", "Interconnect",
           "Price", "Tflops", "build_accelerator", "compact", "get_accelerator", "list_accelerators",
           "load_accelerators", "validate_record"]
