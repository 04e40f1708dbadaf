"""Hand-written cases: each rule decides what an expert would expect."""

from __future__ import annotations

import random

import pytest

from training.world import Query, accessory_for, build_product, judge, write
from training.world.vocabulary import BRAND_MODELS


@pytest.fixture
def rng() -> random.Random:
    return random.Random(0)


def phone(rng, brand="Samsung", model="Galaxy S21", **kw):
    fields = {"quantity": 128.0, "colour": "black"} | kw
    return build_product(rng, "phone", brand, model=model, **fields)


GALAXY = Query("samsung galaxy s21", type_key="phone", brand="Samsung", model="Galaxy S21")


def test_exact_match(rng):
    j = judge(GALAXY, phone(rng))
    assert j.grade == 4
    assert {"R1", "R5", "R6"} <= set(j.decisive)
    assert all(v == "satisfied" for v in j.verdicts.values())


def test_case_for_the_queried_phone_is_a_complement_not_the_phone(rng):
    case = accessory_for(rng, "phone case", host_model="Galaxy S21")
    assert "Galaxy S21" in case.document
    j = judge(GALAXY, case)
    assert j.grade == 1
    assert j.decisive == ("R14",) and j.verdicts["R14"] == "violated"
    assert "R4" in j.fired  # the generic complement rule fired too, and was outranked


def test_case_for_another_phone_is_irrelevant(rng):
    case = accessory_for(rng, "phone case", host_model="iPhone 13")
    j = judge(GALAXY, case)
    assert j.grade == 0 and j.decisive == ("R12",)


def test_compatible_with_samsung_is_not_samsung(rng):
    query = Query("samsung charger", type_key="charger", brand="Samsung")
    third_party = build_product(rng, "charger", "Voltix", fits_brand="Samsung", quantity=25.0, colour="black")
    assert "compatible with Samsung" in third_party.document
    j = judge(query, third_party)
    assert j.grade != 4 and j.grade == 2
    assert j.decisive == ("R15",) and "R5" in j.fired
    official = build_product(rng, "charger", "Samsung", quantity=25.0, colour="black")
    assert judge(query, official).grade == 4


def test_charger_for_samsung_accepts_a_third_party_maker(rng):
    query = Query("charger for samsung", type_key="charger", fits_brand="Samsung")
    third_party = build_product(rng, "charger", "Anker", fits_brand="Samsung", quantity=25.0, colour="black")
    assert judge(query, third_party).grade == 4
    other = build_product(rng, "charger", "Anker", fits_brand="Apple", quantity=25.0, colour="black")
    j = judge(query, other)
    assert j.grade == 1 and j.decisive == ("R11",)


def test_equivalent_units_match(rng):
    query = Query("0.5 l water bottle", type_key="water bottle", quantity=write(500, "l"))
    assert query.quantity.text == "0.5 l"
    bottle = build_product(
        rng, "water bottle", "Hydro Flask", quantity=write(500, "ml"), colour="black", material="stainless steel"
    )
    assert "500ml" in bottle.document
    j = judge(query, bottle)
    assert j.grade == 4 and "R19" in j.decisive and j.long_tail
    bigger = build_product(
        rng, "water bottle", "Hydro Flask", quantity=write(750, "ml"), colour="black", material="stainless steel"
    )
    j = judge(query, bigger)
    assert j.grade == 2 and j.decisive == ("R7",) and "R19" not in j.fired


def test_look_alike_brand_is_not_the_brand(rng):
    query = Query("samsung phone", type_key="phone", brand="Samsung")
    fake = build_product(rng, "phone", "Samsong", quantity=128.0, colour="black")
    j = judge(query, fake)
    assert j.grade == 2 and j.decisive == ("R16",)


def test_misspelled_brand_still_matches(rng):
    query = Query("samsng phone", type_key="phone", brand="Samsung", brand_typed="samsng")
    j = judge(query, phone(rng))
    assert j.grade == 4 and "R17" in j.decisive
    assert judge(query, phone(rng, brand="Apple", model="iPhone 13")).grade == 2


