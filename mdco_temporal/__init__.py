"""Temporal plumbing shared by the worker, the API and the CLI: the client, data converter and payload codec."""
