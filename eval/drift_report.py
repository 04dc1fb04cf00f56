"""The drift job's three outputs: a self-contained HTML report, a JSON summary and a one-screen text.

The HTML is Evidently's own report (``Snapshot.save_html``: per-feature distributions and
drift scores, scripts inlined, no network needed) with the verdict summary on top: the
overall status, each check's status and reasons, and the tables on-call reads first (skew per
feature, the most drifted features by importance, outcomes per SKU). The JSON holds the same
numbers for machines; the text is what ``switchyard drift`` prints.
"""

from __future__ import annotations

import dataclasses
import html
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.drift_verdict import CHECKS, EXIT_CODES

if TYPE_CHECKING:
    from eval.drift import DriftRun

COLORS = {"ok": "#1b7f3b", "warning": "#b26a00", "critical": "#b3261e"}
TITLES = {"skew": "Training–serving skew", "feature_drift": "Feature drift", "outcome_drift": "Outcome drift"}


def _num(value: float, spec: str = ".3g") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _embedding_document(run: DriftRun) -> dict[str, Any] | None:
    """The prompt-embedding check (``eval.drift_embedding``) as JSON, NaN as null."""
    if run.features.embedding is None:
        return None
    values = dataclasses.asdict(run.features.embedding)
    return {key: None if isinstance(v, float) and math.isnan(v) else v for key, v in values.items()}


def summary_document(run: DriftRun) -> dict[str, Any]:
    """Everything the run found, as plain JSON."""
    return {
        "verdict": run.verdict.to_json(),
        "reference": {
            "description": run.reference.description,
            "importance_source": run.reference.importance_source,
            "rows": run.reference.frame.height,
        },
        "features": [
            {
                "name": f.name,
                "group": f.group,
                "kind": f.kind,
                "column": f.column,
                "method": f.method,
                "score": None if math.isnan(f.score) else f.score,
                "warn_threshold": f.warn_threshold,
                "critical_threshold": f.critical_threshold,
                "severity": f.severity,
                "importance": f.importance,
                "key": f.key,
                "reference_mean": None if math.isnan(f.reference_mean) else f.reference_mean,
                "current_mean": None if math.isnan(f.current_mean) else f.current_mean,
                "note": f.note,
            }
            for f in run.features.features
        ],
        "drifted_importance": run.features.drifted_importance,
        "prompt_embedding": _embedding_document(run),
        "unmatched_skus": list(run.features.unmatched_skus),
        "skew": {
            "sampled": run.skew.sampled,
            "notes": list(run.skew.notes),
            "features": [
                {
                    "name": s.name,
                    "source": s.source,
                    "compared": s.compared,
                    "mismatches": s.mismatches,
                    "rate": None if math.isnan(s.rate) else s.rate,
                    "median_ratio": None if math.isnan(s.median_ratio) else s.median_ratio,
                    "median_abs_diff": None if math.isnan(s.median_abs_diff) else s.median_abs_diff,
                    "example": s.example,
                    "severity": s.severity,
                }
                for s in run.skew.features
            ],
        },
        "outcomes": {
            "mix_distance": None if math.isnan(run.outcomes.mix_distance) else run.outcomes.mix_distance,
            "skus": [
                {
                    "sku": o.sku,
                    "reference_rows": o.reference_rows,
                    "current_rows": o.current_rows,
                    "share_reference": o.share_reference,
                    "share_current": o.share_current,
                    "ttft_median_reference": _json_float(o.ttft_median_reference),
                    "ttft_median_current": _json_float(o.ttft_median_current),
                    "ttft_ratio": _json_float(o.ttft_ratio),
                    "ttft_calibration_ratio": _json_float(o.ttft_calibration_ratio),
                    "cost_calibration_ratio": _json_float(o.cost_calibration_ratio),
                    "quality_reference": _json_float(o.quality_reference),
                    "quality_current": _json_float(o.quality_current),
                    "quality_labels": list(o.quality_labels),
                    "severity": o.severity,
                }
                for o in run.outcomes.skus
            ],
        },
        "seconds": run.seconds,
    }


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


