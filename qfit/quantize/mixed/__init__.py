"""Mixed-precision GPTQ: per-module bit widths chosen to fill a byte budget with the least quality loss.

budget.py turns --target-size / --target-bpw / --fit into a weight-byte budget (the planner's formulas); units.py
groups the model's linears into allocation units (fused groups kept uniform) with their exact bytes per width;
sensitivity.py measures each unit's Hessian-weighted error per width in one float pass over the calibration data;
allocate.py solves the multiple-choice knapsack; run.py ties them to `qfit quantize`.
"""
