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


_BLACKS = ("black", "white", "blue", "silver")

PRODUCT_TYPES: dict[str, ProductType] = {
    t.key: t
    for t in (
        # electronics
        ProductType(
            "phone",
            "Smartphone",
            "electronics",
            ("phone", "smartphone", "mobile phone"),
            sibling_group="handheld",
            dimension="storage",
            quantities=(64, 128, 256),
            colours=("black", "white", "blue", "green"),
            has_condition=True,
            price_range=(199, 999),
            blurb="Unlocked, dual SIM, 5G.",
        ),
        ProductType(
            "tablet",
            "Tablet",
            "electronics",
            ("tablet",),
            sibling_group="handheld",
            dimension="storage",
            quantities=(64, 128, 256),
            colours=("black", "silver", "blue"),
            has_condition=True,
            price_range=(149, 899),
            blurb="10-inch display, Wi-Fi.",
        ),
        ProductType(
            "headphones",
            "Wireless Headphones",
            "electronics",
            ("headphones", "wireless headphones"),
            sibling_group="audio",
            colours=_BLACKS,
            has_condition=True,
            price_range=(59, 399),
            blurb="Over-ear, noise cancelling.",
        ),
        ProductType(
            "earbuds",
            "Earbuds",
            "electronics",
            ("earbuds", "wireless earbuds"),
            sibling_group="audio",
            colours=("black", "white"),
            has_condition=True,
            price_range=(39, 279),
            blurb="In-ear, with charging case.",
        ),
        ProductType(
            "phone case",
            "Phone Case",
            "electronics",
            ("case", "phone case", "cover"),
            hosts=("phone",),
            fit="model",
            colours=("black", "clear", "blue", "red"),
            materials=("silicone", "leather", "plastic"),
            price_range=(9, 49),
            blurb="Slim, shockproof.",
        ),
        ProductType(
            "screen protector",
            "Screen Protector",
            "electronics",
            ("screen protector",),
            hosts=("phone",),
            fit="model",
            packs=(1, 2, 3),
            price_range=(6, 25),
            blurb="Tempered glass.",
        ),
        ProductType(
            "charger",
            "Charger",
            "electronics",
            ("charger", "usb c charger", "phone charger"),
            hosts=("phone", "tablet"),
            fit="brand",
            dimension="power",
            quantities=(20, 25, 45),
            colours=("black", "white"),
            packs=(1, 2),
            price_range=(12, 49),
            blurb="Fast charging, USB-C.",
        ),
        ProductType(
            "ear pads",
            "Replacement Ear Pads",
            "electronics",
            ("ear pads", "ear cushions"),
            hosts=("headphones",),
            fit="model",
            colours=("black", "grey"),
            materials=("leather", "velour"),
            price_range=(12, 35),
            blurb="Memory foam.",
        ),
        ProductType(
            "ear tips",
            "Ear Tips",
            "electronics",
            ("ear tips", "eartips"),
            hosts=("earbuds",),
            fit="model",
            sizes=("S", "M", "L"),
            packs=(3, 6),
            price_range=(8, 25),
            blurb="Foam, noise isolating.",
        ),
        # kitchen
        ProductType(
            "kettle",
            "Electric Kettle",
            "kitchen",
            ("kettle", "electric kettle"),
            sibling_group="hot drinks",
            dimension="volume",
            quantities=(1000, 1500, 1700),
            colours=("black", "white", "silver", "red"),
            materials=("stainless steel", "glass", "plastic"),
            feature="plastic",
            price_range=(25, 129),
            blurb="Rapid boil, auto shut-off.",
        ),
        ProductType(
            "coffee maker",
            "Coffee Maker",
            "kitchen",
            ("coffee maker", "coffee machine"),
            sibling_group="hot drinks",
            dimension="volume",
            quantities=(1200, 1500, 1800),
            colours=("black", "silver", "red"),
            materials=("stainless steel", "plastic"),
            feature="plastic",
            price_range=(49, 499),
            blurb="Brews in minutes.",
        ),
        ProductType(
            "descaler",
            "Descaler",
            "kitchen",
            ("descaler", "limescale remover"),
            hosts=("kettle", "coffee maker"),
            packs=(1, 2, 4),
            price_range=(5, 20),
            blurb="Removes limescale.",
        ),
        ProductType(
            "water bottle",
            "Water Bottle",
            "kitchen",
            ("water bottle", "bottle", "drinks bottle"),
            sibling_group="drinkware",
            dimension="volume",
            quantities=(500, 750, 1000),
            colours=("black", "white", "blue", "pink"),
            materials=("stainless steel", "plastic"),
            packs=(1, 2),
            feature="plastic",
            price_range=(12, 49),
            blurb="Leak-proof lid.",
        ),
        ProductType(
            "travel mug",
            "Travel Mug",
            "kitchen",
            ("travel mug", "coffee mug", "tumbler"),
            sibling_group="drinkware",
            dimension="volume",
            quantities=(350, 470, 600),
            colours=("black", "white", "blue", "green"),
            materials=("stainless steel", "plastic"),
            feature="plastic",
            price_range=(14, 45),
            blurb="Keeps drinks hot.",
        ),
        ProductType(
            "bottle brush",
            "Bottle Brush",
            "kitchen",
            ("bottle brush", "bottle cleaning brush"),
            hosts=("water bottle", "travel mug"),
            packs=(1, 2, 3),
            price_range=(5, 15),
            blurb="Long handle.",
        ),
        # apparel
        ProductType(
            "running shoes",
            "Running Shoes",
            "apparel",
            ("running shoes", "trainers", "sneakers"),
            sibling_group="footwear",
            sizes=("6", "7", "8", "9", "10", "11"),
            colours=("black", "white", "blue", "red", "grey"),
            targets=("men", "women", "kids"),
            price_range=(49, 189),
            blurb="Cushioned, breathable mesh.",
        ),
        ProductType(
            "hiking boots",
            "Hiking Boots",
            "apparel",
            ("hiking boots", "walking boots"),
            sibling_group="footwear",
            sizes=("6", "7", "8", "9", "10", "11"),
            colours=("brown", "black", "grey"),
            targets=("men", "women", "kids"),
            materials=("leather", "suede"),
            price_range=(69, 219),
            blurb="Waterproof, grippy sole.",
        ),
        ProductType(
            "insoles",
            "Insoles",
            "apparel",
            ("insoles", "shoe insoles"),
            hosts=("running shoes", "hiking boots"),
            sizes=("6", "7", "8", "9", "10", "11"),
            packs=(1, 2),
            price_range=(9, 39),
            blurb="Arch support.",
        ),
        ProductType(
            "jacket",
            "Jacket",
            "apparel",
            ("jacket", "coat"),
            sibling_group="outerwear",
            sizes=("S", "M", "L", "XL"),
            colours=("black", "navy", "green", "red"),
            targets=("men", "women", "kids"),
            materials=("down", "fleece"),
            feature="hood",
            price_range=(59, 299),
            blurb="Warm and light.",
        ),
        ProductType(
            "raincoat",
            "Raincoat",
            "apparel",
            ("raincoat", "rain jacket"),
            sibling_group="outerwear",
            sizes=("S", "M", "L", "XL"),
            colours=("yellow", "navy", "black", "green"),
            targets=("men", "women", "kids"),
            feature="hood",
            price_range=(39, 199),
            blurb="Waterproof, taped seams.",
        ),
        ProductType(
            "waterproofing spray",
            "Waterproofing Spray",
            "apparel",
            ("waterproofing spray", "proofer"),
            hosts=("jacket", "raincoat", "hiking boots"),
            dimension="volume",
            quantities=(300, 500),
            packs=(1, 2),
            price_range=(8, 25),
            blurb="Repels water.",
        ),
        # beauty
        ProductType(
            "shampoo",
            "Shampoo",
            "beauty",
            ("shampoo",),
            sibling_group="hair care",
            dimension="volume",
            quantities=(250, 400, 500, 1000),
            packs=(1, 2, 3),
            feature="sulfates",
            price_range=(4, 19),
            blurb="For all hair types.",
        ),
        ProductType(
            "conditioner",
            "Conditioner",
            "beauty",
            ("conditioner", "hair conditioner"),
            sibling_group="hair care",
            dimension="volume",
            quantities=(250, 400, 500, 1000),
            packs=(1, 2, 3),
            feature="sulfates",
            price_range=(4, 19),
            blurb="Smooth, detangled hair.",
        ),
        ProductType(
            "hair brush",
            "Hair Brush",
            "beauty",
            ("hair brush", "hairbrush"),
            hosts=("shampoo", "conditioner"),
            colours=("black", "pink", "purple"),
            price_range=(6, 29),
            blurb="Detangling bristles.",
        ),
        # pet
        ProductType(
            "dog food",
            "Dry Dog Food",
            "pet",
            ("dog food", "dry dog food"),
            sibling_group="pet food",
            dimension="weight",
            quantities=(2000, 5000, 12000),
            targets=("puppy", "adult", "senior"),
            feature="grain",
            price_range=(12, 69),
            blurb="Complete and balanced.",
        ),
        ProductType(
            "cat food",
            "Dry Cat Food",
            "pet",
            ("cat food", "dry cat food"),
            sibling_group="pet food",
            dimension="weight",
            quantities=(1500, 3000, 4000),
            targets=("kitten", "adult", "senior"),
            feature="grain",
            price_range=(9, 49),
            blurb="Complete and balanced.",
        ),
        ProductType(
            "pet bowl",
            "Pet Bowl",
            "pet",
            ("pet bowl", "food bowl"),
            hosts=("dog food", "cat food"),
            colours=("black", "blue", "pink"),
            materials=("stainless steel", "ceramic", "plastic"),
            packs=(1, 2),
            price_range=(6, 29),
            blurb="Non-slip base.",
        ),
        # office
        ProductType(
            "printer",
            "Printer",
            "office",
            ("printer", "inkjet printer"),
            sibling_group="imaging",
            colours=("black", "white"),
            has_condition=True,
            price_range=(59, 349),
            blurb="Wireless, prints from your phone.",
        ),
        ProductType(
            "scanner",
            "Scanner",
            "office",
            ("scanner", "document scanner"),
            sibling_group="imaging",
            colours=("black", "white"),
            has_condition=True,
            price_range=(69, 299),
            blurb="Scans to PDF.",
        ),
        ProductType(
            "ink cartridge",
            "Ink Cartridge",
            "office",
            ("ink cartridge", "ink", "printer ink"),
            hosts=("printer",),
            fit="model",
            colours=("black", "tri-colour"),
            packs=(1, 2, 4),
            price_range=(12, 59),
            blurb="Sharp text.",
        ),
        ProductType(
            "usb cable",
            "USB Printer Cable",
            "office",
            ("usb cable", "printer cable"),
            hosts=("printer", "scanner"),
            packs=(1, 2),
            price_range=(5, 15),
            blurb="USB-A to USB-B.",
        ),
    )
}

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
