"""The index drug as a value object, and how day windows read in criterion texts."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

from rxcohort.errors import ParameterError
from rxcohort.transforms.codes import describe_codes, starts_with_any_filter


@dataclass(frozen=True)
class DrugDefinition:
    """Dispensings that count as the index drug: ATC prefix, strength bounds, packs > 0.

    ``strength_min_mg``/``strength_max_mg`` are inclusive; when either is set, a dispensing
    without a recorded strength does not count (LDN is told apart from 50 mg naltrexone only
    by its strength). A return or correction (packs <= 0) is never a dispensing of the drug.
    """

    label: str
    atc_prefixes: tuple[str, ...]
    strength_min_mg: float | None = None
    strength_max_mg: float | None = None

    def __post_init__(self) -> None:
        if not self.atc_prefixes:
            raise ParameterError("a drug definition needs at least one ATC prefix")

    def condition(self) -> Column:
        """True for a silver dispensing row of this drug (false, never null, otherwise)."""
        return F.coalesce(self.filter(), F.lit(False))

    def filter(self) -> Column:
        """:meth:`condition` for ``DataFrame.where`` only: null where a value is missing.

        Plain comparisons, which Spark pushes into the Parquet reader (see
        :func:`~rxcohort.transforms.codes.starts_with_any_filter`); never negate it.
        """
        condition = starts_with_any_filter("atc_code", self.atc_prefixes) & (F.col("packs") > 0)
        if self.strength_min_mg is not None:
            condition = condition & (F.col("strength_mg") >= F.lit(self.strength_min_mg))
        if self.strength_max_mg is not None:
            condition = condition & (F.col("strength_mg") <= F.lit(self.strength_max_mg))
        return condition

    def describe(self) -> str:
        """``LDN (ATC N07BB04, strength <= 5 mg, packs > 0)``."""
        parts = [f"ATC {describe_codes(self.atc_prefixes)}"]
        low, high = self.strength_min_mg, self.strength_max_mg
        if low is not None and high is not None:
            parts.append(f"strength {_num(low)} to {_num(high)} mg")
        elif high is not None:
            parts.append(f"strength <= {_num(high)} mg")
        elif low is not None:
            parts.append(f"strength >= {_num(low)} mg")
        parts.append("packs > 0")
        return f"{self.label} ({', '.join(parts)})"


def describe_days(window: tuple[int, int]) -> str:
    """``days -365 to -1 from index`` (both ends included)."""
    start, end = window
    return f"days {start} to {end} from index"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
