"""The synthetic NorPD's world: products with their WHO DDDs, prescribing patterns, population.

Everything here is plain Python data, small enough to broadcast. The numbers are modelling
choices calibrated against public figures (STUDY.md, Statistics Norway, the WHO ATC/DDD index);
where a figure is a guess it says so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date

# --------------------------------------------------------------------------------------------
# Products
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    """One article (pack) as the registry records it.

    ``ddd_mg`` is the WHO DDD in mg of the active ingredient; combination products have a DDD in
    unit doses instead (``ddd_ud``: units per DDD) and no single ``strength_mg``. ``daily_units``
    is the range of units a day a regular user takes; it sets how long a pack lasts.
    """

    key: str
    atc: str
    name: str
    strength_mg: float | None
    units: float
    ddd_mg: float | None = None
    ddd_ud: float | None = None
    daily_units: tuple[float, float] = (1.0, 1.0)
    magistral: bool = False
    # ATC codes change over time: (first day of the new code, new code).
    atc_change: tuple[date, str] | None = None

    @property
    def ddd_per_pack(self) -> float | None:
        if self.magistral:
            return None
        if self.ddd_ud is not None:
            return self.units / self.ddd_ud
        if self.ddd_mg is not None and self.strength_mg is not None:
            return self.strength_mg * self.units / self.ddd_mg
        return None

    @property
    def product_id(self) -> str:
        # A stable 6-digit article number; uniqueness is checked when the catalogue loads.
        digest = hashlib.sha256(self.key.encode()).hexdigest()
        return f"{100000 + int(digest[:12], 16) % 800000:06d}"


# Codeine + paracetamol moved from N02AA59 to the new N02AJ group in the 2017 ATC index
# (WHOCC decision of October 2015). Its DDD is in unit doses; 5 tablets is our modelling value.
_CODEINE_TO_N02AJ06 = (date(2017, 1, 1), "N02AJ06")
_CODEINE_UD = 5.0

# fmt: off
# key, ATC, product name, strength mg (None: combination), units per pack,
# DDD in mg (or None), DDD in unit doses (or None), units a day for regular use (low, high).
_PRODUCT_ROWS: tuple[tuple, ...] = (
    # opioids (N02A)
    ("paralgin_20", "N02AA59", "Paralgin forte tab 400 mg/30 mg", None, 20, None, _CODEINE_UD, (2, 6)),
    ("paralgin_100", "N02AA59", "Paralgin forte tab 400 mg/30 mg", None, 100, None, _CODEINE_UD, (1.5, 4)),
    ("pinex_forte_20", "N02AA59", "Pinex forte tab 500 mg/30 mg", None, 20, None, _CODEINE_UD, (2, 6)),
    ("pinex_forte_100", "N02AA59", "Pinex forte tab 500 mg/30 mg", None, 100, None, _CODEINE_UD, (1.5, 4)),
    ("tramadol_50_20", "N02AX02", "Nobligan kaps 50 mg", 50, 20, 300, None, (2, 4)),
    ("tramadol_50_100", "N02AX02", "Nobligan kaps 50 mg", 50, 100, 300, None, (1, 4)),
    ("tramadol_100_30", "N02AX02", "Tramagetic depot tab 100 mg", 100, 30, 300, None, (1, 2)),
    ("oxycodone_5_28", "N02AA05", "OxyNorm kaps 5 mg", 5, 28, 75, None, (2, 4)),
    ("oxycodone_10_98", "N02AA05", "OxyContin depot tab 10 mg", 10, 98, 75, None, (1, 3)),
    ("morphine_10_100", "N02AA01", "Dolcontin depot tab 10 mg", 10, 100, 100, None, (1, 3)),
    ("buprenorphine_5_4", "N02AE01", "Norspan depotplaster 5 mikrog/time", 5, 4, None, None, (1 / 7, 1 / 7)),
    ("fentanyl_12_5", "N02AB03", "Durogesic depotplaster 12 mikrog/time", 2.1, 5, None, None, (1 / 3, 1 / 3)),
    ("tapentadol_50_60", "N02AX06", "Palexia depot tab 50 mg", 50, 60, 400, None, (1, 3)),
    # NSAIDs (M01A)
    ("ibuprofen_400_30", "M01AE01", "Ibux tab 400 mg", 400, 30, 1200, None, (2, 3)),
    ("ibuprofen_600_100", "M01AE01", "Ibux tab 600 mg", 600, 100, 1200, None, (1, 2)),
    ("diclofenac_50_30", "M01AB05", "Voltaren enterotab 50 mg", 50, 30, 100, None, (1, 3)),
    ("diclofenac_50_100", "M01AB05", "Voltaren enterotab 50 mg", 50, 100, 100, None, (1, 2)),
    ("naproxen_250_20", "M01AE02", "Naproxen tab 250 mg", 250, 20, 500, None, (2, 3)),
    ("naproxen_500_100", "M01AE02", "Napren-E enterotab 500 mg", 500, 100, 500, None, (1, 2)),
    ("etoricoxib_60_28", "M01AH05", "Arcoxia tab 60 mg", 60, 28, 60, None, (1, 1)),
    ("celecoxib_200_30", "M01AH01", "Celebra kaps 200 mg", 200, 30, 200, None, (1, 2)),
    # other analgesics (N02B), migraine (N02C)
    ("paracetamol_500_100", "N02BE01", "Paracet tab 500 mg", 500, 100, 3000, None, (3, 6)),
    ("paracetamol_1000_100", "N02BE01", "Pinex tab 1 g", 1000, 100, 3000, None, (2, 3)),
    ("sumatriptan_50_6", "N02CC01", "Imigran tab 50 mg", 50, 6, 50, None, (1, 1)),
    # antiepileptics (N03A)
    ("pregabalin_75_56", "N03AX16", "Lyrica kaps 75 mg", 75, 56, 300, None, (2, 4)),
    ("gabapentin_300_100", "N03AX12", "Neurontin kaps 300 mg", 300, 100, 1800, None, (3, 6)),
    ("lamotrigine_100_98", "N03AX09", "Lamictal tab 100 mg", 100, 98, 300, None, (1, 3)),
    ("valproate_300_100", "N03AG01", "Orfiril Retard depotkaps 300 mg", 300, 100, 1500, None, (2, 4)),
    ("levetiracetam_500_100", "N03AX14", "Keppra tab 500 mg", 500, 100, 1500, None, (2, 4)),
    # antipsychotics (N05A)
    ("quetiapine_25_100", "N05AH04", "Seroquel tab 25 mg", 25, 100, 400, None, (1, 2)),
    ("olanzapine_10_28", "N05AH03", "Zyprexa tab 10 mg", 10, 28, 10, None, (1, 1)),
    ("aripiprazole_15_28", "N05AX12", "Abilify tab 15 mg", 15, 28, 15, None, (1, 1)),
    ("levomepromazine_25_100", "N05AA02", "Nozinan tab 25 mg", 25, 100, 300, None, (1, 2)),
    ("chlorprothixene_15_100", "N05AF03", "Truxal tab 15 mg", 15, 100, 300, None, (1, 3)),
    # anxiolytics (N05B)
    ("diazepam_5_25", "N05BA01", "Vival tab 5 mg", 5, 25, 10, None, (1, 2)),
    ("diazepam_5_100", "N05BA01", "Vival tab 5 mg", 5, 100, 10, None, (1, 2)),
    ("oxazepam_10_25", "N05BA04", "Sobril tab 10 mg", 10, 25, 50, None, (1, 3)),
    ("oxazepam_10_100", "N05BA04", "Sobril tab 10 mg", 10, 100, 50, None, (1, 3)),
    ("hydroxyzine_25_100", "N05BB01", "Atarax tab 25 mg", 25, 100, 75, None, (1, 2)),
    # hypnotics (N05C)
    ("zopiclone_5_10", "N05CF01", "Zopiclone tab 5 mg", 5, 10, 7.5, None, (1, 1)),
    ("zopiclone_75_30", "N05CF01", "Imovane tab 7,5 mg", 7.5, 30, 7.5, None, (0.6, 1)),
    ("zolpidem_10_30", "N05CF02", "Stilnoct tab 10 mg", 10, 30, 10, None, (0.6, 1)),
    ("melatonin_2_30", "N05CH01", "Circadin depottab 2 mg", 2, 30, 2, None, (1, 1)),
    # antidepressants (N06A), stimulants (N06B), dementia (N06D)
    ("escitalopram_10_28", "N06AB10", "Cipralex tab 10 mg", 10, 28, 10, None, (1, 2)),
    ("escitalopram_10_98", "N06AB10", "Cipralex tab 10 mg", 10, 98, 10, None, (1, 2)),
    ("sertraline_50_30", "N06AB06", "Zoloft tab 50 mg", 50, 30, 50, None, (1, 2)),
    ("sertraline_50_98", "N06AB06", "Zoloft tab 50 mg", 50, 98, 50, None, (1, 2)),
    ("citalopram_20_100", "N06AB04", "Citalopram tab 20 mg", 20, 100, 20, None, (1, 2)),
    ("mirtazapine_15_30", "N06AX11", "Remeron tab 15 mg", 15, 30, 30, None, (1, 2)),
    ("venlafaxine_75_28", "N06AX16", "Efexor Depot kaps 75 mg", 75, 28, 100, None, (1, 2)),
    ("duloxetine_60_28", "N06AX21", "Cymbalta kaps 60 mg", 60, 28, 60, None, (1, 1)),
    ("amitriptyline_10_100", "N06AA09", "Sarotex tab 10 mg", 10, 100, 75, None, (1, 3)),
    ("methylphenidate_18_30", "N06BA04", "Concerta depottab 18 mg", 18, 30, 30, None, (1, 2)),
    ("donepezil_10_28", "N06DA02", "Aricept tab 10 mg", 10, 28, 7.5, None, (1, 1)),
    # cardiovascular
    ("atorvastatin_20_30", "C10AA05", "Lipitor tab 20 mg", 20, 30, 20, None, (1, 1)),
    ("atorvastatin_20_98", "C10AA05", "Lipitor tab 20 mg", 20, 98, 20, None, (1, 1)),
    ("atorvastatin_40_100", "C10AA05", "Atorvastatin tab 40 mg", 40, 100, 20, None, (1, 1)),
    ("simvastatin_20_28", "C10AA01", "Simvastatin tab 20 mg", 20, 28, 30, None, (1, 1)),
    ("simvastatin_20_100", "C10AA01", "Simvastatin tab 20 mg", 20, 100, 30, None, (1, 1)),
    ("simvastatin_40_100", "C10AA01", "Zocor tab 40 mg", 40, 100, 30, None, (1, 1)),
    ("losartan_50_28", "C09CA01", "Cozaar tab 50 mg", 50, 28, 50, None, (1, 2)),
    ("losartan_50_98", "C09CA01", "Cozaar tab 50 mg", 50, 98, 50, None, (1, 2)),
    ("losartan_hct_98", "C09DA01", "Cozaar Comp tab 50 mg/12,5 mg", None, 98, None, 1, (1, 1)),
    ("ramipril_5_100", "C09AA05", "Triatec tab 5 mg", 5, 100, 2.5, None, (1, 2)),
    ("amlodipine_5_30", "C08CA01", "Norvasc tab 5 mg", 5, 30, 5, None, (1, 2)),
    ("amlodipine_5_100", "C08CA01", "Norvasc tab 5 mg", 5, 100, 5, None, (1, 2)),
    ("metoprolol_50_30", "C07AB02", "Selo-Zok depottab 50 mg", 50, 30, 150, None, (1, 2)),
    ("metoprolol_50_100", "C07AB02", "Selo-Zok depottab 50 mg", 50, 100, 150, None, (1, 2)),
    ("furosemide_40_100", "C03CA01", "Furix tab 40 mg", 40, 100, 40, None, (1, 2)),
    ("asa_75_28", "B01AC06", "Albyl-E enterotab 75 mg", 75, 28, None, 1, (1, 1)),
    ("asa_75_98", "B01AC06", "Albyl-E enterotab 75 mg", 75, 98, None, 1, (1, 1)),
    ("warfarin_25_100", "B01AA03", "Marevan tab 2,5 mg", 2.5, 100, 7.5, None, (1.5, 3)),
    ("rivaroxaban_20_28", "B01AF01", "Xarelto tab 20 mg", 20, 28, 20, None, (1, 1)),
    # alimentary, metabolism, hormones
    ("metformin_500_100", "A10BA02", "Metformin tab 500 mg", 500, 100, 2000, None, (2, 4)),
    ("sitagliptin_100_28", "A10BH01", "Januvia tab 100 mg", 100, 28, 100, None, (1, 1)),
    ("pantoprazole_40_100", "A02BC02", "Somac enterotab 40 mg", 40, 100, 40, None, (1, 1)),
    ("pantoprazole_20_28", "A02BC02", "Somac enterotab 20 mg", 20, 28, 40, None, (1, 1)),
    ("esomeprazole_20_28", "A02BC05", "Nexium enterotab 20 mg", 20, 28, 30, None, (1, 2)),
    ("esomeprazole_20_56", "A02BC05", "Nexium enterotab 20 mg", 20, 56, 30, None, (1, 2)),
    ("levothyroxine_100_100", "H03AA01", "Levaxin tab 100 mikrog", 0.1, 100, 0.15, None, (1, 1.5)),
    ("levothyroxine_50_100", "H03AA01", "Levaxin tab 50 mikrog", 0.05, 100, 0.15, None, (1, 2)),
    ("prednisolone_5_100", "H02AB06", "Prednisolon tab 5 mg", 5, 100, 10, None, (1, 2)),
    ("prednisolone_20_30", "H02AB06", "Prednisolon tab 20 mg", 20, 30, 10, None, (1, 2)),
    ("metoclopramide_10_30", "A03FA01", "Afipran tab 10 mg", 10, 30, 30, None, (1, 3)),
    ("allopurinol_100_100", "M04AA01", "Allopurinol tab 100 mg", 100, 100, 400, None, (1, 3)),
    ("alendronate_70_4", "M05BA04", "Alendronat tab 70 mg", 70, 4, 10, None, (1 / 7, 1 / 7)),
    ("tamsulosin_04_30", "G04CA02", "Omnic depotkaps 0,4 mg", 0.4, 30, 0.4, None, (1, 1)),
    ("tolterodine_4_28", "G04BD07", "Detrusitol depotkaps 4 mg", 4, 28, 4, None, (1, 1)),
    ("microgynon_63", "G03AA07", "Microgynon tab 3 x 21", None, 63, None, 1, (0.75, 0.75)),
    ("cerazette_84", "G03AC09", "Cerazette tab 3 x 28", 0.075, 84, 0.075, None, (1, 1)),
    ("latanoprost_25ml", "S01EE01", "Xalatan oyedraper 50 mikrog/ml 2,5 ml", None, 2.5, None, 0.1, (0.1, 0.1)),
    # respiratory, allergy
    ("budesonide_inh_200", "R03BA02", "Pulmicort Turbuhaler 200 mikrog/dose", 0.2, 200, 0.8, None, (2, 4)),
    ("salbutamol_inh_60", "R03AC02", "Ventoline Diskus 0,2 mg/dose", 0.2, 60, 0.8, None, (1, 4)),
    ("seretide_inh_60", "R03AK06", "Seretide Diskus 50/250 mikrog/dose", None, 60, None, 2, (2, 2)),
    ("mometasone_nasal_140", "R01AD09", "Nasonex nesespray 50 mikrog/dose", 0.05, 140, 0.2, None, (2, 4)),
    ("desloratadine_5_30", "R06AX27", "Aerius tab 5 mg", 5, 30, 5, None, (1, 1)),
    ("cetirizine_10_30", "R06AE07", "Zyrtec tab 10 mg", 10, 30, 10, None, (1, 1)),
    # anti-infectives (J01)
    ("penicillin_1g_20", "J01CE02", "Weifapenin tab 1 g", 1000, 20, 2000, None, (1, 1)),
    ("amoxicillin_500_20", "J01CA04", "Amoxicillin kaps 500 mg", 500, 20, 1000, None, (1, 1)),
    ("pivmecillinam_200_15", "J01CA08", "Selexid tab 200 mg", 200, 15, 600, None, (1, 1)),
    ("doxycycline_100_10", "J01AA02", "Doxylin tab 100 mg", 100, 10, 100, None, (1, 1)),
    ("nitrofurantoin_50_30", "J01XE01", "Furadantin tab 50 mg", 50, 30, 200, None, (1, 1)),
    ("trimethoprim_300_10", "J01EA01", "Trimetoprim tab 300 mg", 300, 10, 400, None, (1, 1)),
    ("erythromycin_500_20", "J01FA01", "Ery-Max kaps 500 mg", 500, 20, 1000, None, (1, 1)),
    # rheumatoid arthritis, IBD, MS
    ("methotrexate_25_100", "L04AX03", "Methotrexate tab 2,5 mg", 2.5, 100, 2.5, None, (0.6, 1)),
    ("hydroxychloroquine_200_100", "P01BA02", "Plaquenil tab 200 mg", 200, 100, 516, None, (1, 2)),
    ("sulfasalazine_500_100", "A07EC01", "Salazopyrin EN tab 500 mg", 500, 100, 2000, None, (4, 6)),
    ("mesalazine_500_100", "A07EC02", "Asacol enterotab 500 mg", 500, 100, 1500, None, (3, 6)),
    ("azathioprine_50_100", "L04AX01", "Imurel tab 50 mg", 50, 100, 150, None, (2, 3)),
    ("glatiramer_20_28", "L03AX13", "Copaxone inj 20 mg/ml", 20, 28, 20, None, (1, 1)),
    ("fingolimod_05_28", "L04AA27", "Gilenya kaps 0,5 mg", 0.5, 28, 0.5, None, (1, 1)),
    # naltrexone for dependence: same ATC as LDN, 50 mg, not LDN
    ("naltrexone_50_28", "N07BB04", "Naltrexone Accord tab 50 mg", 50, 28, 50, None, (1, 1)),
)
# fmt: on

PRODUCTS: tuple[Product, ...] = tuple(
    Product(
        key=key,
        atc=atc,
        name=name,
        strength_mg=strength,
        units=units,
        ddd_mg=ddd_mg,
        ddd_ud=ddd_ud,
        daily_units=daily,
        atc_change=_CODEINE_TO_N02AJ06 if atc == "N02AA59" else None,
    )
    for key, atc, name, strength, units, ddd_mg, ddd_ud, daily in _PRODUCT_ROWS
)

# Transdermal patches: the registry's DDD per pack comes from the delivery rate, not from the
# mg of drug a patch holds (5 mikrog/h buprenorphine = 0.12 mg/day; 12 mikrog/h fentanyl =
# 0.288 mg/day; both DDDs 1.2 mg).
PATCH_DDD_PER_PACK: dict[str, float] = {
    "buprenorphine_5_4": 4 * 7 * 0.12 / 1.2,
    "fentanyl_12_5": 5 * 3 * 0.288 / 1.2,
}

# LDN: compounded (ex tempore) capsules; no registry DDD. Strengths and pack sizes in use.
LDN_STRENGTHS: tuple[tuple[float, float], ...] = (
    # (strength mg, share of users); median implied daily dose ~3.7 mg after adherence
    (0.5, 0.01),
    (1.0, 0.02),
    (1.5, 0.10),
    (2.0, 0.04),
    (2.5, 0.04),
    (3.0, 0.20),
    (3.5, 0.05),
    (4.0, 0.10),
    (4.5, 0.44),
)
LDN_PACK_UNITS: tuple[tuple[int, float], ...] = (
    (30, 0.35),
    (50, 0.15),
    (60, 0.20),
    (90, 0.15),
    (100, 0.15),
)


def _ldn_products() -> tuple[Product, ...]:
    out = []
    for strength, _ in LDN_STRENGTHS:
        for units, _ in LDN_PACK_UNITS:
            label = f"{strength:g}".replace(".", ",")
            out.append(
                Product(
                    key=f"ldn_{strength:g}_{units}",
                    atc="N07BB04",
                    name=f"Naltrekson kapsler {label} mg (ex tempore)",
                    strength_mg=strength,
                    units=units,
                    magistral=True,
                )
            )
    return tuple(out)


LDN_PRODUCTS = _ldn_products()
ALL_PRODUCTS: tuple[Product, ...] = PRODUCTS + LDN_PRODUCTS
PRODUCT_INDEX: dict[str, int] = {p.key: i for i, p in enumerate(ALL_PRODUCTS)}


def ldn_product_index(strength_pos: int, units_pos: int) -> int:
    """Index in ALL_PRODUCTS of the LDN product with the given strength and pack-size positions."""
    return len(PRODUCTS) + strength_pos * len(LDN_PACK_UNITS) + units_pos


def ddd_per_pack(product: Product) -> float | None:
    return PATCH_DDD_PER_PACK.get(product.key, product.ddd_per_pack)


def _check_products() -> None:
    ids = [p.product_id for p in ALL_PRODUCTS]
    assert len(set(ids)) == len(ids), "product_id collision in the catalogue"
    keys = [p.key for p in ALL_PRODUCTS]
    assert len(set(keys)) == len(keys), "duplicate product key"
    for p in ALL_PRODUCTS:
        assert len(p.atc) == 7 and ";" not in p.name, p.key
        assert p.magistral or ddd_per_pack(p) is not None, f"{p.key} has no DDD"


_check_products()

# --------------------------------------------------------------------------------------------
# Prescribers
# --------------------------------------------------------------------------------------------

# Prescriber pools, in index order. Physicians: ~1 per 200 inhabitants; GPs the largest
# specialty. Shares of physicians by specialty; other professions per inhabitant.
PHYSICIANS_PER_PERSON = 1 / 200
PHYSICIAN_SPECIALTIES: tuple[tuple[str, str | None, float], ...] = (
    # (pool, specialty as delivered, share of physicians)
    ("gp", "general_practice", 0.25),
    ("internal_medicine", "internal_medicine", 0.11),
    ("psychiatry", "psychiatry", 0.07),
    ("neurology", "neurology", 0.03),
    ("rheumatology", "rheumatology", 0.015),
    ("other_specialty", "other", 0.235),
    ("no_specialty", None, 0.29),  # physicians without an approved specialty (in training)
)
OTHER_PROFESSIONS: tuple[tuple[str, str, float], ...] = (
    # (pool, profession, prescribers per inhabitant)
    ("dentist", "dentist", 1 / 1100),
    ("nurse", "nurse", 1 / 2500),
    ("other_profession", "other", 1 / 5000),
)
# LDN prescribing (STUDY.md: 20% of all doctors, 71% of GPs). A GP is "willing" with this
# share; with several LDN users per willing GP almost every willing GP ends up prescribing.
LDN_WILLING_GP_SHARE = 0.73
LDN_WILLING_PHYSICIAN_SHARE = 0.205

# --------------------------------------------------------------------------------------------
# Population (Statistics Norway, 1 January 2011, rounded)
# --------------------------------------------------------------------------------------------

# (share of the population in %, share female) per 5-year age group 0-4 ... 95-99.
AGE_GROUPS: tuple[tuple[float, float], ...] = (
    (6.2, 0.487),
    (6.0, 0.487),
    (6.2, 0.487),
    (6.6, 0.486),
    (6.6, 0.49),
    (6.4, 0.49),
    (6.5, 0.49),
    (7.1, 0.49),
    (7.4, 0.49),
    (7.1, 0.49),
    (6.5, 0.49),
    (6.3, 0.49),
    (6.0, 0.495),
    (4.8, 0.505),
    (3.6, 0.53),
    (2.8, 0.56),
    (2.3, 0.61),
    (1.5, 0.67),
    (0.6, 0.74),
    (0.15, 0.80),
)
BIRTHS_PER_PERSON_YEAR = 0.012
# Gompertz mortality: hazard per year = exp(a + b * age), times a sex factor.
MORTALITY_A = -10.5
MORTALITY_B = 0.094
MORTALITY_SEX = {1: 1.25, 2: 0.8}
# Emigration hazard per year by age at the start of the period: (from age, hazard).
EMIGRATION = ((0, 0.003), (18, 0.012), (40, 0.004), (65, 0.002))

# Counties of 2013 (code, population in thousands); 0.2% of persons have no county.
COUNTIES: tuple[tuple[str, float], ...] = (
    ("01", 284),
    ("02", 575),
    ("03", 624),
    ("04", 194),
    ("05", 187),
    ("06", 271),
    ("07", 240),
    ("08", 170),
    ("09", 113),
    ("10", 176),
    ("11", 452),
    ("12", 499),
    ("14", 109),
    ("15", 261),
    ("16", 306),
    ("17", 135),
    ("18", 239),
    ("19", 161),
    ("20", 75),
)
COUNTY_MISSING = 0.002

# Chronic conditions with their own drugs and reimbursement codes, prevalence among adults
# (female, male). LDN users get them from their indication instead (see LDN_INDICATIONS).
CONDITIONS: dict[str, tuple[float, float]] = {
    "ra": (0.009, 0.003),  # rheumatoid arthritis, ICPC-2 L88
    "ms": (0.0028, 0.0012),  # multiple sclerosis, N86
    "ibd": (0.005, 0.005),  # Crohn's disease / ulcerative colitis, D94
    "fm": (0.035, 0.004),  # fibromyalgia / chronic widespread pain, L18
}

# --------------------------------------------------------------------------------------------
# Regimens: how a product group is used
# --------------------------------------------------------------------------------------------

BANDS = (0, 18, 40, 60, 80)  # age bands: 0-17, 18-39, 40-59, 60-79, 80+


@dataclass(frozen=True)
class Regimen:
    """A way of using a drug group.

    ``chronic``: ``level[band]`` is the point prevalence of treatment; episodes last
    ``years`` on average (exponential) and are replaced at the rate that keeps prevalence
    steady, and a user refills one product while the episode lasts. ``occasional``:
    ``level[band]`` is dispensings per person-year at random days, over-dispersed by a person's
    frailty. ``prescribers`` weights prescriber pools (PHYSICIAN_SPECIALTIES /
    OTHER_PROFESSIONS); ``blue`` is the share of users on reimbursed (blue) prescriptions with
    ``codes`` (ICPC-2 when a GP prescribes, ICD-10 when a specialist does).
    """

    code: int
    name: str
    kind: str  # "chronic" | "occasional"
    products: tuple[tuple[str, float], ...]
    level: tuple[float, float, float, float, float]
    female: float = 1.0
    male: float = 1.0
    ldn: float = 1.0  # relative level in LDN users (their chronic pain and comorbidity)
    condition: str | None = None  # only persons with this condition
    years: float = 3.0  # mean episode duration (chronic)
    blue: float = 0.0
    codes: tuple[str, str] = ("", "")
    hospital: float = 0.002  # share of dispensings on hospital (h) prescriptions
    prescribers: tuple[tuple[str, float], ...] = (("gp", 1.0),)


_R = Regimen
_GP_IM = (("gp", 0.9), ("internal_medicine", 0.1))
_GP_PSY = (("gp", 0.85), ("psychiatry", 0.15))

# fmt: off
REGIMENS: tuple[Regimen, ...] = (
    # --- cardiovascular, metabolic (chronic: point prevalence by age band) ---------------------
    _R(1, "statin", "chronic",
       (("atorvastatin_20_30", 0.3), ("atorvastatin_20_98", 0.2), ("atorvastatin_40_100", 0.1),
        ("simvastatin_20_28", 0.25), ("simvastatin_20_100", 0.1), ("simvastatin_40_100", 0.05)),
       (0.0, 0.005, 0.08, 0.3, 0.33), female=0.8, male=1.2, years=10, blue=0.85,
       codes=("T93", "E78"), prescribers=(("gp", 0.88), ("internal_medicine", 0.12))),
    _R(2, "raas", "chronic",
       (("losartan_50_28", 0.45), ("losartan_50_98", 0.15), ("losartan_hct_98", 0.2),
        ("ramipril_5_100", 0.2)),
       (0.0, 0.008, 0.1, 0.32, 0.38), years=10, blue=0.85, codes=("K86", "I10"), prescribers=_GP_IM),
    _R(3, "amlodipine", "chronic", (("amlodipine_5_30", 0.6), ("amlodipine_5_100", 0.4)),
       (0.0, 0.003, 0.04, 0.15, 0.2), years=8, blue=0.85, codes=("K86", "I10"), prescribers=_GP_IM),
    _R(4, "betablocker", "chronic", (("metoprolol_50_30", 0.6), ("metoprolol_50_100", 0.4)),
       (0.0, 0.005, 0.04, 0.15, 0.25), years=8, blue=0.8, codes=("K76", "I25"),
       prescribers=(("gp", 0.85), ("internal_medicine", 0.15))),
    _R(5, "low_dose_asa", "chronic", (("asa_75_28", 0.6), ("asa_75_98", 0.4)),
       (0.0, 0.002, 0.04, 0.2, 0.35), male=1.3, female=0.7, years=10, blue=0.6,
       codes=("K76", "I25"), prescribers=(("gp", 0.85), ("internal_medicine", 0.15))),
    _R(6, "anticoagulant", "chronic", (("warfarin_25_100", 0.6), ("rivaroxaban_20_28", 0.4)),
       (0.0, 0.001, 0.008, 0.045, 0.09), years=6, blue=0.9, codes=("K78", "I48"),
       prescribers=(("gp", 0.7), ("internal_medicine", 0.3))),
    _R(7, "diuretic", "chronic", (("furosemide_40_100", 1.0),),
       (0.0, 0.001, 0.008, 0.05, 0.18), years=5, blue=0.8, codes=("K77", "I50"), prescribers=_GP_IM),
    _R(8, "diabetes", "chronic", (("metformin_500_100", 0.75), ("sitagliptin_100_28", 0.25)),
       (0.0005, 0.006, 0.04, 0.09, 0.08), male=1.2, female=0.8, years=12, blue=0.9,
       codes=("T90", "E11"), prescribers=_GP_IM),
    _R(9, "ppi", "chronic",
       (("pantoprazole_40_100", 0.3), ("esomeprazole_20_28", 0.5), ("esomeprazole_20_56", 0.2)),
       (0.002, 0.025, 0.06, 0.11, 0.14), female=1.15, male=0.85, ldn=1.6, years=3, blue=0.55,
       codes=("D84", "K21"), prescribers=_GP_IM),
    _R(10, "levothyroxine", "chronic",
       (("levothyroxine_100_100", 0.5), ("levothyroxine_50_100", 0.5)),
       (0.002, 0.02, 0.05, 0.08, 0.1), female=1.7, male=0.3, ldn=1.8, years=20, blue=0.9,
       codes=("T86", "E03"), prescribers=_GP_IM),
    _R(11, "asthma_copd", "chronic",
       (("budesonide_inh_200", 0.35), ("salbutamol_inh_60", 0.35), ("seretide_inh_60", 0.3)),
       (0.04, 0.035, 0.045, 0.07, 0.06), ldn=1.3, years=5, blue=0.75, codes=("R96", "J45"),
       prescribers=(("gp", 0.85), ("internal_medicine", 0.1), ("other_specialty", 0.05))),
    _R(12, "contraceptive", "chronic", (("microgynon_63", 0.55), ("cerazette_84", 0.45)),
       (0.09, 0.3, 0.05, 0.0, 0.0), female=2.0, male=0.0, years=4,
       prescribers=(("gp", 0.85), ("nurse", 0.1), ("other_specialty", 0.05))),
    _R(13, "alendronate", "chronic", (("alendronate_70_4", 1.0),),
       (0.0, 0.0, 0.008, 0.04, 0.07), female=1.8, male=0.2, years=5, blue=0.85,
       codes=("L95", "M81")),
    _R(14, "tamsulosin", "chronic", (("tamsulosin_04_30", 1.0),),
       (0.0, 0.0, 0.01, 0.08, 0.15), female=0.0, male=2.0, years=6, blue=0.8, codes=("Y85", "N40")),
    _R(15, "bladder", "chronic", (("tolterodine_4_28", 1.0),),
       (0.0, 0.001, 0.006, 0.02, 0.05), female=1.4, male=0.6, years=3, blue=0.6,
       codes=("U04", "N39")),
    _R(16, "methylphenidate", "chronic", (("methylphenidate_18_30", 1.0),),
       (0.025, 0.012, 0.004, 0.0005, 0.0), female=0.7, male=1.3, years=5, blue=0.9,
       codes=("P81", "F90"), prescribers=(("gp", 0.5), ("psychiatry", 0.5))),
    _R(17, "prednisolone_long", "chronic", (("prednisolone_5_100", 1.0),),
       (0.0005, 0.003, 0.01, 0.025, 0.04), ldn=1.5, years=2, blue=0.7, codes=("R95", "J44"),
       prescribers=(("gp", 0.7), ("internal_medicine", 0.2), ("rheumatology", 0.1))),
    _R(18, "gout", "chronic", (("allopurinol_100_100", 1.0),),
       (0.0, 0.002, 0.012, 0.03, 0.04), female=0.4, male=1.6, years=8, blue=0.8,
       codes=("T92", "M10")),
    _R(19, "glaucoma", "chronic", (("latanoprost_25ml", 1.0),),
       (0.0, 0.001, 0.01, 0.04, 0.08), years=10, blue=0.9, codes=("F93", "H40"),
       prescribers=(("gp", 0.4), ("other_specialty", 0.6))),
    _R(25, "dementia", "chronic", (("donepezil_10_28", 1.0),),
       (0.0, 0.0, 0.001, 0.008, 0.05), years=3, blue=0.9, codes=("P70", "F00"),
       prescribers=(("gp", 0.6), ("internal_medicine", 0.2), ("psychiatry", 0.2))),
    # --- psychotropics ----------------------------------------------------------------------
    _R(20, "antidepressant", "chronic",
       (("escitalopram_10_28", 0.2), ("escitalopram_10_98", 0.15), ("sertraline_50_30", 0.1),
        ("sertraline_50_98", 0.1), ("citalopram_20_100", 0.1), ("mirtazapine_15_30", 0.15),
        ("venlafaxine_75_28", 0.1), ("duloxetine_60_28", 0.1)),
       (0.004, 0.055, 0.07, 0.07, 0.1), female=1.35, male=0.65, ldn=2.2, years=2, blue=0.6,
       codes=("P76", "F32"), prescribers=_GP_PSY),
    _R(21, "antipsychotic", "chronic",
       (("quetiapine_25_100", 0.4), ("olanzapine_10_28", 0.2), ("aripiprazole_15_28", 0.1),
        ("levomepromazine_25_100", 0.15), ("chlorprothixene_15_100", 0.15)),
       (0.002, 0.012, 0.014, 0.014, 0.03), ldn=1.8, years=4, blue=0.5, codes=("P72", "F20"),
       hospital=0.02, prescribers=(("gp", 0.65), ("psychiatry", 0.35))),
    _R(22, "antiepileptic", "chronic",
       (("pregabalin_75_56", 0.3), ("gabapentin_300_100", 0.15), ("lamotrigine_100_98", 0.25),
        ("valproate_300_100", 0.15), ("levetiracetam_500_100", 0.15)),
       (0.004, 0.011, 0.018, 0.022, 0.02), female=1.2, male=0.8, ldn=2.5, years=4, blue=0.6,
       codes=("N88", "G40"), prescribers=(("gp", 0.75), ("neurology", 0.2), ("psychiatry", 0.05))),
    _R(23, "anxiolytic_regular", "chronic",
       (("diazepam_5_25", 0.25), ("diazepam_5_100", 0.25), ("oxazepam_10_25", 0.2),
        ("oxazepam_10_100", 0.2), ("hydroxyzine_25_100", 0.1)),
       (0.0, 0.008, 0.02, 0.028, 0.04), female=1.3, male=0.7, ldn=1.8, years=2, blue=0.05,
       codes=("P74", "F41"), prescribers=_GP_PSY),
    _R(24, "hypnotic_regular", "chronic",
       (("zopiclone_75_30", 0.65), ("zolpidem_10_30", 0.2), ("melatonin_2_30", 0.15)),
       (0.0, 0.008, 0.025, 0.055, 0.1), female=1.3, male=0.7, ldn=1.8, years=3,
       prescribers=(("gp", 0.95), ("psychiatry", 0.05))),
    # --- analgesics (LDN users' regular opioid use is modelled on its own: ldn=0) -------------
    _R(30, "opioid_regular", "chronic",
       (("paralgin_100", 0.35), ("pinex_forte_100", 0.15), ("tramadol_50_100", 0.15),
        ("tramadol_100_30", 0.05), ("oxycodone_10_98", 0.12), ("morphine_10_100", 0.05),
        ("buprenorphine_5_4", 0.07), ("fentanyl_12_5", 0.03), ("tapentadol_50_60", 0.03)),
       (0.0, 0.004, 0.011, 0.018, 0.024), female=1.3, male=0.7, ldn=0.0, years=3, blue=0.45,
       codes=("L84", "M54"),
       prescribers=(("gp", 0.9), ("other_specialty", 0.07), ("no_specialty", 0.03))),
    _R(31, "nsaid_regular", "chronic",
       (("diclofenac_50_100", 0.3), ("naproxen_500_100", 0.3), ("etoricoxib_60_28", 0.25),
        ("celecoxib_200_30", 0.15)),
       (0.0, 0.003, 0.01, 0.015, 0.01), female=1.2, male=0.8, ldn=2.0, years=1.5, blue=0.4,
       codes=("L91", "M19"),
       prescribers=(("gp", 0.85), ("rheumatology", 0.1), ("other_specialty", 0.05))),
    _R(32, "paracetamol_regular", "chronic",
       (("paracetamol_500_100", 0.6), ("paracetamol_1000_100", 0.4)),
       (0.0, 0.002, 0.008, 0.03, 0.08), female=1.4, male=0.6, ldn=2.0, years=3, blue=0.6,
       codes=("L91", "M19")),
    _R(33, "amitriptyline_pain", "chronic", (("amitriptyline_10_100", 1.0),),
       (0.0, 0.003, 0.006, 0.006, 0.005), female=1.5, male=0.5, years=2, blue=0.3,
       codes=("L18", "M79")),
    # --- conditions (level: prevalence of the drug among persons with the condition) --------
    _R(40, "ra_dmard", "chronic",
       (("methotrexate_25_100", 0.6), ("hydroxychloroquine_200_100", 0.2),
        ("sulfasalazine_500_100", 0.2)),
       (0.0, 0.7, 0.7, 0.7, 0.6), condition="ra", years=15, blue=0.97, codes=("L88", "M06"),
       prescribers=(("gp", 0.6), ("rheumatology", 0.4))),
    _R(41, "ra_prednisolone", "chronic", (("prednisolone_5_100", 1.0),),
       (0.0, 0.3, 0.3, 0.3, 0.3), condition="ra", years=4, blue=0.95, codes=("L88", "M06"),
       prescribers=(("gp", 0.7), ("rheumatology", 0.3))),
    _R(42, "ibd_drug", "chronic", (("mesalazine_500_100", 0.7), ("azathioprine_50_100", 0.3)),
       (0.4, 0.6, 0.6, 0.6, 0.6), condition="ibd", years=15, blue=0.95, codes=("D94", "K51"),
       prescribers=(("gp", 0.6), ("internal_medicine", 0.4))),
    _R(43, "ms_drug", "chronic", (("glatiramer_20_28", 0.6), ("fingolimod_05_28", 0.4)),
       (0.0, 0.5, 0.4, 0.15, 0.0), condition="ms", years=10, codes=("N86", "G35"),
       hospital=1.0, prescribers=(("neurology", 1.0),)),
    _R(44, "fm_amitriptyline", "chronic", (("amitriptyline_10_100", 1.0),),
       (0.0, 0.12, 0.12, 0.12, 0.08), condition="fm", years=2, blue=0.3, codes=("L18", "M79")),
    # --- occasional use (level: dispensings per person-year) --------------------------------
    _R(45, "fm_nsaid", "occasional",
       (("ibuprofen_400_30", 0.4), ("naproxen_250_20", 0.3), ("diclofenac_50_30", 0.3)),
       (0.0, 0.8, 0.8, 0.6, 0.4), condition="fm"),
    _R(60, "antibiotic", "occasional",
       (("penicillin_1g_20", 0.38), ("amoxicillin_500_20", 0.12), ("pivmecillinam_200_15", 0.15),
        ("doxycycline_100_10", 0.1), ("nitrofurantoin_50_30", 0.05), ("trimethoprim_300_10", 0.1),
        ("erythromycin_500_20", 0.1)),
       (0.55, 0.38, 0.34, 0.42, 0.6), female=1.25, male=0.75, ldn=1.3,
       prescribers=(("gp", 0.8), ("dentist", 0.04), ("other_specialty", 0.08),
                    ("no_specialty", 0.08))),
    _R(61, "nsaid_occasional", "occasional",
       (("ibuprofen_400_30", 0.3), ("ibuprofen_600_100", 0.15), ("diclofenac_50_30", 0.25),
        ("naproxen_250_20", 0.2), ("etoricoxib_60_28", 0.1)),
       (0.04, 0.22, 0.28, 0.22, 0.12), ldn=2.0,
       prescribers=(("gp", 0.75), ("dentist", 0.12), ("other_specialty", 0.08),
                    ("no_specialty", 0.05))),
    _R(62, "opioid_occasional", "occasional",
       (("paralgin_20", 0.45), ("pinex_forte_20", 0.2), ("tramadol_50_20", 0.2),
        ("oxycodone_5_28", 0.15)),
       (0.004, 0.12, 0.15, 0.15, 0.14), female=1.15, male=0.85, ldn=0.6,
       prescribers=(("gp", 0.62), ("dentist", 0.18), ("other_specialty", 0.12),
                    ("no_specialty", 0.08))),
    _R(63, "paracetamol_occasional", "occasional",
       (("paracetamol_500_100", 0.7), ("paracetamol_1000_100", 0.3)),
       (0.02, 0.03, 0.06, 0.12, 0.3), female=1.3, male=0.7, ldn=2.0),
    _R(64, "hypnotic_occasional", "occasional",
       (("zopiclone_5_10", 0.45), ("zopiclone_75_30", 0.4), ("zolpidem_10_30", 0.15)),
       (0.0, 0.06, 0.1, 0.12, 0.12), female=1.3, male=0.7, ldn=1.6,
       prescribers=(("gp", 0.92), ("no_specialty", 0.08))),
    _R(65, "anxiolytic_occasional", "occasional",
       (("diazepam_5_25", 0.5), ("oxazepam_10_25", 0.35), ("hydroxyzine_25_100", 0.15)),
       (0.001, 0.06, 0.07, 0.06, 0.06), female=1.3, male=0.7, ldn=1.6,
       prescribers=(("gp", 0.85), ("dentist", 0.05), ("psychiatry", 0.05),
                    ("no_specialty", 0.05))),
    _R(66, "antihistamine", "occasional", (("desloratadine_5_30", 0.5), ("cetirizine_10_30", 0.5)),
       (0.12, 0.14, 0.12, 0.07, 0.04), ldn=1.3,
       prescribers=(("gp", 0.9), ("other_specialty", 0.1))),
    _R(67, "nasal_steroid", "occasional", (("mometasone_nasal_140", 1.0),),
       (0.06, 0.1, 0.09, 0.06, 0.03), ldn=1.3),
    _R(68, "prednisolone_course", "occasional", (("prednisolone_20_30", 1.0),),
       (0.015, 0.02, 0.035, 0.05, 0.06), ldn=1.5),
    _R(69, "antiemetic", "occasional", (("metoclopramide_10_30", 1.0),),
       (0.005, 0.03, 0.03, 0.035, 0.05), female=1.4, male=0.6),
    _R(70, "triptan", "occasional", (("sumatriptan_50_6", 1.0),),
       (0.005, 0.14, 0.14, 0.04, 0.0), female=1.6, male=0.4, ldn=1.8),
    _R(71, "ppi_course", "occasional", (("pantoprazole_20_28", 1.0),),
       (0.005, 0.05, 0.08, 0.1, 0.1), ldn=1.5),
)
# fmt: on

# --------------------------------------------------------------------------------------------
# LDN and naltrexone
# --------------------------------------------------------------------------------------------

LDN_REGIMEN_CODE = 90  # dispensing-id namespace for LDN fills
LDN_EARLY_CODE = 91  # the handful of users before the wave
NALTREXONE_CODE = 92  # 50 mg for dependence
LDN_OPIOID_CODE = 93  # the extra, pain-driven opioid use of LDN users
LDN_OPIOID_FLARE_CODE = 94
RETURN_CODE_OFFSET = 500  # returns get the code of their dispensing + 500

# Monthly shares of first LDN dispensings over 2013-2014 (73% in 2013): nothing in January
# 2013, the wave from the TV programme in early February, peak in spring, a long tail.
LDN_START_MONTHS: tuple[float, ...] = (
    0.0,
    8.0,
    16.0,
    13.0,
    9.0,
    6.0,
    3.5,
    4.0,
    4.0,
    3.5,
    3.0,
    3.0,
    3.0,
    2.6,
    2.6,
    2.4,
    2.3,
    2.0,
    1.6,
    2.1,
    2.2,
    2.2,
    2.1,
    1.9,
)
LDN_WAVE_FIRST_DAY = date(2013, 2, 4)
# Exposure groups among starters (counted in [index, index + 364]): LDN x1, x2-3, x4+.
LDN_CLASS_SHARES = (0.32, 0.23, 0.45)
LDN_TWO_OF_TWO_THREE = 0.55  # within LDN x2-3, share with exactly 2
LDN_PERSIST_EXTRA_DAYS = 420.0  # LDN x4+: mean days on treatment beyond the first 3 refills
LDN_ADHERENCE = (1.0, 0.15)  # days a capsule lasts: 1 + U(0, 0.15)
# Who takes LDN: 74% female, median age 52 (STUDY.md): weight female 2.85 : male 1 and a bell
# over age centred at LDN_AGE_CENTRE.
LDN_FEMALE_WEIGHT = 2.85
LDN_AGE_CENTRE = 55.0
LDN_AGE_SD = 15.0
LDN_MIN_AGE = 18
# Among LDN users, extra (pain-driven) opioid use independent of the background: regular
# users refill continuously, the rest have flares. Calibrated so ~25% of users have an opioid
# in the year before starting and the users' pre-index opioid level is ~80-90 DDD/year.
LDN_OPIOID_REGULAR = 0.14
LDN_OPIOID_FLARES = 0.03
LDN_OPIOID_DOSE_FACTOR = 1.1  # regular LDN-user opioid doses run higher than the label's
LDN_OPIOID_FLARES_PER_YEAR = 2.5
LDN_OPIOID_REGULAR_PRODUCTS: tuple[tuple[str, float], ...] = (
    ("paralgin_100", 0.35),
    ("pinex_forte_100", 0.15),
    ("tramadol_50_100", 0.2),
    ("oxycodone_10_98", 0.12),
    ("buprenorphine_5_4", 0.08),
    ("morphine_10_100", 0.05),
    ("tapentadol_50_60", 0.05),
)
LDN_OPIOID_FLARE_PRODUCTS: tuple[tuple[str, float], ...] = (
    ("paralgin_20", 0.35),
    ("paralgin_100", 0.2),
    ("tramadol_50_20", 0.25),
    ("oxycodone_5_28", 0.2),
)
# Indications behind LDN use. RA, MS and IBD are set so that the study designs' cohorts come
# out at the published subgroup shares (3.2%, 3.0%, 5.2% of first-time users): only users
# treated with a condition drug in the look-back carry its code, so MS and IBD are the
# published shares over that coverage (about 45% and 65%); see docs/study.md.
LDN_INDICATIONS: tuple[tuple[str, float], ...] = (
    ("fm", 0.45),
    ("ra", 0.032),
    ("ms", 0.066),
    ("ibd", 0.077),
    ("other", 0.375),
)
LDN_BLUE = 0.03
LDN_HOSPITAL = 0.01
LDN_BLUE_CODES = {
    "fm": ("L18", "M79"),
    "ra": ("L88", "M06"),
    "ms": ("N86", "G35"),
    "ibd": ("D94", "K50"),
    "other": ("A04", "R53"),
}
# Pre-wave users and naltrexone-for-dependence users, per person (at least a few each).
LDN_EARLY_PER_PERSON = 2e-5
LDN_EARLY_MIN = 3
NALTREXONE_PER_PERSON = 1e-4
NALTREXONE_MIN = 2

# Injected effects: relative change of the year-average use after the first LDN dispensing,
# by exposure group and ATC prefix; phased in linearly over EFFECT_RAMP_DAYS.
DEFAULT_EFFECTS: dict[str, dict[str, float]] = {
    "N02A": {"ldn_1": 0.0, "ldn_2_3": -0.15, "ldn_4plus": -0.46},
    "M01A": {"ldn_1": 0.0, "ldn_2_3": 0.0, "ldn_4plus": 0.0},
    "N02B": {"ldn_1": 0.0, "ldn_2_3": 0.0, "ldn_4plus": 0.0},
}
EXPOSURE_GROUPS = ("ldn_1", "ldn_2_3", "ldn_4plus")
EFFECT_RAMP_DAYS = (30, 90)

# --------------------------------------------------------------------------------------------
# Delivery noise
# --------------------------------------------------------------------------------------------

GENUINE_RETURN_RATE = 0.002  # returns/corrections of a dispensing, always present
NULL_PRESCRIBER_RATE = 0.003
DEFECT_KINDS: tuple[tuple[str, float], ...] = (
    ("duplicate", 0.2),
    ("return", 0.1),
    ("malformed_atc", 0.12),
    ("impossible_date", 0.12),
    ("unknown_person", 0.16),
    ("missing_ddd", 0.15),
    ("whitespace", 0.15),
)
