"""The product catalog: products sampled from the vocabulary and rendered as text.

A `Product` is the structured truth the judge reads; its `title` and
`document` are rendered from it so that every field a rule looks at is
visible in the text (brand, model, what an accessory fits, quantity with its
unit, size, colour, material, pack count, target, condition, excluded
features, price, category). The one deliberate exception is the weak title
(`brand_in_title=False`): the brand is then *not* visible, and the rules
treat it as not stated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from training.world.units import Quantity, sample_writing, units_for, write
from training.world.vocabulary import (
    BRAND_MODELS,
    FEATURE_PHRASES,
    INK_CODES,
    LOOKALIKES,
    PRODUCT_TYPES,
    TARGET_TITLE,
    THIRD_PARTY,
    ProductType,
    model_brand,
)

P_OTHER_UNIT_DOC = 0.15  # how often a listing writes 1,500 ml rather than 1.5 l
P_REFURBISHED = 0.03  # share of sampled products that are refurbished, where the type allows it


@dataclass(frozen=True)
class Product:
    type_key: str
    brand: str
    model: str | None = None
    fits_model: str | None = None  # accessory for this host model
    fits_brand: str | None = None  # accessory for this host brand
    quantity: Quantity | None = None
    size: str | None = None
    colour: str | None = None
    material: str | None = None
    pack: int = 1
    target: str | None = None
    condition: str = "new"  # "new" | "refurbished"
    price: float = 0.0
    features: tuple[str, ...] = ()  # excludable features the product has
    brand_in_title: bool = True  # False: a weak title that does not name the brand
    title: str = ""
    document: str = ""

    @property
    def ptype(self) -> ProductType:
        return PRODUCT_TYPES[self.type_key]

    @property
    def is_lookalike(self) -> bool:
        return self.brand in LOOKALIKES

    @property
    def is_third_party(self) -> bool:
        """Made by someone other than the brand it fits ("compatible with Samsung")."""
        return self.fits_brand is not None and self.brand != self.fits_brand

    def has_feature(self, feature: str) -> bool:
        return feature in self.features

    @property
    def says_compatible_with(self) -> bool:
        """A third-party accessory whose text names the brand it fits ("compatible with Samsung")."""
        return self.is_third_party and (self.ptype.fit == "brand" or self.type_key in _COMPATIBLE_WITH_TYPES)

    @property
    def visible_brands(self) -> frozenset[str]:
        """Every brand the document's text names: its own (unless the title hides it) and what it fits."""
        brands = {self.brand} if self.brand_in_title else set()
        if self.says_compatible_with:
            brands.add(self.fits_brand)
        return frozenset(brands)


_COMPATIBLE_WITH_TYPES = ("ink cartridge", "ear pads")  # model-fit types whose third-party titles name the brand


def real_brands(type_key: str) -> tuple[str, ...]:
    return tuple(BRAND_MODELS[type_key])


def lookalike_brands(type_key: str) -> tuple[str, ...]:
    """Knock-offs imitate the makers of main products, not of accessories."""
    if PRODUCT_TYPES[type_key].is_accessory:
        return ()
    return tuple(fake for fake, real in LOOKALIKES.items() if real in BRAND_MODELS[type_key])


def _hosts_with_models(t: ProductType) -> list[str]:
    return [m for host in t.hosts for models in BRAND_MODELS[host].values() for m in models]


def _fit_brands(t: ProductType) -> list[str]:
    return sorted({b for host in t.hosts for b in BRAND_MODELS[host]})


def _pick_pack(t: ProductType, rng: random.Random) -> int:
    # single items dominate listings; multipacks are the exception
    return t.packs[0] if len(t.packs) == 1 or rng.random() < 0.6 else rng.choice(t.packs[1:])


