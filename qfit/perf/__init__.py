"""Speed model: roofline prefill/decode with engine x device-family efficiencies calibrated on published measurements.

Layout: workload.py (bytes and FLOPs from the model's shape), roofline.py (bytes/FLOPs -> seconds),
efficiency.py (an engine profile's factors for one device backend and format), estimate.py (PerfEstimate, batch curves).
"""

from qfit.perf.efficiency import Efficiency, efficiency_for
from qfit.perf.estimate import (
                                CurvePoint,
                                PerfEstimate,
                                batch_curve,
                                estimate_performance,
                                quantization_stops_helping,
)

__all__ = ["CurvePoint", "Efficiency", "PerfEstimate", "batch_curve", "efficiency_for", "estimate_performance",
           "quantization_stops_helping"]
