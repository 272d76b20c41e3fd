"""The missing-value policy (``--missing``) as one typed value, declared once with the hint
that its located errors end with.

``mean`` (default) leaves a numeric column's missing cells NaN for ``train.prepare`` to fill
with the training mean (or fills them at once with a stored schema's value) and gives a
categorical column's missing cells a category of their own; ``error`` makes the first missing
cell a located error; ``drop`` leaves out every row with a missing or infinite feature. An
infinite value (or one beyond float32) is an error otherwise.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

from nncli.errors import DataError


@dataclass(frozen=True)
class MissingPolicy:
    """What to do with a missing (or infinite) feature cell, and what to tell the user."""

    name: typing.Literal["mean", "error", "drop"]   # what the user types after --missing
    hint: str   # ends an error about a missing or infinite feature: what else --missing offers
    fate: str = ""   # what becomes of a missing number, as notes say it ("" : it is an error)

    @property
    def drops_rows(self) -> bool:
        """Rows with a missing, NaN or infinite feature are left out rather than refused."""
        return self.name == "drop"

    @property
    def refuses_missing(self) -> bool:
        """The first missing feature cell is an error."""
        return self.name == "error"


MEAN = MissingPolicy("mean", "; --missing drop leaves such rows out",
                     "filled with the training mean")
ERROR = MissingPolicy("error", "; --missing mean fills it with the column's training mean, "
                               "--missing drop leaves such rows out")
DROP = MissingPolicy("drop", "", "its row left out")
# predict: a model's fill values, with no --missing to suggest (predict has no such option)
MODEL_FILL = MissingPolicy("mean", "", MEAN.fate)

POLICIES = {policy.name: policy for policy in (MEAN, ERROR, DROP)}
MISSING_POLICIES = tuple(POLICIES)


def missing_policy(value: MissingPolicy | str) -> MissingPolicy:
    """The policy named ``value`` (as the user typed it), or ``value`` itself."""
    if isinstance(value, MissingPolicy):
        return value
    try:
        return POLICIES[value]
    except KeyError:
        raise DataError(f"unknown missing-value policy '{value}'; expected one of "
                        f"{', '.join(MISSING_POLICIES)}") from None