def test_model_number_beats_a_weak_title(rng):
    query = Query("sony wh-1000xm4 headphones", type_key="headphones", brand="Sony", model="WH-1000XM4")
    weak = build_product(rng, "headphones", "Sony", model="WH-1000XM4", colour="black", brand_in_title=False)
    assert "Sony" not in weak.document and "WH-1000XM4" in weak.document
    j = judge(query, weak)
    assert j.grade == 4 and "R18" in j.decisive
    assert j.verdicts["R5"] == "violated"  # overridden by R18 in the brand scope
    weak_other_model = build_product(
        rng, "headphones", "Sony", model="WH-1000XM5", colour="black", brand_in_title=False
    )
    assert judge(query, weak_other_model).grade == 2


def test_excluded_feature_present_is_irrelevant(rng):
    query = Query("shampoo without sulfates", type_key="shampoo", excluded_feature="sulfates")
    with_it = build_product(rng, "shampoo", "Dove", quantity=400.0, has_feature=True)
    without = build_product(rng, "shampoo", "Dove", quantity=400.0, has_feature=False)
    assert "With sulfates" in with_it.document and "Sulfate-free" in without.document
    assert judge(query, with_it).grade == 0 and judge(query, with_it).decisive == ("R20",)
    assert judge(query, without).grade == 4
    # the exclusion outranks everything: even a sibling type drops to 0
    conditioner = build_product(rng, "conditioner", "Dove", quantity=400.0, has_feature=True)
    assert judge(query, conditioner).grade == 0


def test_non_plastic_kettle(rng):
    query = Query("non-plastic kettle", type_key="kettle", excluded_feature="plastic")
    plastic = build_product(rng, "kettle", "Philips", model="HD9350", quantity=1700.0, material="plastic")
    steel = build_product(rng, "kettle", "Philips", model="HD9350", quantity=1700.0, material="stainless steel")
    assert judge(query, plastic).grade == 0 and judge(query, steel).grade == 4


def test_minor_mismatches_cost_one_grade(rng):
    black = Query("black samsung galaxy s21", type_key="phone", brand="Samsung", model="Galaxy S21", colour="black")
    j = judge(black, phone(rng, colour="blue"))
    assert j.grade == 3 and j.decisive == ("R9",)
    pack = Query("dove shampoo pack of 3", type_key="shampoo", brand="Dove", pack=3)
    j = judge(pack, build_product(rng, "shampoo", "Dove", quantity=400.0, pack=1))
    assert j.grade == 3 and j.decisive == ("R21",)
    budget = Query("kettle under $50", type_key="kettle", price_max=50.0)
    j = judge(budget, build_product(rng, "kettle", "Cosori", model="GK172", quantity=1700.0, price=79.99))
    assert j.grade == 3 and j.decisive == ("R24",)


def test_refurbished_is_not_new(rng):
    query = Query("samsung galaxy s21", type_key="phone", brand="Samsung", model="Galaxy S21")
    j = judge(query, phone(rng, condition="refurbished"))
    assert j.grade == 3 and j.decisive == ("R22",)
    refurb_query = Query("refurbished galaxy s21", type_key="phone", model="Galaxy S21", condition="refurbished")
    assert judge(refurb_query, phone(rng, condition="refurbished")).grade == 4


def test_target_group_mismatch(rng):
    query = Query("women's running shoes", type_key="running shoes", target="women")
    mens = build_product(rng, "running shoes", "Nike", model="Pegasus 39", target="men", size="9", colour="black")
    j = judge(query, mens)
    assert j.grade == 2 and j.decisive == ("R23",)


