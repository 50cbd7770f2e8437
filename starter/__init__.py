"""The ``mdco`` CLI: sales trigger, status, imports, and the embedded stack (up/down/demo)."""