def sample_product(rng: random.Random, type_key: str, brand: str | None = None, **fixed) -> Product:
    """A random product of `type_key`; keyword arguments pin fields (a float `quantity` is in base units)."""
    t = PRODUCT_TYPES[type_key]
    if brand is None:
        brand = rng.choice(real_brands(type_key))
    real = LOOKALIKES.get(brand, brand)
    models = BRAND_MODELS[type_key].get(real, ()) if brand == real else ()
    fields: dict = {"model": rng.choice(models) if models else None}
    if t.fit == "model":
        if type_key == "ink cartridge" and brand not in THIRD_PARTY:
            host = rng.choice([m for m in _hosts_with_models(t) if model_brand(m)[0] == brand])
            fields["model"] = INK_CODES[host]
        else:
            host = rng.choice(_hosts_with_models(t))
        fields["fits_model"], fields["fits_brand"] = host, model_brand(host)[0]
    elif t.fit == "brand":
        fields["fits_brand"] = rng.choice(_fit_brands(t)) if brand in THIRD_PARTY else real
    if t.dimension:
        fields["quantity"] = rng.choice(t.quantities)
    fields["size"] = rng.choice(t.sizes) if t.sizes else None
    fields["colour"] = rng.choice(t.colours) if t.colours else None
    fields["material"] = rng.choice(t.materials) if t.materials else None
    fields["pack"] = _pick_pack(t, rng)
    fields["target"] = rng.choice(t.targets) if t.targets else None
    fields["condition"] = "refurbished" if t.has_condition and rng.random() < P_REFURBISHED else "new"
    fields["price"] = rng.randint(*t.price_range) + 0.99
    fields["has_feature"] = rng.random() < 0.5
    fields.update(fixed)
    return build_product(rng, type_key, brand, **fields)


def accessory_for(
    rng: random.Random, type_key: str, host_model: str | None = None, host_brand: str | None = None, **fixed
) -> Product:
    """An accessory of `type_key` fitting `host_model` (or any model of `host_brand`), by a fitting maker."""
    t = PRODUCT_TYPES[type_key]
    if t.fit == "model":
        candidates = [m for m in _hosts_with_models(t) if host_brand is None or model_brand(m)[0] == host_brand]
        host = host_model or rng.choice(candidates or _hosts_with_models(t))
        owner = model_brand(host)[0]
        makers = [b for b in real_brands(type_key) if b in THIRD_PARTY or b == owner]
        brand = rng.choice(makers)
        model = INK_CODES[host] if type_key == "ink cartridge" and brand == owner else None
        return sample_product(rng, type_key, brand, model=model, fits_model=host, fits_brand=owner, **fixed)
    if t.fit == "brand":
        owner = host_brand or (model_brand(host_model)[0] if host_model else rng.choice(_fit_brands(t)))
        makers = [b for b in real_brands(type_key) if b in THIRD_PARTY or b == owner]
        return sample_product(rng, type_key, rng.choice(makers), fits_brand=owner, **fixed)
    return sample_product(rng, type_key, **fixed)


def build_product(
    rng: random.Random,
    type_key: str,
    brand: str,
    *,
    quantity: float | Quantity | None = None,
    has_feature: bool = False,
    **fields,
) -> Product:
    """Assemble and render a product from explicit fields (tests build products this way)."""
    t = PRODUCT_TYPES[type_key]
    if isinstance(quantity, (int, float)):
        quantity = sample_writing(float(quantity), t.dimension, rng, P_OTHER_UNIT_DOC)
    material = fields.get("material")
    if t.feature == "plastic":
        has_feature = material == "plastic"
    features = (t.feature,) if t.feature and has_feature else ()
    if fields.get("fits_model") and not fields.get("fits_brand"):
        fields["fits_brand"] = model_brand(fields["fits_model"])[0]
    if t.fit == "brand" and not fields.get("fits_brand"):
        fields["fits_brand"] = brand
    product = Product(type_key=type_key, brand=brand, quantity=quantity, features=features, **fields)
    return render(product, rng)


def with_changes(product: Product, rng: random.Random, **changes) -> Product:
    """The same product with some fields changed, rendered afresh."""
    return render(replace(product, **changes), rng)


