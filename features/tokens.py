"""Token counting shared by every part of Switchyard that must agree on a count.

Real tokenizers are per model family and live in the workers; the gateway needs a cheap,
deterministic estimate that serving features, the simulated worker and the simulator agree
on. We use the usual rule of thumb for English-like text with BPE vocabularies: one token
per four UTF-8 bytes, at least one token for non-empty text.
"""

from __future__ import annotations

BYTES_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text`` (0 for the empty string)."""
    if not text:
        return 0
    return max(1, (len(text.encode("utf-8")) + BYTES_PER_TOKEN - 1) // BYTES_PER_TOKEN)
