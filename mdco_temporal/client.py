"""Connecting to Temporal with the project's data converter, and registering search attributes."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.service import RPCError, RPCStatusCode

from config import Settings
from mdco_temporal.codec import codec_from_spec, new_key_spec
from workflows import search_attributes as sa


LOCAL_KEY_ID = "local1"

#: How long the server keeps a run's tasks and queries on its worker's sticky queue before giving them to any
#: worker (the SDK's default, made explicit because STATUS_QUERY_TIMEOUT depends on it).
STICKY_QUEUE_TIMEOUT = timedelta(seconds=10)
#: How long a status query may wait for a worker. Shorter than STICKY_QUEUE_TIMEOUT on purpose: a query sent to
#: a crashed worker's sticky queue then gives up instead of being handed, with the full history, to a fresh
#: worker, which is how temporalio 1.35 comes to write a history it cannot replay (mdco_temporal/repair.py).
#: Without any worker a query is dropped after this long too, which bounds the same window.
STATUS_QUERY_TIMEOUT = timedelta(seconds=5)


def payload_key_path(settings: Settings) -> Path:
    return settings.auth_dir / "payload.key"


def payload_key_spec(settings: Settings) -> str:
    """``MDCO_PAYLOAD_KEYS``, or else the embedded stack's key: generated on first use under
    ``var/auth/payload.key`` (mode 0600, like the token issuer's key), so the worker, the API, the
    UI's codec listener and every CLI process of one ``var/`` encrypt and decrypt alike."""
    if settings.payload_keys.strip():
        return settings.payload_keys
    from api.auth import secret_file

    return secret_file(payload_key_path(settings), lambda: new_key_spec(LOCAL_KEY_ID).encode()).decode().strip()


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic models on the wire, always encrypted at rest (:func:`payload_key_spec`).

    Failures (messages, stack traces) travel as encoded attributes too, so nothing is written to
    Temporal in plaintext. Payloads written before encryption was switched on still decode (the codec
    passes plaintext through), so running workflows survive the switch."""
    return converter_for_keys(payload_key_spec(settings))


def converter_for_keys(spec: str) -> DataConverter:
    """The project's converter for a ``MDCO_PAYLOAD_KEYS`` value ('' = no encryption)."""
    codec = codec_from_spec(spec)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec,
                               failure_converter_class=DefaultFailureConverterWithEncodedAttributes)


async def connect(settings: Settings) -> Client:
    """A client whose converter round-trips the pydantic models of ``domain``."""
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                data_converter=data_converter(settings))


async def ensure_search_attributes(client: Client) -> None:
    """Register the custom search attributes that are missing (servers started without the flags)."""
    try:
        existing = (await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace))).custom_attributes
    except RPCError as err:  # the time-skipping test server cannot list, only add
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        existing = {}
    missing = {k.name: k.indexed_value_type for k in sa.ALL if k.name not in existing}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing))