def render(product: Product, rng: random.Random) -> Product:
    """Fill in `title` and `document` from the structured fields."""
    p, t = product, product.ptype
    head = []
    if p.condition == "refurbished" and rng.random() < 0.5:
        head.append("Refurbished")
    if p.brand_in_title:
        head.append(p.brand)
    if p.model:
        head.append(p.model)
    if p.target:
        head.append(TARGET_TITLE[p.target])
    if p.material:
        head.append(p.material.title())
    if p.quantity and p.quantity.dimension == "power":
        head.append(p.quantity.text)
    head.append(t.title_noun)
    title = " ".join(head) + _fit_phrase(p)
    tail = []
    if p.quantity and p.quantity.dimension != "power":
        tail.append(p.quantity.text)
    if p.size:
        tail.append(f"Size {p.size}")
    if p.colour:
        tail.append(p.colour.title())
    if p.pack > 1:
        tail.append(f"Pack of {p.pack}" if rng.random() < 0.6 else f"{p.pack}-Pack")
    if p.condition == "refurbished" and "Refurbished" not in head:
        tail.append("Renewed")
    if tail:
        title += ", " + ", ".join(tail)
    sentences = [title]
    if t.feature in FEATURE_PHRASES:
        present, absent = FEATURE_PHRASES[t.feature]
        sentences.append(present if p.has_feature(t.feature) else absent)
    sentences += [t.blurb.rstrip("."), f"Price ${p.price:.2f}", f"Category: {t.department} > {t.key}"]
    return replace(p, title=title, document=". ".join(sentences) + ".")


def _fit_phrase(p: Product) -> str:
    t = p.ptype
    if t.fit is None:
        hosts = " and ".join(PRODUCT_TYPES[h].title_noun for h in t.hosts) if t.hosts else ""
        return f" for {hosts}" if hosts else ""
    if not p.is_third_party:
        return f" for {p.fits_model}" if p.fits_model else ""
    if p.says_compatible_with:
        target = f"{p.fits_brand} {p.fits_model}" if p.fits_model else p.fits_brand
        return f", compatible with {target}"
    return f" for {p.fits_model}"


def alternatives(product: Product, field: str) -> list:
    """Other values `field` could take for this product's type (empty when it cannot vary)."""
    t = product.ptype
    if field == "quantity":
        return [q for q in t.quantities if product.quantity is None or q != product.quantity.value]
    if field == "unit":
        if product.quantity is None:
            return []
        return [u for u in units_for(product.quantity.dimension) if u != product.quantity.unit]
    if field == "model":
        real = LOOKALIKES.get(product.brand, product.brand)
        return [m for m in BRAND_MODELS[product.type_key].get(real, ()) if m != product.model]
    if field == "fits_model":
        return [m for m in _hosts_with_models(t) if m != product.fits_model] if t.fit == "model" else []
    if field == "feature":  # flip whether the product has its excludable feature
        if t.feature == "plastic":
            return [True] if product.material != "plastic" else []
        return [not product.features] if t.feature else []
    values = {
        "size": t.sizes,
        "colour": t.colours,
        "material": t.materials,
        "pack": t.packs,
        "target": t.targets,
        "condition": ("new", "refurbished") if t.has_condition else (),
    }[field]
    return [v for v in values if v != getattr(product, field)]


def vary(product: Product, field: str, rng: random.Random) -> Product | None:
    """A near variant: the same product with `field` changed, or None when it cannot change."""
    options = alternatives(product, field)
    if not options:
        return None
    value = rng.choice(options)
    t = product.ptype
    if field == "quantity":
        return with_changes(product, rng, quantity=sample_writing(value, t.dimension, rng, P_OTHER_UNIT_DOC))
    if field == "unit":
        return with_changes(product, rng, quantity=write(product.quantity.value, value, rng.randrange(2)))
    if field == "fits_model":
        changes = {"fits_model": value, "fits_brand": model_brand(value)[0]}
        if product.type_key == "ink cartridge" and not product.is_third_party:
            changes.update(brand=changes["fits_brand"], model=INK_CODES[value])
        return with_changes(product, rng, **changes)
    if field == "feature" and t.feature == "plastic":
        return with_changes(product, rng, material="plastic", features=("plastic",))
    if field == "feature":
        return with_changes(product, rng, features=(t.feature,) if value else ())
    if field == "material" and t.feature == "plastic":
        return with_changes(product, rng, material=value, features=("plastic",) if value == "plastic" else ())
    if field == "condition":
        price = round(product.price * (0.7 if value == "refurbished" else 1.3)) + 0.99
        return with_changes(product, rng, condition=value, price=price)
    return with_changes(product, rng, **{field: value})
