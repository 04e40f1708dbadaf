"""The static vocabulary of the relevance world: product types, brands, models.

Everything here is a constant table; the seed only decides how it is sampled.
The vocabulary is kept moderate on purpose (tens of brands, a few dozen
product types) so that a tiny model can learn every cue from visible text.

Conventions:
- Quantities are stored in a base unit per dimension: ml (volume), g (weight),
  GB (storage), W (power); `units.py` writes them several ways.
- A type with `hosts` is an accessory of those types (grade 1 complement).
  `fit` says how an accessory names what it fits: "model" (a case for the
  Galaxy S21), "brand" (a charger compatible with Samsung) or None (generic).
- Types in the same `sibling_group` substitute for each other (grade 2).
"""

from __future__ import annotations

from training.world.product_type import ProductType
from training.world.types_apparel_office import APPAREL_TO_OFFICE
from training.world.types_electronics_kitchen import ELECTRONICS_KITCHEN

# Insertion order is the sampling order: electronics, kitchen, apparel, beauty, pet, office.
PRODUCT_TYPES: dict[str, ProductType] = {t.key: t for t in (*ELECTRONICS_KITCHEN, *APPAREL_TO_OFFICE)}


# Makers and their models per type. Real brands only; look-alikes come from LOOKALIKES.
BRAND_MODELS: dict[str, dict[str, tuple[str, ...]]] = {
    "phone": {
        "Samsung": ("Galaxy S21", "Galaxy S22", "Galaxy A52"),
        "Apple": ("iPhone 13", "iPhone 14", "iPhone SE"),
        "Google": ("Pixel 6", "Pixel 7"),
        "Motorola": ("Moto G60", "Moto G82"),
    },
    "tablet": {
        "Samsung": ("Galaxy Tab S8", "Galaxy Tab A8"),
        "Apple": ("iPad Air", "iPad Mini"),
        "Lenovo": ("Tab P11", "Tab M10"),
    },
    "headphones": {
        "Sony": ("WH-1000XM4", "WH-1000XM5"),
        "Bose": ("QC45", "QC35 II"),
        "JBL": ("Tune 760NC",),
        "Sennheiser": ("HD 450BT", "Momentum 4"),
    },
    "earbuds": {
        "Sony": ("WF-1000XM4",),
        "Apple": ("AirPods Pro",),
        "Samsung": ("Galaxy Buds2",),
        "JBL": ("Tune 230NC",),
    },
    "phone case": {"Spigen": (), "OtterBox": (), "Caseology": ()},
    "screen protector": {"Spigen": (), "amFilm": (), "ZAGG": ()},
    "charger": {"Samsung": (), "Apple": (), "Google": (), "Anker": (), "Voltix": ()},
    "ear pads": {"Geekria": (), "Brainwavz": ()},
    "ear tips": {"Comply": (), "SpinFit": ()},
    "kettle": {
        "Breville": ("BKE820", "VKT124"),
        "Russell Hobbs": ("26200", "24361"),
        "Philips": ("HD9350",),
        "Cosori": ("GK172",),
    },
    "coffee maker": {
        "Breville": ("BES870",),
        "Philips": ("EP2220",),
        "DeLonghi": ("ECAM22", "EC685"),
        "Cosori": ("CO130",),
    },
    "descaler": {"Durgol": (), "Oust": ()},
    "water bottle": {"Hydro Flask": (), "Contigo": (), "CamelBak": (), "Chilly's": ()},
    "travel mug": {"Contigo": (), "Stanley": (), "Zojirushi": ()},
    "bottle brush": {"OXO": (), "Munchkin": ()},
    "running shoes": {
        "Nike": ("Pegasus 39", "Vomero 16"),
        "Adidas": ("Ultraboost 22",),
        "Asics": ("Gel-Kayano 29",),
        "New Balance": ("Fresh Foam 880",),
    },
    "hiking boots": {
        "Merrell": ("Moab 3",),
        "Salomon": ("X Ultra 4",),
        "Columbia": ("Newton Ridge",),
        "Timberland": ("Mt. Maddsen",),
    },
    "insoles": {"Superfeet": (), "Scholl": ()},
    "jacket": {"The North Face": (), "Columbia": (), "Patagonia": ()},
    "raincoat": {"Columbia": (), "Patagonia": (), "Regatta": ()},
    "waterproofing spray": {"Nikwax": (), "Grangers": ()},
    "shampoo": {"Pantene": (), "Dove": (), "Garnier": (), "Head & Shoulders": ()},
    "conditioner": {"Pantene": (), "Dove": (), "Garnier": ()},
    "hair brush": {"Tangle Teezer": (), "Denman": ()},
    "dog food": {"Pedigree": (), "Purina": (), "Royal Canin": (), "Iams": ()},
    "cat food": {"Whiskas": (), "Purina": (), "Royal Canin": (), "Felix": ()},
    "pet bowl": {"PetSafe": (), "Kong": ()},
    "printer": {
        "HP": ("DeskJet 2720", "OfficeJet 8015"),
        "Canon": ("PIXMA TS3350", "PIXMA TS5150"),
        "Epson": ("XP-2100",),
        "Brother": ("MFC-J491DW",),
    },
    "scanner": {"Canon": ("LiDE 300",), "Epson": ("Perfection V39",), "Brother": ("ADS-1200",)},
    "ink cartridge": {"HP": (), "Canon": (), "Epson": (), "Brother": (), "InkJoy": ()},
    "usb cable": {"UGREEN": (), "Cable Matters": ()},
}

