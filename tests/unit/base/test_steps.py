"""The steps dropd names in error.json, status.json and the logs (daemon/base/steps.py)."""

from __future__ import annotations

import json

from daemon.base.steps import Step


def test_steps_are_written_as_their_values() -> None:
    assert [s.value for s in Step] == [
        "folder",
        "spool",
        "intake",
        "validate",
        "guard",
        "zip",
        "token",
        "upload",
        "internal",
    ]
    assert json.dumps({"step": Step.UPLOAD}) == '{"step": "upload"}'
    assert f"at step {Step.INTAKE}" == "at step intake"
    assert Step("guard") is Step.GUARD and str(Step.TOKEN) == "token"
