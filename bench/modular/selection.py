"""Which epoch of a mask search its modules come from: the authors' rules, folded over the epochs as they end.

Each rule sees (epoch, validation accuracy, kept share) once per epoch, in order, and names the slots
that take the epoch's state: 'chosen' (the rule's pick so far) and 'fallback' (what the search ends
with when no epoch qualified). The rules are dataclasses of plain values: a search checkpoint keeps them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CHOSEN, FALLBACK = "chosen", "fallback"


@dataclass
class FewestKept:
    """GradSplitter's selection (``src/script/select_modules.py``): among the epochs whose validation accuracy is
    less than ``tolerance`` below ``reference`` (the model's), the one keeping the fewest units, the more
    accurate of equals; without one, the most accurate epoch, the later of equals (``src/grad_splitter.py``)."""

    reference: float
    tolerance: float
    fewest: float = math.inf
    fewest_accuracy: float = -1.0
    best_accuracy: float = -1.0

    def consider(self, epoch: int, accuracy: float, kept: float) -> list[str]:
        """The slots this epoch takes."""
        slots = []
        if accuracy >= self.best_accuracy:
            self.best_accuracy = accuracy
            slots.append(FALLBACK)
        if self.reference - accuracy < self.tolerance and (kept, -accuracy) < (self.fewest, -self.fewest_accuracy):
            self.fewest, self.fewest_accuracy = kept, accuracy
            slots.append(CHOSEN)
        return slots

    def slot(self) -> str:
        """'chosen' when an epoch qualified, else 'fallback'."""
        return CHOSEN if self.fewest < math.inf else FALLBACK


@dataclass
class SmallestReaching:
    """SeaM's selection (``Reengineer.alter``, ``src/binary_class/reengineer.py``): among the epochs whose
    validation accuracy reaches ``reference`` (the original model's), an epoch replaces the pick when its kept
    share is lower in the first three decimals, or no higher and its accuracy higher; without one, the epoch
    of the highest accuracy minus kept share (the first of equals)."""

    reference: float
    kept: float = 1.0
    accuracy: float = 0.0
    chosen: bool = False
    best_margin: float = -math.inf

    def consider(self, epoch: int, accuracy: float, kept: float) -> list[str]:
        """The slots this epoch takes."""
        slots = []
        if accuracy - kept > self.best_margin:
            self.best_margin = accuracy - kept
            slots.append(FALLBACK)
        lower = math.floor(kept * 1000) < math.floor(self.kept * 1000)
        if accuracy >= self.reference and (lower or (kept <= self.kept and accuracy > self.accuracy)):
            self.kept, self.accuracy, self.chosen = kept, accuracy, True
            slots.append(CHOSEN)
        return slots

    def slot(self) -> str:
        """'chosen' when an epoch reached the reference, else 'fallback'."""
        return CHOSEN if self.chosen else FALLBACK
