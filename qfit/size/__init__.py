"""`qfit size`: the cheapest hardware that serves a workload (procurement sizing).

    from qfit import api
    from qfit.workload import Workload
    result = api.size("llama-3.1-8b", Workload(context=8192, batch=64, min_tokens_per_s=20))
    result.chosen.label, result.chosen.cost.rent_usd_per_hour

Layout: search.py (the search, pure), speed.py (the one adapter to qfit.perf), cost.py, prices.py (--prices files),
rank.py (rankings, Pareto, explanations), api.py (SizeResult and the pure `size`
over resolved objects), render.py (rich/CSV/plot). qfit.api.size resolves names and calls it.
"""

from qfit.size.api import SizeResult, size
from qfit.size.cost import CostParams
from qfit.size.prices import PriceBook, load_prices
from qfit.size.search import DEFAULT_PRECISIONS, MAX_TOTAL_GPUS
from qfit.workload import Workload

__all__ = ["CostParams", "DEFAULT_PRECISIONS", "MAX_TOTAL_GPUS", "PriceBook", "SizeResult", "Workload",
           "load_prices", "size"]
