"""`qfit quantize` / `qfit inspect`: GPTQ v1 checkpoints via GPTQModel (run.py, engine.py), the RTN baseline and
v1 packing (pack.py, checkpoint.py), calibration (calib.py), memory prediction (estimate.py), header-only checks
(inspect.py) and the report (report.py). Nothing heavy is imported at package import time."""
