"""The signals serving reads from a simulated request's text, for a whole table without the text.

``features.request.facts_from_request`` reads two request features from the last user turn:
``has_code`` and ``task_type`` (the task-type classifier). The bootstrap simulates a million
requests and cannot afford to render and classify each turn, so :class:`ServedSignals`
computes both from the simulation's columns, and must get exactly what serving would get
from ``render_payload``'s text (tested in ``tests/unit/test_workload.py``).

``has_code`` sees only the lead and the code snippet (nothing in the padding matches it): a
lookup table over (script, task, template, snippet).

``task_type``: the classifier is linear over the n-grams of the text's window (its head and
tail, ``features.task_classifier.read_window``), so the weight sums of a window are the sums
of its pieces. A user turn is ``lead + padding + marker`` and its padding is a cyclic slice of
the script's :class:`simulator.prompts.PaddingCorpus`, so the featurized window is

    " " + lead   | corpus slice |  (" " | corpus slice)  | pad spaces + marker + " "
    (per lead)     (head)          (tail; long turns)      (per digit count and pad)

Sums of the lead and marker pieces are computed once, those of corpus slices are differences
of prefix sums over the corpus, and the n-grams across each seam (at most four bytes of each
side) are hashed per request: O(1) per request, whatever its length, all of a window's
requests in one sparse product. The sums are float64; ``TaskClassifier.labels_from_sums``
returns the label wherever onnxruntime's float32 score provably picks the same one, and the
other requests (near ties, ~0.7%) are rendered and classified exactly as serving does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse

from features.schema import TASK_TYPES
from features.task_classifier import (
    HEAD_BYTES,
    NGRAM_SIZES,
    TaskClassifier,
    default_task_classifier,
    ngram_buckets,
    ngram_count,
    ngram_keys,
    normalized_bytes,
    window_lengths,
)
from features.tokens import BYTES_PER_TOKEN
from simulator.prompts import (
    PROMPT_SCRIPTS,
    TEMPLATES_PER_TASK,
    PaddingCorpus,
    conversation_user_turn,
    lead_has_code,
    padding_corpus,
    sim_marker,
    user_turn_seeds,
    visible_lead,
)

if TYPE_CHECKING:
    from simulator.workload import TurnTable

SEAM = 4  # bytes kept on each side of a seam: an n-gram (n <= 5) across it reaches at most 4 into a side
_MAX_OUT_DIGITS = 9  # of the marker's ``out``
_MAX_PAD = 2  # spaces after the padding where a multi-byte character did not fit


@dataclass(frozen=True, eq=False)
class _ScriptRows:
    """One script's padding corpus (twice over, already featurized) and every row a window's
    sums are a signed combination of: the weight table and a zero row, the lead and marker
    pieces' sums, and prefix sums of the corpus n-grams' weights."""

    padding: PaddingCorpus
    data: np.ndarray  # uint8, the corpus twice over
    rows: np.ndarray  # float64 [rows, columns]
    zero: int  # index of the zero row (right after the weight table)
    first_lead: int
    first_marker: int
    first_prefix: dict[tuple[int, bool], int]  # (n, head n-grams) -> row of the prefix sum before byte 0

    @classmethod
    def build(
        cls, script: str, table: np.ndarray, leads: _Pieces, markers: _Pieces, bits: int
    ) -> _ScriptRows:
        padding = padding_corpus(script)
        data = padding.doubled.encode("utf-8")
        if normalized_bytes(padding.doubled) != data:
            raise AssertionError(f"the {script} padding corpus changes when normalized")
        blocks = [table, np.zeros((1, table.shape[1])), leads.sums, markers.sums]
        first_prefix = {}
        for n in NGRAM_SIZES:
            keys = ngram_keys(data, n)
            for head in (False, True):
                first_prefix[n, head] = sum(len(block) for block in blocks)
                weights = np.take(table, ngram_buckets(keys, head=head, bits=bits), axis=0)
                blocks.append(np.concatenate([np.zeros((1, table.shape[1])), np.cumsum(weights, axis=0)]))
        zero = len(table)
        return cls(
            padding=padding,
            data=np.frombuffer(data, dtype=np.uint8),
            rows=np.concatenate(blocks),
            zero=zero,
            first_lead=zero + 1,
            first_marker=zero + 1 + len(leads.sums),
            first_prefix=first_prefix,
        )

    def inside(
        self, start: np.ndarray, stop: np.ndarray, n: int, *, head: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(plus, minus) rows: the sums over the n-grams lying within bytes [start, stop) of the doubled corpus."""
        first = self.first_prefix[n, head]
        return first + np.maximum(stop - n + 1, start), first + start

    def bytes_at(self, start: np.ndarray, count: int) -> np.ndarray:
        """[rows, count] uint8: ``count`` bytes of the doubled corpus from each start."""
        return self.data[start[:, None] + np.arange(count)]


