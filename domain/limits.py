"""Length and character limits the intake must respect because downstream systems enforce them.

What sales submit ends up in DocuSign (envelope custom field, recipient names and e-mails, subjects)
and in e-mail headers. Anything that would not fit there is rejected when a new intake is submitted
(``domain.intake.parse_intake``), with the field and the reason, instead of failing an activity
mid-onboarding. Intakes read back (running onboardings' Temporal payloads, the store) keep release 1's
rules, so that onboardings started before these limits still run.

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
# ``activities.onboarding.envelope_external_id`` is ``<workflow id>:<agreement kind>:<template version>``
# plus ``:r<N>`` for the N-th send of one agreement (the "exact" form, which envelopes already in flight
# are looked up by, so it never changes for ids that fit). Only when the exact form would exceed the
# custom field does it use the "compact" form ``<workflow id>:<digest>[:r<N>]``, where ``<digest>`` is
# the first ``EXTERNAL_ID_DIGEST_CHARS`` hex digits of sha256(``<agreement kind>:<template version>``).
# Both start with ``<workflow id>:``: api/service.py routes Connect events by the part before the
# first ':'. So the clinic key is not limited by DocuSign; the compact form must fit for every key
# CONTRACT.md allows, which the arithmetic below checks.

#: Clinic key length limits: CONTRACT.md, ``[a-z0-9-]{3,64}``.
CLINIC_KEY_MIN = 3
CLINIC_KEY_MAX = 64

#: Most characters any workflow id that sends envelopes adds around the clinic key: the onboarding
#: is ``onboarding-<key>`` (11); a replacement placement's own id may add up to 4 more
#: (e.g. ``onboarding-<key>-r99``), keeping the ``onboarding-`` prefix Connect events are routed by.
WORKFLOW_ID_OVERHEAD = len("onboarding-") + 4
#: The longest workflow id that sends envelopes.
ENVELOPE_WORKFLOW_ID_MAX = CLINIC_KEY_MAX + WORKFLOW_ID_OVERHEAD

#: Hex digits of sha256(kind:version) the compact form keeps (40 bits: no collision among the few
#: dozen agreements of one onboarding).
EXTERNAL_ID_DIGEST_CHARS = 10
#: The most sends of one agreement the budget keeps room for (the default is 2,
#: ``Timing.agreement_max_sends``; ops may force more).
MAX_SENDS = 999
#: The longest resend suffix.
LONGEST_RESEND_SUFFIX = f":r{MAX_SENDS}"
#: The longest compact external id: the longest workflow id, the digest and the longest resend suffix.
COMPACT_EXTERNAL_ID_MAX = ENVELOPE_WORKFLOW_ID_MAX + 1 + EXTERNAL_ID_DIGEST_CHARS + len(LONGEST_RESEND_SUFFIX)

#: For reference (tests): the longest agreement kind ``domain.documents.agreements_for`` makes
#: (``medical_director``, ``collaborative_practice_<ST>``, ``prescriptive_authority_TX``) and the
#: longest template version kept room for (``<template name>.v<N>``, ``domain.documents.latest_template``).
#: A short key's ids keep the exact form; a long key's may switch to the compact one.
LONGEST_AGREEMENT_KIND = "collaborative_practice_XX"
LONGEST_TEMPLATE_VERSION = "collaborative_practice.v99"

#: Names go into DocuSign recipients and documents and into e-mail subjects.
NAME_MAX = DOCUSIGN_RECIPIENT_NAME_MAX
EMAIL_MAX = DOCUSIGN_RECIPIENT_EMAIL_MAX

# Release 1 accepted (and onboardings already running carry) these; they still hold when an intake
# is read back (Temporal payloads, the store), while a newly submitted intake meets the limits above.
LEGACY_NAME_MAX = 200
LEGACY_CITY_MAX = 100
LICENSE_NUMBER_MAX = 40
ACCOUNT_NUMBER_MAX = 64  # a pharmacy's prescriber account number
#: The most charts (patient encounters) a clinic may report for one period (``mdco reviews charts``,
#: ``POST /oversight/{clinic_key}/chart-counts``): a bound against typos and overflow, not a business rule.
#: A very large med spa sees a few hundred encounters a day; a million per period leaves room for a
#: multi-site clinic reporting a whole year while catching an extra digit or a pasted id.
CHART_COUNT_MAX = 1_000_000

assert CLINIC_KEY_MAX >= CLINIC_KEY_MIN
assert COMPACT_EXTERNAL_ID_MAX <= DOCUSIGN_TEXT_CUSTOM_FIELD_MAX, (
    f"the compact external_id ({COMPACT_EXTERNAL_ID_MAX}) no longer fits DocuSign's custom field")

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
