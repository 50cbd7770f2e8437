"""HTTP API (FastAPI) and the onboarding operations it shares with the CLI (``api.service``)."""
