"""Temporal workflow definitions: orchestration, timers, messages, search attributes. No I/O."""
