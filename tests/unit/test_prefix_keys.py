"""Segment-boundary prefix keys: shared whole-segment prefixes match, anything else does not."""

from __future__ import annotations

from features.prefix import BLOCK_BYTES, SEGMENT_SEPARATOR, boundary_prefix_keys


def test_a_conversations_next_turn_shares_every_earlier_boundary_key():
    turn_one = ["system prompt " * 30, "first question " * 40]
    turn_two = [*turn_one, "an answer " * 50, "a follow-up " * 20]
    first, second = boundary_prefix_keys(turn_one), boundary_prefix_keys(turn_two)
    assert second[: len(first)] == first
    assert len(second) == len(first) + 2


def test_blocks_count_whole_blocks_of_the_joined_prompt():
    segments = ["a" * 1000, "b" * 10, "c" * 3000]
    joined = SEGMENT_SEPARATOR.join(s.encode() for s in segments)
    blocks = [b for b, _ in boundary_prefix_keys(segments)]
    # The boundary after "b" * 10 ends in the same block as the one before it: one key, not two.
    assert 1000 // BLOCK_BYTES == 1011 // BLOCK_BYTES
    assert blocks == [1000 // BLOCK_BYTES, len(joined) // BLOCK_BYTES]


def test_a_different_byte_inside_the_prefix_changes_the_key():
    same = boundary_prefix_keys(["x" * 500, "y" * 500])
    changed = boundary_prefix_keys(["x" * 10 + "z" + "x" * 489, "y" * 500])
    assert same[0][0] == changed[0][0] and same[0][1] != changed[0][1]


def test_bytes_after_the_last_whole_block_do_not_change_the_key():
    # Both first segments have the same whole blocks; the partial block differs.
    base = "q" * (BLOCK_BYTES * 3)
    assert boundary_prefix_keys([base + "1"])[0] == boundary_prefix_keys([base + "2"])[0]


def test_prompts_shorter_than_a_block_have_no_key():
    assert boundary_prefix_keys(["hi", "there"]) == ()
