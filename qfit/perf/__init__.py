"""Speed model: roofline prefill/decode with engine x device-family efficiencies calibrated on published measurements.

Layout: workload.py (bytes and FLOPs from the model's shape), roofline.py (bytes/FLOPs -> seconds),
efficiency.py (profiles/engines/speed/*.yaml), estimate.py (PerfEstimate, batch curves).
"""

from qfit.perf.efficiency import ENGINES, backend_for, efficiency_for, normalize_engine
from qfit.perf.estimate import (CurvePoint, PerfEstimate, batch_curve, estimate_performance,
                                quantization_stops_helping)

__all__ = ["ENGINES", "CurvePoint", "PerfEstimate", "backend_for", "batch_curve", "efficiency_for",
           "estimate_performance", "normalize_engine", "quantization_stops_helping"]
