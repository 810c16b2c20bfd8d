"""A study's result round-trips through results.json, and a malformed one is refused."""

from __future__ import annotations

import json

import pytest

from loralab.errors import LoralabError
from loralab.results.study import LrCurve, PlacementRow, StudyResult, study_from_dict
from loralab.results.verdict import Verdict


def test_study_result_round_trips_through_json() -> None:
    s = StudyResult(name="lr", curves=[LrCurve("full", "full", None, [1e-3, 1e-2], [2.0, 1.5],
                                               1e-2, 1e-2, 1.5, True)],
                    placement=[PlacementRow("full", "all weights", None, None, 10, None, 1.2)],
                    verdicts=[Verdict("lr", "c", "s", "partly", {"a": "1"}, "edge")],
                    ratios={"lora-r1": 9.5}, floor_s=None, wall_s=3.0)
    back = study_from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    assert study_from_dict(None) is None


def test_malformed_study_is_one_clear_error() -> None:
    with pytest.raises(LoralabError, match="study in results.json is malformed"):
        study_from_dict({"name": "lr"})