# The official cartridge code of each printer model ("HP 305 Ink Cartridge for DeskJet 2720").
INK_CODES: dict[str, str] = {
    "DeskJet 2720": "305",
    "OfficeJet 8015": "963",
    "PIXMA TS3350": "PG-545",
    "PIXMA TS5150": "PG-560",
    "XP-2100": "603",
    "MFC-J491DW": "LC3211",
}

# Makers that sell accessories for other brands' products ("... compatible with Samsung").
THIRD_PARTY: frozenset[str] = frozenset(
    {
        "Spigen",
        "OtterBox",
        "Caseology",
        "amFilm",
        "ZAGG",
        "Anker",
        "Voltix",
        "Geekria",
        "Brainwavz",
        "Comply",
        "SpinFit",
        "InkJoy",
    }
)

# Knock-off brands that imitate a real one, selling the same product types.
LOOKALIKES: dict[str, str] = {
    "Samsong": "Samsung",
    "Appel": "Apple",
    "Sonny": "Sony",
    "Bosse": "Bose",
    "Nikee": "Nike",
    "Abidas": "Adidas",
    "Philipps": "Philips",
    "Hydra Flask": "Hydro Flask",
    "North Fase": "The North Face",
    "Pantine": "Pantene",
    "Purena": "Purina",
    "Cannon": "Canon",
}

# How people misspell brands in the search box; never equal to a look-alike brand.
MISSPELLINGS: dict[str, tuple[str, ...]] = {
    "Samsung": ("samsng", "samsumg"),
    "Apple": ("aple",),
    "Sony": ("soni",),
    "Bose": ("bosee",),
    "Nike": ("nkie",),
    "Adidas": ("addidas", "adiddas"),
    "Philips": ("philps",),
    "Sennheiser": ("senheiser",),
    "Breville": ("brevile",),
    "Russell Hobbs": ("russel hobbs",),
    "Royal Canin": ("royal canine",),
    "Salomon": ("solomon",),
    "Merrell": ("merrel",),
    "Asics": ("ascis",),
    "Whiskas": ("whiskers",),
    "Pedigree": ("pedigre",),
    "Contigo": ("contiago",),
    "Patagonia": ("patagona",),
    "Motorola": ("motorla",),
    "Epson": ("epsom",),
    "Garnier": ("garner",),
    "Hydro Flask": ("hydro flsk",),
    "Purina": ("purinna",),
}

# Document phrases for each excludable feature: (present, absent). "plastic" is
# not here: a product has it exactly when its material is plastic, already in the title.
FEATURE_PHRASES: dict[str, tuple[str, str]] = {
    "sulfates": ("With sulfates", "Sulfate-free"),
    "grain": ("With grain", "Grain-free"),
    "hood": ("Hooded", "No hood"),
}
FEATURE_QUERY_FORMS: dict[str, tuple[str, ...]] = {
    "sulfates": ("without sulfates", "sulfate free", "no sulfates", "non-sulfate"),
    "grain": ("without grain", "grain free", "no grain", "non-grain"),
    "hood": ("without hood", "no hood", "non-hooded"),
    "plastic": ("without plastic", "plastic free", "no plastic", "non-plastic"),
}

TARGET_TITLE: dict[str, str] = {
    "men": "Men's",
    "women": "Women's",
    "kids": "Kids'",
    "puppy": "Puppy",
    "adult": "Adult",
    "senior": "Senior",
    "kitten": "Kitten",
}
TARGET_QUERY_FORMS: dict[str, tuple[str, ...]] = {
    "men": ("men's {noun}", "mens {noun}", "{noun} for men"),
    "women": ("women's {noun}", "womens {noun}", "{noun} for women"),
    "kids": ("kids {noun}", "{noun} for kids", "children's {noun}"),
    "puppy": ("puppy {noun}", "{noun} for puppies"),
    "adult": ("adult {noun}",),
    "senior": ("senior {noun}", "{noun} for older pets"),
    "kitten": ("kitten {noun}", "{noun} for kittens"),
}


def model_brand(model: str) -> tuple[str, str]:
    """(brand, type key) of a main-product model name."""
    return _MODEL_INDEX[model]


_MODEL_INDEX: dict[str, tuple[str, str]] = {
    m: (brand, type_key)
    for type_key, makers in BRAND_MODELS.items()
    if not PRODUCT_TYPES[type_key].is_accessory
    for brand, models in makers.items()
    for m in models
}


def lookalikes_of(brand: str) -> tuple[str, ...]:
    return tuple(fake for fake, real in LOOKALIKES.items() if real == brand)


def relation(query_type: str, doc_type: str) -> str:
    """How a document's type relates to the queried type: same | sibling | complement | unrelated."""
    if query_type == doc_type:
        return "same"
    q, d = PRODUCT_TYPES[query_type], PRODUCT_TYPES[doc_type]
    if q.sibling_group is not None and q.sibling_group == d.sibling_group:
        return "sibling"
    if query_type in d.hosts or doc_type in q.hosts:
        return "complement"
    return "unrelated"
