"""Encryption of Temporal payloads (AES-256-GCM), so intake contact details never rest in plain text in
workflow histories. Off unless ``MDCO_PAYLOAD_KEYS`` is set; the API serves the same codec to the
Temporal UI (``/codec``) so ops still read decrypted inputs and statuses.

``MDCO_PAYLOAD_KEYS`` = ``keyid:base64key[,keyid:base64key...]``: the first key encrypts, every key
decrypts (rotation: put the new key first, keep the old ones until their histories are gone).
"""

from __future__ import annotations

import base64
import os
from typing import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    """``keyid:base64key,...`` -> [(id, 32-byte key)]; a clear ValueError names the bad entry."""
    keys: list[tuple[str, bytes]] = []
    for n, entry in enumerate(filter(None, (e.strip() for e in spec.split(","))), 1):
        key_id, sep, encoded = entry.partition(":")
        if not sep or not key_id:
            raise ValueError(f"MDCO_PAYLOAD_KEYS entry {n}: expected keyid:base64key")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ValueError(f"MDCO_PAYLOAD_KEYS entry {n} ({key_id}): key is not base64") from None
        if len(key) != 32:
            raise ValueError(f"MDCO_PAYLOAD_KEYS entry {n} ({key_id}): key must be 32 bytes (AES-256), got {len(key)}")
        keys.append((key_id, key))
    return keys


def new_key_spec(key_id: str = "k1") -> str:
    """A fresh ``keyid:base64key`` entry (for operators generating a key)."""
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: list[tuple[str, bytes]]):
        if not keys:
            raise ValueError("EncryptionCodec needs at least one key")
        self._active_id, active = keys[0]
        self._active = AESGCM(active)
        self._all = {key_id: AESGCM(key) for key_id, key in keys}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            nonce = os.urandom(12)
            sealed = self._active.encrypt(nonce, payload.SerializeToString(), self._active_id.encode())
            out.append(Payload(metadata={"encoding": ENCODING, KEY_ID: self._active_id.encode()}, data=nonce + sealed))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                out.append(payload)  # written before encryption was turned on
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode()
            cipher = self._all.get(key_id)
            if cipher is None:
                raise ValueError(f"payload encrypted with unknown key id {key_id!r} (add it to MDCO_PAYLOAD_KEYS)")
            plain = cipher.decrypt(payload.data[:12], payload.data[12:], key_id.encode())
            out.append(Payload.FromString(plain))
        return out


def codec_from_spec(spec: str) -> EncryptionCodec | None:
    return EncryptionCodec(parse_keys(spec)) if spec.strip() else None
