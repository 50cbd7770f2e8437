"""The Temporal UI's remote codec (``/codec/encode``, ``/codec/decode``): payloads decrypted for ops.

Served twice, with the same routes and the same key (:func:`mdco_temporal.client.payload_key_spec`):
- by the public API (``api.app``), where it needs an ``ops`` bearer token like every other route:
  production's UI sends its user's OIDC access token (temporalio/ui ``TEMPORAL_CODEC_PASS_ACCESS_TOKEN``);
- in the embedded stack, by a loopback-only listener for the dev server's UI (``mdco up`` starts it as
  the ``codec`` service; ``python -m api.codec --port N``): bound to 127.0.0.1, it answers only
  loopback peers, a loopback ``Host`` (no DNS rebinding) and the UI's origin (or none, e.g. curl).
Only the UI's origins pass CORS (``MDCO_UI_ORIGINS``, default the embedded UI's).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from typing import Annotated, Any, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from cryptography.exceptions import InvalidTag
from pydantic import BaseModel, Field

from config import Settings, get_settings

log = logging.getLogger("mdco.api.codec")

PREFIX = "/codec"
LOOPBACK_HOST = "127.0.0.1"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def ui_origins(settings: Settings) -> list[str]:
    return [o.strip() for o in settings.ui_origins.split(",") if o.strip()] or \
        [f"http://{host}:{settings.temporal_ui_port}" for host in ("127.0.0.1", "localhost")]


def ui_endpoint(settings: Settings) -> str:
    """What the embedded UI is pointed at (``temporal server start-dev --ui-codec-endpoint``)."""
    return f"http://{LOOPBACK_HOST}:{settings.codec_port}{PREFIX}"


BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
Base64 = Annotated[str, Field(pattern=BASE64, description="base64")]


class Payload(BaseModel):
    metadata: dict[str, Base64] = Field(default_factory=dict, description="e.g. encoding (base64 values)")
    data: Base64 | None = None


class PayloadsBody(BaseModel):
    """Temporal's ``Payloads`` in proto3 JSON (what the UI sends and reads)."""

    payloads: list[Payload] = Field(default_factory=list)


class CodecInputError(Exception):
    def __init__(self, response):
        self.response = response


class _Codec:
    """The key is read (or made, under var/) on first use, not when the app is built."""

    def __init__(self, settings: Settings):
        self.settings, self._codec = settings, None

    def get(self):
        if self._codec is None:
            from mdco_temporal.client import payload_key_spec
            from mdco_temporal.codec import codec_from_spec

            self._codec = codec_from_spec(payload_key_spec(self.settings))
        return self._codec


def install(app: FastAPI, settings: Settings) -> None:
    """``POST /codec/encode`` and ``/codec/decode`` on ``app``, CORS for the UI's origins."""
    from google.protobuf import json_format
    from temporalio.api.common.v1 import Payloads

    codec = _Codec(settings)
    app.add_middleware(CORSMiddleware, allow_origins=ui_origins(settings), allow_methods=["POST", "OPTIONS"],
                       allow_headers=["content-type", "x-namespace", "authorization"])

    async def convert(body: PayloadsBody, encode: bool) -> PayloadsBody:
        try:
            payloads = json_format.ParseDict(body.model_dump(exclude_none=True), Payloads())
            done = await (codec.get().encode if encode else codec.get().decode)(list(payloads.payloads))
        except (json_format.ParseError, ValueError, InvalidTag) as exc:
            from api.errors import invalid_detail, problem_response

            reason = "not a payload this codec can read" if isinstance(exc, InvalidTag) else str(exc)[:300]
            problems = [{"field": "payloads", "reason": reason}]
            raise CodecInputError(problem_response(422, invalid_detail(problems), problems)) from None
        return PayloadsBody.model_validate(json_format.MessageToDict(Payloads(payloads=done)))

    codes = {422: {"description": "not payloads this codec can read"}}

    @app.post(f"{PREFIX}/encode", tags=["codec"], summary="Temporal UI remote codec: encrypt payloads",
              response_model=PayloadsBody, response_model_exclude_none=True, responses=codes)
    async def codec_encode(body: PayloadsBody) -> PayloadsBody:
        return await convert(body, True)

    @app.post(f"{PREFIX}/decode", tags=["codec"], summary="Temporal UI remote codec: decrypt payloads",
              response_model=PayloadsBody, response_model_exclude_none=True, responses=codes)
    async def codec_decode(body: PayloadsBody) -> PayloadsBody:
        return await convert(body, False)

    @app.exception_handler(CodecInputError)
    async def _codec_input(_r: Request, exc: CodecInputError):
        return exc.response


# ---------------------------------------------------------------- the embedded UI's loopback listener
def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class LoopbackOnly:
    """ASGI guard: 403 unless the peer is loopback, ``Host`` names loopback and any ``Origin`` is the UI's."""

    def __init__(self, app: Callable[..., Awaitable[Any]], origins: list[str]):
        self.app, self.origins = app, set(origins)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            host = headers.get("host", "").rsplit(":", 1)[0] if not headers.get("host", "").startswith("[") \
                else headers["host"].split("]")[0] + "]"
            origin = headers.get("origin")
            why = ("not a loopback caller" if not _is_loopback((scope.get("client") or (None,))[0])
                   else "not a loopback Host" if host not in LOOPBACK_NAMES
                   else "origin not allowed" if origin is not None and origin not in self.origins else None)
            if why:
                from api.errors import send_problem

                await send_problem(send, 403, f"The codec listener answers the local Temporal UI only: {why}.")
                return
        await self.app(scope, receive, send)


def create_listener_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="mdco codec (loopback)", docs_url=None, redoc_url=None, openapi_url=None)
    install(app, settings)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(LoopbackOnly, origins=ui_origins(settings))
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="The embedded Temporal UI's codec, on 127.0.0.1 only.")
    parser.add_argument("--port", type=int, default=get_settings().codec_port)
    args = parser.parse_args(argv)
    uvicorn.run(create_listener_app(), host=LOOPBACK_HOST, port=args.port, log_level="warning",
                access_log=False, server_header=False)


if __name__ == "__main__":
    main()
