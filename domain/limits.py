"""Length and character limits the intake must respect because downstream systems enforce them.

What sales submit ends up in DocuSign (envelope custom field, recipient names and e-mails, subjects)
and in e-mail headers. Anything that would not fit there is rejected at intake, with the field and
the reason, instead of failing an activity mid-onboarding.

Sources (DocuSign eSignature REST API v2.1 reference, as mirrored by the SDK docs):
- ``textCustomFields[].value``: "Maximum length: 100 characters" (EnvelopeCustomFields resource;
  DocuSign's OpenAPI spec, e.g. the generated ``TextCustomField.md``). ``esign/adapter.py`` and the
  local e-sign server (``esign/envelopes.py``) enforce the same 100.
- ``signers[].name``: "Full legal name of the recipient. Maximum Length: 100 characters."
- ``signers[].email``: "Maximum length: 100 characters." (``docusign_esign.models.Signer.email``).
- ``emailSubject``: 100 characters (DocuSign eSignature sender guide; ``esign/adapter.py`` checks it).
"""

from __future__ import annotations

import unicodedata

# ---------------------------------------------------------------- DocuSign's limits
DOCUSIGN_TEXT_CUSTOM_FIELD_MAX = 100
DOCUSIGN_RECIPIENT_NAME_MAX = 100
DOCUSIGN_RECIPIENT_EMAIL_MAX = 100
DOCUSIGN_EMAIL_SUBJECT_MAX = 100

# ---------------------------------------------------------------- the external_id budget
# ``activities.onboarding.envelope_external_id``: ``<workflow id>:<agreement kind>:<template version>``
# plus ``:r<N>`` for the N-th send of one agreement. Every part but the clinic key is bounded here.

#: The longest agreement kind ``domain.documents.agreements_for`` makes:
#: ``medical_director``, ``collaborative_practice_<ST>``, ``prescriptive_authority_TX``.
LONGEST_AGREEMENT_KIND = "collaborative_practice_XX"
#: The longest template version string (``<template name>.v<N>``, ``domain.documents.latest_template``);
#: the agreements ship as v1, room is kept for up to v99 of the longest template name.
LONGEST_TEMPLATE_VERSION = "collaborative_practice.v99"
#: The longest resend suffix: room for up to 99 sends of one agreement (the default is 2,
#: ``Timing.agreement_max_sends``; ops may force more).
LONGEST_RESEND_SUFFIX = ":r99"
#: Most characters any workflow id that sends envelopes adds around the clinic key: the onboarding
#: is ``onboarding-<key>`` (11); a replacement placement's own id may add up to 4 more
#: (e.g. ``onboarding-<key>-r99``), keeping the ``onboarding-`` prefix Connect events are routed by.
WORKFLOW_ID_OVERHEAD = len("onboarding-") + 4

#: The longest workflow id whose envelopes' external_id still fits DocuSign's custom field.
ENVELOPE_WORKFLOW_ID_MAX = (DOCUSIGN_TEXT_CUSTOM_FIELD_MAX
                            - len(f":{LONGEST_AGREEMENT_KIND}:{LONGEST_TEMPLATE_VERSION}{LONGEST_RESEND_SUFFIX}"))
#: Clinic key length limits (CONTRACT.md says 3-64; 64 cannot fit the budget above, so it is tighter).
CLINIC_KEY_MIN = 3
CLINIC_KEY_MAX = ENVELOPE_WORKFLOW_ID_MAX - WORKFLOW_ID_OVERHEAD

#: Names go into DocuSign recipients and documents and into e-mail subjects.
NAME_MAX = DOCUSIGN_RECIPIENT_NAME_MAX
EMAIL_MAX = DOCUSIGN_RECIPIENT_EMAIL_MAX

assert CLINIC_KEY_MAX >= CLINIC_KEY_MIN, "the external_id budget leaves no room for a clinic key"

# ---------------------------------------------------------------- characters
#: Zero-width (non-)joiners are format characters that some scripts need inside names.
_ALLOWED_FORMAT = frozenset("\u200c\u200d")
#: Control (Cc: CR, LF, TAB, NUL, DEL, C1), format (Cf: bidi overrides, zero-width space, ...),
#: surrogate (Cs: cannot be encoded) and line/paragraph separator (Zl, Zp) characters.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def forbidden_character(value: str) -> tuple[int, str] | None:
    """``(position, 'U+XXXX NAME')`` of the first character a one-line display name must not hold."""
    for i, ch in enumerate(value):
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES and ch not in _ALLOWED_FORMAT:
            name = unicodedata.name(ch, "control character")
            return i, f"U+{ord(ch):04X} {name}"
    return None
