"""A published claim beside what this run measured, and one word on whether it held.

Every study that reproduces a paper (forgetting, intruder dimensions, learning rate,
placement, DoRA's view) ends in a :class:`Verdict`: the paper's claim in one sentence, its
source, the numbers this run measured (already formatted, in the order a reader checks
them), and one of three words. ``"does not hold"`` and ``"partly"`` carry the reason, so a
result that contradicts a paper is reported as a result, never hidden. The words are the
same in English and Chinese (:data:`VERDICT_WORDS_ZH` translates them); the claim, the
measured names and the reason are written in both languages where the verdict is built, from
the same numbers (``claim_zh``, ``measured_zh``, ``reason_zh``; :meth:`Verdict.texts` picks a
language and falls back to English for a verdict written without them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from ..errors import LoralabError

__all__ = ["VERDICT_WORDS", "VERDICT_WORDS_ZH", "Verdict", "VerdictTexts", "VerdictWord",
           "verdict_from_dict"]

VerdictWord = Literal["holds", "partly", "does not hold"]
VERDICT_WORDS: tuple[str, ...] = get_args(VerdictWord)
VERDICT_WORDS_ZH: dict[str, str] = {"holds": "成立", "partly": "部分成立",
                                    "does not hold": "在此不成立"}


@dataclass(frozen=True)
class VerdictTexts:
    """A verdict's words in one language: its word, claim, measured names and reason."""

    word: str
    claim: str
    measured: dict[str, str]
    reason: str


@dataclass(frozen=True)
class Verdict:
    """One claim and this run's answer to it.

    ``study`` names the study (``"forgetting"``, ``"intruders"``, ``"lr"``, ``"placement"``…);
    ``claim`` is the paper's claim, ``source`` the paper (authors, year); ``measured`` maps a
    quantity's name to its value as printed; ``word`` is one of :data:`VERDICT_WORDS`;
    ``reason`` says why, and is required unless the claim holds. ``claim_zh``,
    ``measured_zh`` (the same quantities in the same order, Chinese names) and ``reason_zh``
    are the Chinese of the three, built from the same numbers; empty when not written (an
    older ``results.json``): the page then shows the English.
    """

    study: str
    claim: str
    source: str
    word: VerdictWord
    measured: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    claim_zh: str = ""
    measured_zh: dict[str, str] = field(default_factory=dict)
    reason_zh: str = ""

    def __post_init__(self) -> None:
        if self.word not in VERDICT_WORDS:
            raise LoralabError(f"verdict word {self.word!r} is not one of "
                               f"{', '.join(VERDICT_WORDS)}")
        if self.word != "holds" and not self.reason.strip():
            raise LoralabError(f"verdict {self.word!r} on {self.study!r} needs a reason")
        if self.measured_zh and len(self.measured_zh) != len(self.measured):
            raise LoralabError(f"verdict on {self.study!r}: {len(self.measured_zh)} Chinese "
                               f"measured names for {len(self.measured)} quantities")
        if self.claim_zh and bool(self.reason.strip()) != bool(self.reason_zh.strip()):
            raise LoralabError(f"verdict on {self.study!r}: a reason in one language only")

    def texts(self, lang: str) -> VerdictTexts:
        """The word, claim, measured names and reason in ``lang`` (``"en"`` or ``"zh"``);
        Chinese falls back to the English text a verdict has no Chinese for."""
        if lang != "zh":
            return VerdictTexts(self.word, self.claim, dict(self.measured), self.reason)
        return VerdictTexts(VERDICT_WORDS_ZH[self.word], self.claim_zh or self.claim,
                            dict(self.measured_zh or self.measured),
                            self.reason_zh or self.reason)

    def line(self) -> str:
        """``study: word. claim (source). name=value, …; reason`` on one line."""
        nums = ", ".join(f"{k} {v}" for k, v in self.measured.items())
        why = f"; {self.reason}" if self.reason else ""
        return f"{self.study}: {self.word}. {self.claim} ({self.source}). {nums}{why}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict_from_dict(d: dict[str, Any]) -> Verdict:
    """A :class:`Verdict` back from :meth:`Verdict.to_dict` (``results.json``), checked."""
    try:
        return Verdict(study=str(d["study"]), claim=str(d["claim"]), source=str(d["source"]),
                       word=d["word"], measured={str(k): str(v)
                                                 for k, v in dict(d.get("measured", {})).items()},
                       reason=str(d.get("reason", "")), claim_zh=str(d.get("claim_zh", "")),
                       measured_zh={str(k): str(v)
                                    for k, v in dict(d.get("measured_zh", {})).items()},
                       reason_zh=str(d.get("reason_zh", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise LoralabError(f"a verdict in results.json is malformed ({exc}); rerun the "
                           "study") from None
