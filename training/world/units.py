"""Quantities with units, written the several ways people write them.

A `Quantity` keeps its value in the dimension's base unit (ml, g, GB, W), so
"0.5 l", "500ml" and "500 ml" compare equal, while `unit` remembers how it was
written: the unit-equivalence rule fires when the units differ but the values
do not.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# unit -> (dimension, base units per unit)
UNITS: dict[str, tuple[str, int]] = {
    "ml": ("volume", 1),
    "l": ("volume", 1000),
    "g": ("weight", 1),
    "kg": ("weight", 1000),
    "GB": ("storage", 1),
    "W": ("power", 1),
}
_SPELLINGS: dict[str, tuple[str, ...]] = {
    "ml": ("{n}ml", "{n} ml"),
    "l": ("{n} l", "{n}l", "{n} litre", "{n} liter"),
    "g": ("{n}g", "{n} g"),
    "kg": ("{n} kg", "{n}kg"),
    "GB": ("{n}GB", "{n} GB"),
    "W": ("{n}W", "{n} W"),
}


@dataclass(frozen=True)
class Quantity:
    value: float  # in the dimension's base unit
    dimension: str
    unit: str  # the unit it is written in
    text: str  # exactly as written

    def same_amount(self, other: Quantity) -> bool:
        return self.dimension == other.dimension and abs(self.value - other.value) < 1e-9


def units_for(dimension: str) -> tuple[str, ...]:
    return tuple(u for u, (d, _) in UNITS.items() if d == dimension)


def write(value: float, unit: str, spelling: int = 0) -> Quantity:
    """`value` in base units, written in `unit` with one of its spellings."""
    dimension, scale = UNITS[unit]
    forms = _SPELLINGS[unit]
    number = f"{value / scale:g}"
    return Quantity(value, dimension, unit, forms[spelling % len(forms)].format(n=number))


def natural_unit(value: float, dimension: str) -> str:
    """The unit a seller would most likely print: litres from 1,000 ml, kilos from 1,000 g."""
    units = units_for(dimension)
    if len(units) == 1:
        return units[0]
    small, large = units
    return large if value >= 1000 else small


def sample_writing(value: float, dimension: str, rng: random.Random, p_other_unit: float) -> Quantity:
    """Write `value` in its natural unit, or with probability `p_other_unit` in the other one."""
    unit = natural_unit(value, dimension)
    others = [u for u in units_for(dimension) if u != unit]
    if others and rng.random() < p_other_unit:
        unit = others[0]
    return write(value, unit, rng.randrange(len(_SPELLINGS[unit])))