@dataclass(frozen=True, eq=False)
class _Pieces:
    """Fixed pieces of the window (leads, or pad spaces + marker): sizes, inner sums, seam bytes."""

    chars: np.ndarray  # characters of the piece's text
    nbytes: np.ndarray  # UTF-8 bytes of the piece's text
    featurized: np.ndarray  # bytes of the piece in the featurized window
    sums: np.ndarray  # [pieces, columns]: weights of the n-grams inside the piece
    seam: np.ndarray  # [pieces, SEAM] uint8: the piece's bytes next to the padding

    @classmethod
    def stack(cls, rows: list[tuple[str, bytes, np.ndarray, bytes]]) -> _Pieces:
        texts, featurized, sums, seams = zip(*rows, strict=True)
        return cls(
            chars=np.array([len(text) for text in texts]),
            nbytes=np.array([len(text.encode("utf-8")) for text in texts]),
            featurized=np.array([len(data) for data in featurized]),
            sums=np.stack(sums),
            seam=np.frombuffer(b"".join(seams), dtype=np.uint8).reshape(len(rows), SEAM),
        )


def _inner_sums(table: np.ndarray, data: bytes, *, head: bool, bits: int) -> np.ndarray:
    """Weights of the n-grams inside ``data`` (and of the head n-grams among its first
    ``HEAD_BYTES`` bytes, if it opens the window)."""
    total = np.zeros(table.shape[1])
    for n in NGRAM_SIZES:
        keys = ngram_keys(data, n)
        total += table[ngram_buckets(keys, head=False, bits=bits)].sum(axis=0)
        if head:
            head_keys = keys[: max(min(len(data), HEAD_BYTES) - n + 1, 0)]
            total += table[ngram_buckets(head_keys, head=True, bits=bits)].sum(axis=0)
    return total


# The three seams of a window side by side in one row of bytes: (offset, left, right). An n-gram
# is across a seam when it lies neither within its first ``left`` bytes nor from byte ``right`` on.
_LEAD_SEAM = (0, SEAM, SEAM)  # lead's last bytes | head slice's first bytes
_MIDDLE_SEAM = (2 * SEAM, SEAM, SEAM + 1)  # head slice's last | " " | tail slice's first (long turns)
_MARKER_SEAM = (4 * SEAM + 1, SEAM, SEAM)  # padding's last bytes | pad spaces + marker's first
_SEAM_ROW = 4 * SEAM + 1 + 2 * SEAM + 8  # the three seams, then room for an 8-byte read past them


def _seam_ngrams(seam: tuple[int, int, int]) -> list[tuple[int, int]]:
    """(start in the row, n) of the n-grams across a seam."""
    offset, left, right = seam
    width = right + SEAM
    return [
        (offset + first, n)
        for n in NGRAM_SIZES
        for first in range(max(left - n + 1, 0), min(right, width - n + 1))
    ]


