"""Cost of a configuration (pure): rental $/hour, $/million output tokens, purchase TCO with power, kW, rack units.

Formulas (every printed cost comes from one of these):
  rent $/h        = GPUs x rent price per GPU-hour (dated, from the profile or --prices)
  $/M output tok  = rent $/h / (output tokens per hour at the workload / 1e6)
  power kW        = GPUs x TDP / 1000 (TDP is an upper bound: decode rarely draws full board power; GPUs only,
                    no host, network or cooling)
  TCO             = GPUs x list price + power kW x hours/month x months x $/kWh
  TCO $/h         = TCO / (hours/month x months), to compare with renting
"""

from __future__ import annotations

from dataclasses import dataclass

from qfit.hardware import Accelerator, Price
from qfit.size.prices import PriceBook


@dataclass(frozen=True)
class CostParams:
    hours_per_month: float = 730.0
    months: int = 36
    power_usd_per_kwh: float = 0.12
    prices: PriceBook | None = None


@dataclass(frozen=True)
class Cost:
    rent_usd_per_hour: float | None
    usd_per_million_output_tokens: float | None
    rent_price: Price | None
    list_price: Price | None
    capex_usd: float | None
    power_kw: float | None
    energy_usd: float | None
    tco_usd: float | None
    tco_usd_per_hour: float | None
    rack_units: float | None

    def to_dict(self) -> dict:
        def r(x, n=4):
            return None if x is None else round(x, n)

        return {
            "rent_usd_per_hour": r(self.rent_usd_per_hour),
            "usd_per_million_output_tokens": r(self.usd_per_million_output_tokens),
            "rent_price": self.rent_price.to_dict() if self.rent_price else None,
            "list_price": self.list_price.to_dict() if self.list_price else None,
            "capex_usd": r(self.capex_usd, 2), "power_kw": r(self.power_kw, 3), "energy_usd": r(self.energy_usd, 2),
            "tco_usd": r(self.tco_usd, 2), "tco_usd_per_hour": r(self.tco_usd_per_hour), "rack_units": self.rack_units,
        }


def cost_of(acc: Accelerator, gpus: int, output_tokens_per_s: float, params: CostParams) -> Cost:
    book = params.prices
    rent = book.rent_for(acc) if book else acc.rent
    buy = book.list_for(acc) if book else acc.list_price
    hourly = gpus * rent.value if rent else None
    per_m = hourly / (output_tokens_per_s * 3600 / 1e6) if hourly is not None and output_tokens_per_s > 0 else None
    kw = gpus * acc.tdp_w / 1000 if acc.tdp_w else None
    hours = params.hours_per_month * params.months
    energy = kw * hours * params.power_usd_per_kwh if kw is not None else None
    capex = gpus * buy.value if buy else None
    # TCO needs both halves: a list price with no power figure would look cheaper than it is.
    tco = capex + energy if capex is not None and energy is not None else None
    return Cost(
        rent_usd_per_hour=hourly, usd_per_million_output_tokens=per_m, rent_price=rent, list_price=buy,
        capex_usd=capex, power_kw=kw, energy_usd=energy, tco_usd=tco,
        tco_usd_per_hour=tco / hours if tco is not None and hours else None,
        rack_units=gpus * acc.rack_units if acc.rack_units else None,
    )
