"""`qfit quantize` / `qfit inspect`: GPTQ v1 checkpoints via GPTQModel (run.py, engine.py), the RTN baseline and
v1 packing (pack.py, checkpoint.py), calibration (calib.py), the recipe checked against the source's headers
(job.py, source.py), memory and time prediction (estimate.py, timing.py), the terminal view and log file
(terminal.py), header-only checks (inspect.py) and the report (report.py). Nothing heavy is imported at package
import time."""
