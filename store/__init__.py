"""Persistence: SQLModel tables, the engine factory (SQLite default, Postgres by URL) and the repository.

Activities call ``store.repo`` functions with an engine from ``store.db.engine_from_settings``.
"""