def text_summary(run: DriftRun) -> str:
    """One screen for the terminal."""
    v = run.verdict
    lines = [
        f"drift  window {v.window_start:%Y-%m-%d %H:%M}..{v.window_end:%H:%M} UTC  {v.requests:,} requests  "
        f"router {', '.join(v.router_versions) or '-'}",
        f"reference  {run.reference.description}  ({run.reference.frame.height:,} rows; importance: "
        f"{run.reference.importance_source})",
        f"VERDICT  {v.status.upper()}  (exit {EXIT_CODES[v.status]})",
    ]
    for name in CHECKS:
        check = v.check(name)
        head = check.reasons[0] if check.reasons else ("no findings" if check.evaluated else "not evaluated")
        lines.append(f"  {TITLES[name]:<26} {check.status.upper():<9} {head}")
        lines += [f"  {'':<26} {'':<9} {reason}" for reason in check.reasons[1:4]]
    drifted = sorted(
        (f for f in run.features.features if f.compared),
        key=lambda f: -(f.score / f.warn_threshold),
    )[:6]
    lines.append(
        "top drift  "
        + "  ".join(f"{f.name}{'*' if f.key else ''} {f.score:.3f}/{f.warn_threshold:g}" for f in drifted)
        + "   (* key feature; score/warning threshold)"
    )
    embedding = run.features.embedding
    if embedding is not None and embedding.compared:
        lines.append(
            f"prompt embedding  domain-classifier AUC {embedding.auc:.3f} (warning {embedding.warn_threshold:g}, "
            f"critical {embedding.critical_threshold:g}); mean moved {embedding.mean_distance:.3f}"
        )
    flagged = [s for s in run.skew.features if s.mismatches]
    compared = sum(1 for s in run.skew.features if s.compared)
    lines.append(
        f"skew       {compared} feature checks on {run.skew.sampled:,} sampled requests; "
        + (", ".join(f"{s.name} {s.rate:.1%}" for s in flagged[:5]) if flagged else "no mismatches")
    )
    judged = [o for o in run.outcomes.skus if o.severity != "ok"] or list(run.outcomes.skus[:3])
    lines.append(
        "SKUs       "
        + "  ".join(
            f"{o.sku} {o.share_current:.0%} ttft×{_num(o.ttft_ratio, '.2f')} calib×{_num(o.ttft_calibration_ratio, '.2f')}"
            f" {o.severity}"
            for o in judged[:4]
        )
    )
    outputs = [str(p) for p in (run.html, run.json) if p is not None]
    if outputs:
        lines.append("report     " + "  ".join(outputs))
    if run.verdict_file is not None:
        lines.append(f"verdict    {run.verdict_file} (history: {v.verdict_id})")
    lines.append("took       " + "  ".join(f"{k} {s:.1f}s" for k, s in run.seconds.items()))
    return "\n".join(lines)


