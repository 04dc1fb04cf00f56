"""The incremental SSE scanner and what StreamProgress keeps from an Anthropic event stream."""

from __future__ import annotations

import json

import pytest

from serving.worker_stream import SseEvent, SseProtocolError, SseScanner, StreamProgress, WorkerUsage


def event(name: str, document: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(document)}\n\n".encode()


MESSAGE_START = event(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [],
            "usage": {"input_tokens": 120, "cache_read_input_tokens": 64, "output_tokens": 1},
        },
    },
)
STREAM = b"".join(
    [
        MESSAGE_START,
        event("content_block_start", {"type": "content_block_start", "index": 0}),
        b'event: ping\r\ndata: {"type":"ping"}\r\n\r\n',  # CRLF line endings are allowed
        b": a comment line\n\n",
        event("content_block_delta", {"type": "content_block_delta", "delta": {"text": "hi\nthere"}}),
        event("content_block_delta", {"type": "content_block_delta", "delta": {"text": "again"}}),
        event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                "usage": {"output_tokens": 42},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
        b"data: [DONE]\n\n",  # vLLM's trailer: an unnamed event
    ]
)
NAMES = [
    "message_start",
    "content_block_start",
    "ping",
    "content_block_delta",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "message",
]


def scan(chunks: list[bytes]) -> list[SseEvent]:
    scanner = SseScanner()
    return [found for chunk in chunks for found in scanner.feed(chunk)]


def test_whole_stream_in_one_chunk() -> None:
    events = scan([STREAM])
    assert [e.name for e in events] == NAMES
    assert json.loads(events[3].data)["delta"]["text"] == "hi\nthere"
    assert events[-1].data == b"[DONE]"
    assert events[0].end == len(MESSAGE_START)
    assert events[-1].end == len(STREAM)
    for found in events:  # every end offset is just past a blank line
        assert STREAM[: found.end].endswith((b"\n\n", b"\r\n\r\n"))


def test_split_at_every_byte_boundary_gives_the_same_events() -> None:
    expected = scan([STREAM])
    for cut in range(len(STREAM) + 1):
        assert scan([STREAM[:cut], STREAM[cut:]]) == expected, cut


def test_split_at_every_pair_of_boundaries_around_crlf_and_byte_by_byte() -> None:
    expected = scan([STREAM])
    assert scan([bytes([b]) for b in STREAM]) == expected
    crlf = STREAM.index(b"\r\n")
    for first in range(crlf - 3, crlf + 4):
        for second in range(first, crlf + 8):
            assert scan([STREAM[:first], STREAM[first:second], STREAM[second:]]) == expected


def test_multi_line_data_and_field_without_space() -> None:
    events = scan([b"event:x\ndata:a\ndata: b\nid: 7\nretry: 5\n\n"])
    assert events == [SseEvent("x", b"a\nb", len(b"event:x\ndata:a\ndata: b\nid: 7\nretry: 5\n\n"))]


def test_an_endless_line_is_refused() -> None:
    scanner = SseScanner()
    with pytest.raises(SseProtocolError, match="longer than"):
        for _ in range(9):
            scanner.feed(b"x" * (1024 * 1024))


def progress_of(chunks: list[bytes]) -> StreamProgress:
    progress = StreamProgress(started_at=10.0)
    for index, chunk in enumerate(chunks):
        progress.feed(chunk, now=10.0 + index)
    return progress


def test_progress_tracks_start_ttft_usage_stop_reason_and_completion_across_any_split() -> None:
    first_delta = STREAM.index(b"event: content_block_delta")
    for cut in range(len(STREAM) + 1):
        progress = progress_of([STREAM[:cut], STREAM[cut:]])
        assert progress.message_start is not None and progress.message_start["message"]["id"] == "msg_1"
        assert progress.message_start_end == len(MESSAGE_START)
        assert progress.usage == WorkerUsage(input_tokens=120, cache_read_input_tokens=64, output_tokens=42)
        assert progress.stop_reason == "max_tokens" and progress.completed
        assert progress.error_type is None and progress.bytes_received == len(STREAM)
        # the delta completes in the first chunk only if the cut is past its blank line
        delta_end = STREAM.index(b"\n\n", first_delta) + 2
        assert progress.ttft_ms == (0.0 if cut >= delta_end else 1000.0)


def test_in_band_error_is_recorded_and_blames_the_worker() -> None:
    error = event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    progress = progress_of([MESSAGE_START, error])
    assert (progress.error_type, progress.error_message) == ("overloaded_error", "busy")
    assert progress.worker_fault and not progress.completed
    bad_request = event(
        "error", {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}
    )
    assert not progress_of([MESSAGE_START, bad_request]).worker_fault
    before_start = progress_of([error + b"data: [DONE]\n\n" + MESSAGE_START])  # what follows is ignored
    assert before_start.error_type == "overloaded_error" and before_start.message_start is None


def test_protocol_errors() -> None:
    with pytest.raises(SseProtocolError, match="expected message_start"):
        progress_of([event("content_block_delta", {"type": "content_block_delta"})])
    with pytest.raises(SseProtocolError, match="not JSON"):
        progress_of([b"event: message_start\ndata: {nope\n\n"])
    with pytest.raises(SseProtocolError, match="second message_start"):
        progress_of([MESSAGE_START, MESSAGE_START])
    assert progress_of([event("ping", {"type": "ping"})]).message_start is None  # a ping may come first


def test_usage_update_keeps_fields_the_update_lacks() -> None:
    usage = WorkerUsage(5, 6, 7)
    assert usage.updated({"output_tokens": 9}) == WorkerUsage(5, 6, 9)
    assert usage.updated({"input_tokens": "x"}) == usage
    assert usage.updated(None) is usage
