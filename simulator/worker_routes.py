"""The worker's small endpoints: models, health, metrics, the fault admin API, error handlers."""

from __future__ import annotations

import json

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from simulator.faults import FaultUpdate
from simulator.wire_anthropic import render_error
from simulator.worker_metrics import render_metrics
from simulator.worker_state import WorkerState

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTTP_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
}


def anthropic_error_response(status: int, error_type: str, message: str) -> Response:
    return Response(render_error(error_type, message), status_code=status, media_type="application/json")


class WorkerRoutes:
    """Handlers for everything but the chat endpoints; bound to one worker's state."""

    def __init__(self, state: WorkerState) -> None:
        self.state = state

    async def health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def models(self, request: Request) -> Response:
        state = self.state
        data = [
            {
                "id": name,
                "object": "model",
                "created": state.created,
                "owned_by": "switchyard-simulator",
                "root": name,
                "parent": None,
                "max_model_len": sku.context_window,
            }
            for name, sku in state.served.items()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def metrics(self, request: Request) -> Response:
        text = render_metrics(
            (name, engine.metrics, engine.gauges()) for name, engine in self.state.engines.items()
        )
        return PlainTextResponse(text, media_type=PROMETHEUS_CONTENT_TYPE)

    async def get_faults(self, request: Request) -> Response:
        return JSONResponse(self.state.faults.snapshot())

    async def set_faults(self, request: Request) -> Response:
        try:
            update = FaultUpdate.model_validate(json.loads(await request.body() or b"{}"))
        except ValueError as error:
            message = (
                _validation_message(error) if isinstance(error, ValidationError) else f"invalid JSON: {error}"
            )
            return anthropic_error_response(400, "invalid_request_error", message)
        if update.model is not None and update.model not in self.state.served:
            return anthropic_error_response(404, "not_found_error", f"model: {update.model}")
        self.state.faults.apply(update)
        return JSONResponse(self.state.faults.snapshot())


def _validation_message(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}" for item in error.errors()
    )


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal server error."
    return anthropic_error_response(status, HTTP_ERROR_TYPES.get(status, "api_error"), str(detail))


async def server_error_handler(request: Request, exc: Exception) -> Response:
    return anthropic_error_response(500, "api_error", "Internal server error.")