def _table(headers: list[str], rows: list[list[str]], severities: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        severity = severities[i] if severities else "ok"
        style = f' style="color:{COLORS[severity]};font-weight:600"' if severity != "ok" else ""
        body.append("<tr" + style + ">" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    return f'<table class="sy"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def summary_html(run: DriftRun) -> str:
    """The verdict section put on top of Evidently's report."""
    v = run.verdict
    checks = []
    for name in CHECKS:
        check = v.check(name)
        reasons = "".join(f"<li>{html.escape(r)}</li>" for r in check.reasons) or "<li>no findings</li>"
        checks.append(
            f'<div class="sy-check" data-check="{name}" data-status="{check.status}">'
            f'<h3><span class="sy-badge" style="background:{COLORS[check.status]}">{check.status.upper()}</span> '
            f"{html.escape(TITLES[name])}</h3><ul>{reasons}</ul></div>"
        )
    skew = _table(
        ["feature", "offline source", "compared", "mismatch rate", "served/offline", "example"],
        [
            [s.name, s.source, f"{s.compared:,}", _num(s.rate, ".1%"), _num(s.median_ratio), s.example]
            for s in run.skew.features
        ],
        [s.severity for s in run.skew.features],
    )
    features = sorted(run.features.features, key=lambda f: (-f.importance, f.name))
    drift = _table(
        [
            "feature",
            "key",
            "importance",
            "test",
            "score",
            "warning / critical",
            "reference mean",
            "current mean",
        ],
        [
            [
                f.name,
                "yes" if f.key else "",
                f"{f.importance:.1%}",
                f"{f.method} on {f.column}",
                _num(f.score, ".3f") if f.compared else f.note,
                f"{f.warn_threshold:g} / {f.critical_threshold:g}",
                _num(f.reference_mean, ",.4g"),
                _num(f.current_mean, ",.4g"),
            ]
            for f in features
        ],
        [f.severity for f in features],
    )
    skus = _table(
        [
            "SKU",
            "share ref → now",
            "requests ref / now",
            "TTFT median ref → now",
            "TTFT obs/pred vs ref",
            "cost obs/pred vs ref",
            "quality (observed − predicted) ref → now"
            if run.outcomes.calibrated
            else "quality (share good) ref → now",
        ],
        [
            [
                o.sku,
                f"{o.share_reference:.1%} → {o.share_current:.1%}",
                f"{o.reference_rows:,} / {o.current_rows:,}",
                f"{_num(o.ttft_median_reference, ',.0f')} → {_num(o.ttft_median_current, ',.0f')} ms",
                "×" + _num(o.ttft_calibration_ratio, ".2f"),
                "×" + _num(o.cost_calibration_ratio, ".2f"),
                f"{_num(o.quality_reference, '+.3f')} → {_num(o.quality_current, '+.3f')}",
            ]
            for o in run.outcomes.skus
        ],
        [o.severity for o in run.outcomes.skus],
    )
    style = (
        "<style>#switchyard-drift{font-family:system-ui,sans-serif;margin:16px;padding:16px;border:3px solid "
        f"{COLORS[v.status]};border-radius:8px;background:#fff}}#switchyard-drift table.sy{{border-collapse:collapse;"
        "font-size:13px;margin:8px 0}}#switchyard-drift table.sy td,#switchyard-drift table.sy th{border:1px solid "
        "#ccc;padding:3px 6px;text-align:left}.sy-badge{color:#fff;padding:2px 8px;border-radius:4px}</style>"
    )
    return (
        f'{style}<section id="switchyard-drift" data-status="{v.status}">'
        f'<h1><span class="sy-badge" style="background:{COLORS[v.status]}">{v.status.upper()}</span> '
        f"Switchyard drift report</h1>"
        f"<p>Window {v.window_start:%Y-%m-%d %H:%M}..{v.window_end:%Y-%m-%d %H:%M} UTC · {v.requests:,} served "
        f"requests · router {html.escape(', '.join(v.router_versions) or '-')} · verdict "
        f"<code>{html.escape(v.verdict_id)}</code></p>"
        f"<p>Reference: {html.escape(run.reference.description)} ({run.reference.frame.height:,} rows); "
        f"feature importance: {html.escape(run.reference.importance_source)}. "
        "What to do: <code>docs/runbooks/drift.md</code>.</p>"
        + "".join(checks)
        + f"<h2>Skew per feature</h2>{skew}<h2>Outcomes per SKU</h2>{skus}"
        f"<h2>Drift per feature (by importance)</h2>{drift}"
        "<p>Below: Evidently's data drift report (distributions and scores per feature). Its "
        "'Dataset Drift' line counts drifted columns unweighted; the verdict above weighs them by the "
        "model's importance.</p></section>"
    )


def write_html(run: DriftRun, snapshot: Any, path: Path) -> Path:
    """Evidently's report with the verdict section inserted right after ``<body>``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = summary_html(run)
    if snapshot is None:
        document = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>drift</title></head><body>{summary}</body></html>"
    else:
        with tempfile.TemporaryDirectory(prefix="switchyard-drift-") as folder:
            evidently = Path(folder) / "evidently.html"
            snapshot.save_html(str(evidently))
            document = evidently.read_text(encoding="utf-8")
        at = document.find("<body")
        at = document.find(">", at) + 1 if at >= 0 else 0
        document = document[:at] + summary + document[at:]
    document = document.replace("<title>", "<title>Switchyard drift · ", 1)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(path)
    return path