def test_category_rules(rng):
    query = Query("sony headphones", type_key="headphones", brand="Sony")
    earbuds = build_product(rng, "earbuds", "Sony", model="WF-1000XM4", colour="black")
    kettle = build_product(rng, "kettle", "Philips", model="HD9350", quantity=1700.0, material="glass")
    pads = accessory_for(rng, "ear pads", host_model="QC45")
    assert judge(query, earbuds).grade == 2 and judge(query, earbuds).decisive == ("R3",)
    assert judge(query, kettle).grade == 0 and judge(query, kettle).decisive == ("R2",)
    assert judge(query, pads).grade == 0  # ear pads for a Bose model do not fit a Sony
    generic = Query("headphones", type_key="headphones")
    assert judge(generic, pads).grade == 1 and judge(generic, pads).decisive == ("R4",)


def test_accessory_query_for_another_model(rng):
    query = Query("case for galaxy s21", type_key="phone case", fits_model="Galaxy S21")
    right = accessory_for(rng, "phone case", host_model="Galaxy S21")
    wrong = accessory_for(rng, "phone case", host_model="Galaxy S22")
    assert judge(query, right).grade == 4
    assert judge(query, wrong).grade == 1 and judge(query, wrong).decisive == ("R11",)
    j = judge(query, phone(rng))  # the phone the case is for: a complement that names it
    assert j.grade == 1 and j.decisive == ("R14",)


def test_brand_only_query(rng):
    query = Query("samsung", brand="Samsung")
    assert judge(query, phone(rng)).grade == 4
    assert judge(query, phone(rng, brand="Apple", model="iPhone 13")).grade == 0
    assert judge(query, build_product(rng, "phone", "Samsong", quantity=128.0)).grade == 0
    j = judge(query, build_product(rng, "charger", "Voltix", fits_brand="Samsung", quantity=25.0))
    assert j.grade == 0 and j.decisive == ("R13",)


@pytest.mark.parametrize(
    ("query", "host"),
    [
        (Query("google usb c charger", type_key="charger", brand="Google"), ("phone", "Apple", "iPhone SE")),
        (Query("samsung charger", type_key="charger", brand="Samsung"), ("tablet", "Lenovo", "Tab M10")),
        (Query("canon ink cartridge", type_key="ink cartridge", brand="Canon"), ("printer", "Brother", "MFC-J491DW")),
    ],
)
def test_device_maker_accessory_query_against_another_makers_device_is_irrelevant(rng, query, host):
    """R12: a Google charger is for Google devices, so an iPhone is a device it does not fit (grade 0, not 1)."""
    type_key, brand, model = host
    device = build_product(rng, type_key, brand, model=model)
    j = judge(query, device)
    assert j.grade == 0 and j.decisive == ("R12",)
    assert j.verdicts["R12"] == "violated"
    own = build_product(rng, type_key, query.brand, model=_a_model_of(type_key, query.brand))
    j_own = judge(query, own)  # the maker's own device: a complement that names the brand
    assert j_own.grade == 1 and j_own.decisive == ("R14",) and j_own.verdicts["R12"] == "satisfied"


def _a_model_of(type_key: str, brand: str) -> str:
    return BRAND_MODELS[type_key][brand][0]


def test_third_party_accessory_query_names_no_device(rng):
    """An Anker charger fits any brand: the query does not say which device, so any phone is a complement."""
    query = Query("anker charger", type_key="charger", brand="Anker")
    j = judge(query, phone(rng, brand="Apple", model="iPhone 13"))
    assert j.grade == 1 and j.decisive == ("R4",) and "R12" not in j.fired


def test_device_maker_accessory_grades_the_same_from_either_side(rng):
    """Query the charger and show the phone, or query the phone and show the charger: R12 agrees both ways."""
    charger_query = Query("google charger", type_key="charger", brand="Google")
    iphone = phone(rng, brand="Apple", model="iPhone 13")
    iphone_query = Query("apple iphone 13", type_key="phone", brand="Apple", model="iPhone 13")
    google_charger = build_product(rng, "charger", "Google", quantity=20.0)
    assert judge(charger_query, iphone).grade == judge(iphone_query, google_charger).grade == 0
