import math
from dataclasses import replace

import numpy as np
import pytest

from features.catalog import load_catalog
from features.prefix import BLOCK_BYTES, prefix_block_hashes
from features.prompt_embedding import embed_prompt
from features.request import candidate_features, expected_cache_hit, facts_from_request, request_features
from features.schema import (
    CANDIDATE_FEATURE_NAMES,
    PROMPT_EMBEDDING_DIMS,
    PROMPT_EMBEDDING_FEATURE_NAMES,
    REQUEST_FEATURE_NAMES,
    REQUEST_FEATURES,
    TASK_TYPES,
)
from features.task_classifier import predict_task_type
from features.text_signals import detect_script, keyword_task_type
from features.tokens import estimate_tokens


def payload(**overrides):
    body = {
        "model": "auto",
        "max_tokens": 256,
        "system": [{"type": "text", "text": "You are a careful assistant. " * 20}],
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Fix this bug:\n```python\ndef f(x):\n```"}],
            },
        ],
        "stream": True,
    }
    body.update(overrides)
    return body


def test_facts_read_system_turns_code_and_stream():
    facts = facts_from_request(payload())
    assert facts.system_tokens == estimate_tokens("You are a careful assistant. " * 20)
    assert facts.turns == 2
    assert facts.has_code and facts.stream and not facts.has_tools
    assert facts.task_type == "code"
    assert facts.prompt_tokens == facts.system_tokens + 2 + 1 + facts.last_user_tokens


def test_task_type_is_the_classifier_reading_of_the_last_user_turn():
    for text in ("Give me a TL;DR of this thread.", "Which companies are mentioned below?", "Write a haiku."):
        facts = facts_from_request(
            payload(messages=[{"role": "user", "content": "hi"}, {"role": "user", "content": text}])
        )
        assert facts.task_type == predict_task_type(text)
    # the keyword rules (schema v1) read "tl;dr" as summarization; the classifier reads it otherwise
    assert keyword_task_type("Give me a TL;DR of this thread.") != predict_task_type(
        "Give me a TL;DR of this thread."
    )


def test_request_vector_follows_the_schema_order_and_encodes_categories():
    facts = facts_from_request(payload(tools=[{"name": "t", "input_schema": {}}]))
    vector = request_features(facts, tenant_tier="enterprise", surface="app")
    assert len(vector) == len(REQUEST_FEATURE_NAMES)
    by_name = dict(zip(REQUEST_FEATURE_NAMES, vector, strict=True))
    assert by_name["has_tools"] == 1.0
    assert by_name["task_type"] == float(TASK_TYPES.index("code"))
    assert by_name["tenant_tier"] == 2.0 and by_name["surface"] == 1.0
    assert by_name["max_tokens"] == 256.0
    assert {spec.name for spec in REQUEST_FEATURES if spec.kind == "categorical"} >= {"task_type", "script"}


def test_candidate_vector_describes_the_sku_and_the_cache_hit():
    sku = load_catalog().get("claude-sonnet-4-5-1m")
    vector = dict(zip(CANDIDATE_FEATURE_NAMES, candidate_features(sku, cache_hit=0.25), strict=True))
    assert vector["sku_long_context"] == 1.0
    assert vector["sku_generation"] == 4.5
    assert vector["expected_cache_hit"] == 0.25
    assert expected_cache_hit(1500, 1000) == 1.0 and expected_cache_hit(10, 0) == 0.0


def test_candidate_vectors_are_fresh_per_call_and_follow_each_sku_object():
    sku = load_catalog().get("claude-sonnet-4-5-1m")
    first = candidate_features(sku, cache_hit=0.25)
    first[0] = -1.0  # the caller owns its vector: the next call is not affected
    again = dict(zip(CANDIDATE_FEATURE_NAMES, candidate_features(sku, cache_hit=0.5), strict=True))
    assert again["expected_cache_hit"] == 0.5 and again["sku_generation"] == 4.5
    assert candidate_features(sku, cache_hit=0.25)[0] != -1.0
    repriced = sku.model_copy(update={"list_price": sku.list_price.model_copy(update={"input": 99.0})})
    vector = dict(zip(CANDIDATE_FEATURE_NAMES, candidate_features(repriced, cache_hit=0.25), strict=True))
    assert vector["sku_price_input"] == 99.0  # another Sku object: its own encoding, not the cached one
    assert candidate_features(sku, cache_hit=0.25)[CANDIDATE_FEATURE_NAMES.index("sku_price_input")] != 99.0


def test_prefix_hashes_share_exactly_the_common_leading_blocks():
    shared = "s" * (BLOCK_BYTES * 3)
    a = prefix_block_hashes([shared, "a" * BLOCK_BYTES * 2])
    b = prefix_block_hashes([shared, "b" * BLOCK_BYTES * 2])
    assert len(a) == len(b) == 5
    assert a[:3] == b[:3] and a[3] != b[3]
    assert prefix_block_hashes(["x" * (BLOCK_BYTES - 1)]) == []
    assert prefix_block_hashes([shared], max_blocks=2) == a[:2]


def test_text_signals():
    assert detect_script("Привет, как дела?") == "cyrillic"
    assert detect_script("東京の天気は?") == "cjk"
    assert detect_script("1234") == "latin"
    assert keyword_task_type("Please summarize this report") == "summarization"
    assert keyword_task_type("hey there") == "chat"


def test_the_prompt_embedding_is_the_last_user_turns_and_closes_the_request_vector():
    last = "Fix this bug:\n```python\ndef f(x):\n```"
    facts = facts_from_request(payload())
    np.testing.assert_array_equal(np.array(facts.prompt_embedding, dtype=np.float32), embed_prompt(last))
    vector = request_features(facts, tenant_tier="pro", surface="api")
    assert REQUEST_FEATURE_NAMES[-PROMPT_EMBEDDING_DIMS:] == PROMPT_EMBEDDING_FEATURE_NAMES
    assert vector[-PROMPT_EMBEDDING_DIMS:] == list(facts.prompt_embedding)
    # the system prompt and earlier turns are not read
    other = facts_from_request(
        payload(system="Answer in French.", messages=[{"role": "user", "content": last}])
    )
    assert other.prompt_embedding == facts.prompt_embedding
    assert facts_from_request(
        payload(messages=[{"role": "user", "content": "Write a haiku."}])
    ).prompt_embedding != (facts.prompt_embedding)


def test_facts_without_an_embedding_give_nan_features_and_a_wrong_size_is_refused():
    facts = replace(facts_from_request(payload()), prompt_embedding=())
    vector = request_features(facts, tenant_tier="pro", surface="api")
    assert len(vector) == len(REQUEST_FEATURE_NAMES)
    assert all(math.isnan(value) for value in vector[-PROMPT_EMBEDDING_DIMS:])
    assert not any(math.isnan(value) for value in vector[:-PROMPT_EMBEDDING_DIMS])
    with pytest.raises(ValueError, match="dims"):
        request_features(replace(facts, prompt_embedding=(0.5,) * 3), tenant_tier="pro", surface="api")