@dataclass(frozen=True, eq=False)
class ServedSignals:
    """``has_code`` and ``task_type`` as serving computes them, for whole turn tables."""

    has_code: np.ndarray  # [script, task, template, snippet]
    classifier: TaskClassifier
    scripts: tuple[_ScriptRows, ...]  # in PROMPT_SCRIPTS order
    leads: _Pieces  # flat [script, task, template, snippet]: " " + lead + "\n\n"
    markers: _Pieces  # flat [digits of out - 1, pad]: pad spaces + "\n\n" + marker + " "

    @classmethod
    def build(cls, classifier: TaskClassifier | None = None) -> ServedSignals:
        classifier = classifier or default_task_classifier()
        table, bits = classifier.weight_table, classifier.bits
        shape = (len(PROMPT_SCRIPTS), len(TASK_TYPES), TEMPLATES_PER_TASK, 2)
        has_code = np.zeros(shape, dtype=bool)
        leads = []
        for index in np.ndindex(shape):
            script, task, template, snippet = (
                PROMPT_SCRIPTS[index[0]],
                TASK_TYPES[index[1]],
                index[2],
                index[3],
            )
            has_code[index] = lead_has_code(script, task, template, bool(snippet))
            text = visible_lead(script, task, template, bool(snippet)) + "\n\n"
            data = b" " + normalized_bytes(text)
            leads.append((text, data, _inner_sums(table, data, head=True, bits=bits), data[-SEAM:]))
        markers = []
        for digits in range(1, _MAX_OUT_DIGITS + 1):
            for pad in range(_MAX_PAD + 1):
                # digits read as 0 and the task index has one digit: only the length of ``out`` shows
                text = "\n\n" + sim_marker(10 ** (digits - 1), TASK_TYPES[0], 0.0)
                data = b" " * pad + normalized_bytes(text) + b" "
                markers.append((text, data, _inner_sums(table, data, head=False, bits=bits), data[:SEAM]))
        lead_pieces, marker_pieces = _Pieces.stack(leads), _Pieces.stack(markers)
        return cls(
            has_code=has_code,
            classifier=classifier,
            scripts=tuple(
                _ScriptRows.build(script, table, lead_pieces, marker_pieces, bits)
                for script in PROMPT_SCRIPTS
            ),
            leads=lead_pieces,
            markers=marker_pieces,
        )

    def code_flags(self, table: TurnTable) -> np.ndarray:
        return self.has_code[table.script, table.task, table.template, table.code.astype(np.int64)]

    def task_types(self, world_seed: int, table: TurnTable) -> np.ndarray:
        """``task_type`` (index into TASK_TYPES) of each row, exactly as serving reads the rendered turn."""
        sums, ngrams = self.task_type_sums(world_seed, table)
        labels = self.classifier.labels_from_sums(sums, ngrams)
        undecided = np.flatnonzero(labels < 0)
        labels[undecided] = self.classifier.predict_indices(
            _last_user_text(world_seed, table, row) for row in undecided.tolist()
        )
        return labels

    def task_type_sums(self, world_seed: int, table: TurnTable) -> tuple[np.ndarray, np.ndarray]:
        """Weight sums (``TaskClassifier.weight_table`` columns) and n-gram counts of each row's
        classifier window. Rows whose window does not have the layout above (none the workload
        makes) get NaN sums, which ``labels_from_sums`` leaves undecided."""
        lead = np.ravel_multi_index(
            (table.script, table.task, table.template, table.code.astype(np.int64)), self.has_code.shape
        )
        digits = np.searchsorted(10 ** np.arange(1, _MAX_OUT_DIGITS), table.output_tokens, side="right")
        marker_bytes = self.markers.nbytes[digits * (_MAX_PAD + 1)]
        padding = table.user_tokens * BYTES_PER_TOKEN - self.leads.nbytes[lead] - marker_bytes
        seeds = user_turn_seeds(world_seed, table.conversation_id, table.turn)
        sums = np.zeros((len(table), self.leads.sums.shape[1]))
        ngrams = np.zeros(len(table), dtype=np.int64)
        for s, script in enumerate(self.scripts):
            rows = np.flatnonzero(table.script == s)
            sums[rows], ngrams[rows] = self._window_sums(
                script, lead[rows], digits[rows], padding[rows], seeds[rows]
            )
        return sums, ngrams

    def _window_sums(
        self,
        script: _ScriptRows,
        lead: np.ndarray,
        digits: np.ndarray,
        padding: np.ndarray,
        seeds: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        bits, max_chars = self.classifier.bits, self.classifier.max_chars
        head_chars, tail_chars = window_lengths(max_chars)
        corpus = script.padding
        chars, offsets = corpus.chars, corpus.byte_offsets
        # the padding, as simulator.prompts.filler lays it out: cyclic corpus characters, then pad spaces
        start = corpus.offsets(seeds)
        cycles, rest = np.divmod(padding, corpus.nbytes)
        count = corpus.chars_within(start, rest)
        pad = rest - (offsets[start + count] - offsets[start])
        cyclic = cycles * chars + count
        marker = digits * (_MAX_PAD + 1) + np.minimum(pad, _MAX_PAD)
        lead_chars, marker_chars = self.leads.chars[lead], self.markers.chars[marker]
        long = lead_chars + cyclic + pad + marker_chars > max_chars
        # the window's padding: the head's characters and, for a long turn, the tail's
        head_count = np.where(long, head_chars - lead_chars, cyclic)
        tail_count = np.where(long, tail_chars - marker_chars - pad, 0)
        tail_first = (start + cyclic - tail_count) % chars
        head_start, head_stop = offsets[start], offsets[start + np.clip(head_count, 0, chars)]
        tail_start, tail_stop = offsets[tail_first], offsets[tail_first + np.clip(tail_count, 0, chars)]
        tail_end = np.where(long, tail_stop, head_stop)  # where the padding meets the marker
        lead_size, head_size = self.leads.featurized[lead], head_stop - head_start
        size = lead_size + head_size + long * (1 + tail_stop - tail_start) + self.markers.featurized[marker]
        valid = (
            (pad <= _MAX_PAD)
            & (head_count >= 0)
            & (head_count + tail_count <= np.minimum(cyclic, chars))
            & (head_size >= SEAM)
            & (lead_size + head_size >= HEAD_BYTES)  # head n-grams lie in the lead and the head slice
            & (~long | (tail_stop - tail_start >= SEAM))
        )

        plus = [script.first_lead + lead, script.first_marker + marker]
        minus = []
        head_end = np.clip(head_start + HEAD_BYTES - lead_size, head_start, head_stop)
        for n in NGRAM_SIZES:
            for low, high, head, when in (
                (head_start, head_stop, False, None),
                (head_start, head_end, True, None),
                (tail_start, tail_stop, False, long),
            ):
                up, down = script.inside(low, high, n, head=head)
                plus.append(up if when is None else np.where(when, up, script.zero))
                minus.append(down if when is None else np.where(when, down, script.zero))
        row = np.zeros((len(lead), _SEAM_ROW), dtype=np.uint8)
        row[:, 0:SEAM] = self.leads.seam[lead]
        row[:, SEAM : 2 * SEAM] = script.bytes_at(head_start, SEAM)
        row[:, 2 * SEAM : 3 * SEAM] = script.bytes_at(head_stop - SEAM, SEAM)
        row[:, 3 * SEAM] = ord(" ")
        row[:, 3 * SEAM + 1 : 4 * SEAM + 1] = script.bytes_at(tail_start, SEAM)
        row[:, 4 * SEAM + 1 : 5 * SEAM + 1] = script.bytes_at(tail_end - SEAM, SEAM)
        row[:, 5 * SEAM + 1 : 6 * SEAM + 1] = self.markers.seam[marker]
        # little-endian uint64 reads at every byte of a row: the n-gram at i is the low n bytes
        windows = np.ndarray((len(lead), _SEAM_ROW - 7), dtype="<u8", buffer=row, strides=(_SEAM_ROW, 1))
        head_room = HEAD_BYTES - (lead_size - SEAM)  # the lead seam's bytes within the window's head
        for seam, when in ((_LEAD_SEAM, None), (_MIDDLE_SEAM, long), (_MARKER_SEAM, None)):
            for first, n in _seam_ngrams(seam):
                keys = windows[:, first] & np.uint64((1 << (8 * n)) - 1)
                buckets = ngram_buckets(keys, head=False, bits=bits)
                plus.append(buckets if when is None else np.where(when, buckets, script.zero))
                if seam is _LEAD_SEAM:
                    heads = ngram_buckets(keys, head=True, bits=bits)
                    plus.append(np.where(first + n <= head_room, heads, script.zero))

        # each window's sums: +1 x the rows in ``plus``, -1 x those in ``minus``, as one sparse product
        terms = len(plus) + len(minus)
        combination = scipy.sparse.csr_matrix(
            (
                np.repeat([[1.0] * len(plus) + [-1.0] * len(minus)], len(lead), axis=0).ravel(),
                np.column_stack(plus + minus).ravel(),
                np.arange(0, terms * len(lead) + 1, terms),
            ),
            shape=(len(lead), len(script.rows)),
        )
        sums = np.asarray(combination @ script.rows)
        sums[~valid] = np.nan
        return sums, ngram_count(size)


def _last_user_text(world_seed: int, table: TurnTable, row: int) -> str:
    task = TASK_TYPES[table.task[row]]
    return conversation_user_turn(
        world_seed,
        int(table.conversation_id[row]),
        int(table.turn[row]),
        script=PROMPT_SCRIPTS[table.script[row]],
        task=task,
        template=int(table.template[row]),
        code=bool(table.code[row]),
        tokens=int(table.user_tokens[row]),
        output_tokens=int(table.output_tokens[row]),
        difficulty=float(table.difficulty[row]),
    )
