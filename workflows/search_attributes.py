"""Typed search attributes ops filter on in the Temporal UI. Never PII: stage, SLA, states, waiting-on, oversight status and next due date."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

STAGE = SearchAttributeKey.for_keyword("OnboardingStage")
SLA_STATUS = SearchAttributeKey.for_keyword("SlaStatus")
SLA_DEADLINE = SearchAttributeKey.for_datetime("SlaDeadline")
STATES = SearchAttributeKey.for_keyword_list("OnboardingStates")
WAITING_ON = SearchAttributeKey.for_keyword("WaitingOn")
#: Oversight (OversightWorkflow): active | suspended | replacing | offboarded, and the next due date.
OVERSIGHT_STATUS = SearchAttributeKey.for_keyword("OversightStatus")
OVERSIGHT_NEXT_DUE = SearchAttributeKey.for_datetime("OversightNextDue")

ALL = (STAGE, SLA_STATUS, SLA_DEADLINE, STATES, WAITING_ON, OVERSIGHT_STATUS, OVERSIGHT_NEXT_DUE)

_TYPE_NAMES = {
    "KEYWORD": "Keyword", "DATETIME": "Datetime", "KEYWORD_LIST": "KeywordList",
    "TEXT": "Text", "INT": "Int", "FLOAT": "Double", "BOOL": "Bool",
}


def dev_server_flags() -> list[str]:
    """``--search-attribute Name=Type`` flags for ``temporal server start-dev``."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={_TYPE_NAMES[key.indexed_value_type.name]}"]
    return flags
