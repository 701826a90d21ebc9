"""One error hierarchy for the whole package (record/domain layer: imports nothing of dmsfactory).

- :class:`DmsFactoryError`: base of every exception dmsfactory defines. Catch it to tell our errors
  from a library's.
- :class:`UserError`: bad input the user can fix (a spec field, a path, a missing model, a wrong
  key). The CLI prints each of :attr:`UserError.lines` as ``error: <line>`` and exits 2, with no
  traceback; it decides by this class alone, never by an exception's name.

Errors that older code catches as ``ValueError`` / ``RuntimeError`` keep that base too
(``class GalleryError(UserError, ValueError)``), so existing ``except ValueError`` clauses still work.

A stage's per-sample error policy (:data:`ErrorPolicy`, the model is webdataset's ``handler=``):
``"quarantine"`` (the default) marks a sample whose input a stage cannot handle with the reason and
keeps going; ``"raise"`` re-raises the first such error (debugging, strict CI runs). Errors a stage
does not expect (a bug, a crashed model) always fail the batch loudly, whatever the policy.
"""

from __future__ import annotations

from typing import Literal

ErrorPolicy = Literal["quarantine", "raise"]
ERROR_POLICIES: tuple[str, ...] = ("quarantine", "raise")


class DmsFactoryError(Exception):
    """Base class of every error dmsfactory raises on purpose."""


class UserError(DmsFactoryError):
    """Bad input the user can fix. The CLI prints ``lines`` (one per problem) and exits 2."""

    @property
    def lines(self) -> list[str]:
        return [str(self)]


def check_policy(policy: str) -> str:
    """``policy`` if it is an :data:`ErrorPolicy`, else a ValueError naming the allowed values."""
    if policy not in ERROR_POLICIES:
        raise ValueError(f"on_error: {policy!r} is not allowed; allowed values: {', '.join(ERROR_POLICIES)}")
    return policy
