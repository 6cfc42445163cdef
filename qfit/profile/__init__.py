"""`qfit profile`: measured quality (perplexity, KL, task accuracy) and speed of a checkpoint vs its baseline and the plan.

Pure maths lives in metrics.py; everything that imports torch does so inside functions.
"""
