"""Connecting to Temporal with the project's data converter, and registering search attributes."""

from __future__ import annotations

import dataclasses

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.service import RPCError, RPCStatusCode

from config import Settings
from mdco_temporal.codec import codec_from_spec
from workflows import search_attributes as sa


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic models on the wire; encrypted at rest when ``MDCO_PAYLOAD_KEYS`` is set.

    With encryption on, failures (messages, stack traces) travel as encoded attributes too, so an
    encrypted deployment writes no plaintext. Payloads written before encryption was switched on
    still decode (the codec passes plaintext through), so running workflows survive the switch."""
    return converter_for_keys(settings.payload_keys)


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
