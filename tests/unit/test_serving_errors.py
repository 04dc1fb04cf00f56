import json

import anthropic
import httpx2
import pytest

from serving.errors import (
    STATUS_BY_TYPE,
    ApiError,
    authentication_failed,
    error_body,
    error_headers,
    internal_error,
    invalid_request,
    not_found,
    overloaded,
    permission_denied,
    rate_limited,
    request_too_large,
    sse_error_event,
)

CONSTRUCTED = [
    (invalid_request("messages: field required"), 400, "invalid_request_error", anthropic.BadRequestError),
    (authentication_failed(), 401, "authentication_error", anthropic.AuthenticationError),
    (permission_denied("nope"), 403, "permission_error", anthropic.PermissionDeniedError),
    (not_found("model: claude-x"), 404, "not_found_error", anthropic.NotFoundError),
    (request_too_large(), 413, "request_too_large", anthropic.ContentTooLargeError),
    (rate_limited("slow down", retry_after_s=1.5), 429, "rate_limit_error", anthropic.RateLimitError),
    (internal_error(), 500, "api_error", anthropic.InternalServerError),
    (overloaded(retry_after_s=2.0), 529, "overloaded_error", anthropic.OverloadedError),
]


@pytest.mark.parametrize(("error", "status", "error_type", "sdk_class"), CONSTRUCTED)
def test_constructors_set_the_anthropic_status_and_type(error, status, error_type, sdk_class):
    assert (error.status, error.error_type) == (status, error_type)
    assert STATUS_BY_TYPE[error_type] == status


def test_error_body_is_the_exact_anthropic_json():
    body = error_body(not_found("model: claude-x"), "req_01abc")
    assert body == (
        b'{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"},"request_id":"req_01abc"}'
    )
    assert (
        error_body(internal_error(), None)
        == b'{"type":"error","error":{"type":"api_error","message":"Internal server error"}}'
    )


def test_messages_are_json_escaped_and_utf8():
    body = error_body(invalid_request('bad "quote" \\ and é\nnewline'), "r1")
    assert json.loads(body)["error"]["message"] == 'bad "quote" \\ and é\nnewline'
    assert "é".encode() in body


def test_retry_headers_round_up_and_say_whether_to_retry():
    headers = error_headers(rate_limited("x", retry_after_s=1.2))
    assert headers == {"x-should-retry": "true", "retry-after": "2", "retry-after-ms": "1200"}
    assert error_headers(rate_limited("x", retry_after_s=0.0004))["retry-after-ms"] == "1"
    assert error_headers(invalid_request("x")) == {"x-should-retry": "false"}
    assert error_headers(overloaded()) == {"x-should-retry": "true"}


def test_sse_error_event_framing():
    event = sse_error_event(overloaded())
    assert (
        event
        == b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    assert sse_error_event(overloaded(), "req_9").endswith(b',"request_id":"req_9"}\n\n')


def test_internal_error_never_carries_exception_text():
    try:
        raise RuntimeError("secret path /etc/switchyard/key.pem")
    except RuntimeError:
        error = internal_error()
    body = error_body(error, "r")
    assert b"secret" not in body and b"Traceback" not in body and b"RuntimeError" not in body


def test_values_compare_and_validate():
    assert rate_limited("a", retry_after_s=1.0) == rate_limited("a", retry_after_s=1.0)
    assert rate_limited("a", retry_after_s=1.0) != rate_limited("a", retry_after_s=2.0)
    with pytest.raises(ValueError):
        ApiError("teapot_error", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        rate_limited("x", retry_after_s=-1)
    with pytest.raises(ApiError) as raised:
        raise permission_denied("no")
    assert raised.value.status == 403


@pytest.mark.parametrize(("error", "status", "error_type", "sdk_class"), CONSTRUCTED)
def test_the_official_sdk_reads_our_errors(error, status, error_type, sdk_class):
    """The anthropic SDK maps our status + body to its exception, with our message and request id."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "application/json", "request-id": "req_42", **error_headers(error)}
        return httpx2.Response(error.status, headers=headers, content=error_body(error, "req_42"))

    client = anthropic.Anthropic(
        api_key="k",
        base_url="http://gateway.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with pytest.raises(sdk_class) as raised:
        client.messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == status
    assert raised.value.request_id == "req_42"
    assert raised.value.body["error"] == {"type": error_type, "message": error.message}


def test_the_official_sdk_raises_on_a_mid_stream_error_event():
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 0},
        },
    }
    stream = (
        b"event: message_start\ndata: " + json.dumps(start).encode() + b"\n\n" + sse_error_event(overloaded())
    )

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=stream)

    client = anthropic.Anthropic(
        api_key="k",
        base_url="http://gateway.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    events = client.messages.create(
        model="auto", max_tokens=5, stream=True, messages=[{"role": "user", "content": "hi"}]
    )
    with pytest.raises(anthropic.APIStatusError) as raised:
        for _ in events:
            pass
    assert raised.value.body["error"]["type"] == "overloaded_error"
