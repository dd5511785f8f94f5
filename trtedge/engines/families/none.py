"""``family: none``: a plain model, built as it is (no surgery, its own inputs and outputs)."""

from .base import Family


class PlainFamily(Family):
    name = "none"
    detector = False

    def describe(self, section: object) -> str:
        return "-"


FAMILY = PlainFamily()
