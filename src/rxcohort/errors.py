"""Errors a user can act on. The CLI prints their message as one line and exits non-zero.

Messages never carry a person-level value (person_id, a person's dates): name the file,
the column, the rule and the count instead.
"""

from __future__ import annotations


class RxCohortError(Exception):
    """Base class: a problem with the input, the study file or the warehouse."""

    exit_code = 1


class ParameterError(RxCohortError, ValueError):
    """A value given to a command or a function is outside what it accepts (a negative number
    of days, an empty list of prefixes, a date in the wrong form). Also a ``ValueError``, so
    callers that expect Python's own type for a bad argument still catch it."""

    exit_code = 2


class ConfigError(RxCohortError):
    """A configuration or study file is invalid."""

    exit_code = 2


class DeliveryError(RxCohortError):
    """A delivery file cannot be read as the contract says; nothing was changed."""


class QualityGateError(RxCohortError):
    """A hard data-quality expectation failed; nothing was committed."""

    exit_code = 5


class StudyFailedError(RxCohortError):
    """A study of a refresh failed (the other studies ran)."""

    exit_code = 6


class TableNotFoundError(RxCohortError):
    """A Delta table that should exist does not."""


class TableExistsError(RxCohortError):
    """Write mode ``error`` refused to write over an existing table."""


class CommitConflictError(RxCohortError):
    """Another writer committed first and the transaction could not be reconciled."""
