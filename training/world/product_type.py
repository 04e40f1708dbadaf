"""One product type of the relevance world: its nouns, attributes and price range (see `vocabulary`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProductType:
    key: str  # also the noun used in queries and explanations: "phone case"
    title_noun: str  # noun in product titles: "Phone Case"
    department: str
    query_nouns: tuple[str, ...]  # how people type it
    sibling_group: str | None = None
    hosts: tuple[str, ...] = ()  # non-empty: an accessory of these types
    fit: str | None = None  # "model" | "brand" | None
    dimension: str | None = None  # "volume" | "weight" | "storage" | "power"
    quantities: tuple[float, ...] = ()
    sizes: tuple[str, ...] = ()
    colours: tuple[str, ...] = ()
    materials: tuple[str, ...] = ()
    packs: tuple[int, ...] = (1,)
    targets: tuple[str, ...] = ()
    feature: str | None = None  # a feature queries may exclude ("without sulfates")
    has_condition: bool = False  # can be sold refurbished
    price_range: tuple[int, int] = (10, 50)
    blurb: str = ""

    @property
    def is_accessory(self) -> bool:
        return bool(self.hosts)
