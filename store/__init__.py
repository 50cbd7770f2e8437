"""Persistence: SQLModel tables, the engine factory (SQLite default, Postgres by URL) and the repositories.

Activities call the functions of ``store.roster`` (physicians, pharmacies, capacity), ``store.onboardings``
(clinic, onboarding, plan, offers, protocols, pharmacy assignments), ``store.agreements`` and
``store.audit`` with an engine from ``store.db.engine_from_settings``; ``store.common`` holds what they
share; ``store.exclusions`` is the stored OIG LEIE list.
"""
