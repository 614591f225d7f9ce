"""The findings as one page a person reads: ``reports/findings.html`` next to the JSON.

One static file, nothing fetched (CSS, JS and SVG inline), rendered by the Jinja2
templates in ``properties/templates/`` from the very rows the JSON holds: a filterable
table, each counterexample as a timeline with one lane per process (like Jepsen's
timeline.html), the semantics claims, and two plots. Rows are read defensively: a
report from an older run, or a row that is not what we expect, still gives a page.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import jinja2

from properties.timeline import GLOBAL

TEMPLATES = Path(__file__).parent / "templates"

# Verdict -> CSS class: each verdict its own colour, in the table and the timelines.
VERDICT_CLASS = {
    "holds": "holds",
    "violated": "violated",
    "model mismatch": "mismatch",
    "harness error": "error",
    "confirmed": "holds",
    "refuted": "violated",
    "not tested": "untested",
}

# Timeline geometry (px). Text is monospace, so a line's width is its length.
CHAR, PAD, ROW, HEAD, GUTTER = 6.6, 14, 22, 44, 44
LANE_MIN, LANE_MAX, GAP = 120, 340, 8  # cut wider text: the full text is in its tooltip
FIT = 1240  # shrink the lanes toward this total width, so a wide page needs no scrolling


def page_path(json_path: Path) -> Path:
    """reports/findings.json -> reports/findings.html (never the JSON itself)."""
    html = json_path.with_suffix(".html")
    return html if html != json_path else json_path.with_name(json_path.name + ".html")


def write_page(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(rows))


def render_page(rows: Any) -> str:
    """The page of ``rows``; anything that is not a list of objects counts as unreadable."""
    outcomes: list[dict[str, Any]] = []
    claims: list[dict[str, Any]] = []
    unreadable = 0 if isinstance(rows, list) else 1
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            unreadable += 1
        elif "claim" in row:
            claims.append(_claim(row, len(claims)))
        else:
            outcomes.append(_outcome(row, len(outcomes)))
    libraries = _libraries(rows if isinstance(rows, list) else [], outcomes)
    everything = outcomes + claims
    counts: dict[str, int] = {}
    for r in everything:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a template typo fails the tests, not the reader
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["verdict_class"] = lambda v: VERDICT_CLASS.get(v, "unknown")
    return env.get_template("findings.html.j2").render(
        outcomes=outcomes,
        libraries=libraries,
        claims=claims,
        unreadable=unreadable,
        counts=sorted(counts.items()),
        failed=sum(1 for r in outcomes if r["passed"] is False),
        areas=sorted({r["area"] for r in everything if r["area"]}),
        verdicts=sorted(counts),
        shown=[r for r in outcomes if r["shown"]],
        plot_found_at=_plot_found_at(outcomes),
        plot_seconds=_plot_seconds(outcomes),
    )


# --- rows as the templates read them ---------------------------------------------------


def _libraries(rows: list[Any], outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The third-party libraries' rows (area ``libraries``), one entry per library and
    pool shape: its version, each property's verdict (linked to its row), and the cause
    of each violation (the model's ``why``, which cites the library's source)."""
    by_id = {o["id"]: o for o in outcomes}
    raw = [r for r in rows if isinstance(r, dict) and "claim" not in r]
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for n, row in enumerate(raw):
        o = by_id.get(f"row-{n}")
        if o is None or o["area"] != "libraries":
            continue
        raw_config = row.get("config")
        config: dict[str, Any] = raw_config if isinstance(raw_config, dict) else {}
        lib = _text(config.get("library") or config.get("lock"))
        version = _text(config.get("version"))
        shape = f"{_text(config.get('pool'))}/c{_text(config.get('concurrency'))}"
        entry = groups.setdefault(
            (_text(config.get("lock")), version, shape),
            {"library": lib, "version": version, "shape": shape, "lock": _text(config.get("lock")),
             "verdicts": [], "causes": []},
        )  # fmt: skip
        entry["verdicts"].append(o)
        if o["verdict"] == "violated":
            entry["causes"].append(o)
    return list(groups.values())


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _label(config: Any) -> str:
    """A config as one line, for a row that has no ``label`` (an older report)."""
    if not isinstance(config, dict):
        return _text(config)
    return " ".join(f"{k}={v}" for k, v in config.items())


def _verdict(row: dict[str, Any]) -> tuple[str, str]:
    verdict = _text(row.get("verdict")) or "unknown"
    return verdict, VERDICT_CLASS.get(verdict, "unknown")


def _outcome(row: dict[str, Any], n: int) -> dict[str, Any]:
    verdict, css = _verdict(row)
    found_at = row.get("found_at")
    passed = row.get("passed")
    lanes, messages, notes = (_list(row.get(k)) for k in ("lanes", "messages", "notes"))
    return {
        "id": f"row-{n}",
        "property": _text(row.get("property")) or "?",
        "area": _text(row.get("area")),
        "label": _text(row.get("label")) or _label(row.get("config")),
        "expected": _text(row.get("expected")),
        "verdict": verdict,
        "css": css,
        "passed": passed if isinstance(passed, bool) else None,
        "reason": _text(row.get("reason")),
        "why": _text(row.get("why")),
        "examples": _text(row.get("examples")),
        "found_at": f"#{found_at}" if found_at is not None else _text(row.get("found_by")) or "-",
        "found_at_n": _number(found_at),
        "seconds": _number(row.get("seconds")),
        "notes": [_text(x) for x in notes if x],
        "messages": [_text(m) for m in messages],
        "counterexample": _text(row.get("counterexample")),
        "reproduce": _text(row.get("reproduce")),
        "error": _text(row.get("error")),
        "lanes": lanes,
        "timeline": timeline(lanes),
        "shown": bool(row.get("counterexample") or row.get("error") or lanes),
    }


def _claim(row: dict[str, Any], n: int) -> dict[str, Any]:
    verdict, css = _verdict(row)
    raw = row.get("config")
    config: dict[str, Any] = raw if isinstance(raw, dict) else {}
    broker = _text(config.get("broker"))
    summary = [f"{config[k]}" for k in ("broker", "pool") if config.get(k)]
    if config.get("fault") not in (None, "none"):
        summary.append(f"fault={config['fault']}")
    return {
        "id": f"claim-{n}",
        "claim": _text(row.get("claim")) or "?",
        "section": _text(row.get("section")),
        "statement": _text(row.get("statement")),
        "broker": broker,
        "area": "semantics",
        "label": " ".join(summary) or _label(config),
        "verdict": verdict,
        "css": css,
        "detail": _text(row.get("detail")),
        "scenario": _text(row.get("scenario")),
        "timeline": _text(row.get("timeline")),
    }


# --- a counterexample's timeline: lanes and boxes, drawn by timeline.svg.j2 ---------------


def _natural(name: str) -> tuple[Any, ...]:
    """w2 before w10, w1 before w1.c1 before w1.c2 before w1.c2' (its respawn)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _lane_title(name: str) -> str:
    if name == GLOBAL:
        return "scenario · broker"
    if re.fullmatch(r"w\d+'*", name):
        return f"{name} main"
    if re.fullmatch(r"w\d+\.c\d+'*", name):
        return f"{name} child"
    return name


def timeline(lanes: list[Any]) -> dict[str, Any] | None:
    """Where each event of a counterexample goes: one column per process (the global
    lane first), one row per event, top to bottom in history order."""
    events = [e for e in lanes if isinstance(e, dict) and isinstance(e.get("lane"), str)]
    if not events:
        return None
    names = sorted({e["lane"] for e in events}, key=lambda s: (s != GLOBAL, _natural(s)))
    widths = {name: float(LANE_MIN) for name in names}
    for e in events:
        chars = len(_box_text(e)) * CHAR + PAD
        widths[e["lane"]] = max(widths[e["lane"]], min(LANE_MAX, chars))
    cap = _cap(list(widths.values()), FIT - GUTTER - GAP * len(names))
    widths = {n: min(w, cap) for n, w in widths.items()}
    columns, x = {}, float(GUTTER)
    for name in names:
        columns[name] = {"name": name, "title": _lane_title(name), "x": x, "w": widths[name]}
        x += widths[name] + GAP
    boxes = []
    for k, e in enumerate(events):
        col = columns[e["lane"]]
        full = _box_text(e)
        fits = int((col["w"] - PAD) / CHAR)
        boxes.append(
            {
                "index": _text(e.get("index", k)),
                "x": col["x"],
                "y": HEAD + k * ROW,
                "w": col["w"],
                "cx": col["x"] + col["w"] / 2,
                "text": full if len(full) <= fits else full[: fits - 1] + "…",
                "full": full,
                "kind": _text(e.get("kind")) or "step",
                "marked": bool(e.get("marked")),
            }
        )
    spans = []  # each process's life line, from its first event to its last
    for name in names:
        ys = [b["y"] for b, e in zip(boxes, events, strict=True) if e["lane"] == name]
        col = columns[name]
        spans.append({"x": col["x"] + col["w"] / 2, "y1": min(ys), "y2": max(ys) + ROW})
    return {
        "width": x,
        "height": HEAD + len(events) * ROW + 8,
        "lanes": list(columns.values()),
        "spans": spans,
        "boxes": boxes,
        "row": ROW,
        "marked": sum(1 for b in boxes if b["marked"]),
    }


def _cap(widths: list[float], room: float) -> float:
    """The widest a lane may be for all of them to fit in ``room``: only the widest
    lanes are cut, all to one width, never below LANE_MIN."""
    if sum(widths) <= room:
        return float(LANE_MAX)
    ordered = sorted(widths)
    for k, w in enumerate(ordered):  # lanes narrower than ``w`` keep their width
        cap = (room - sum(ordered[:k])) / (len(ordered) - k)
        if cap <= w:
            return max(float(LANE_MIN), cap)
    return float(LANE_MAX)


def _box_text(e: dict[str, Any]) -> str:
    who, text = _text(e.get("who")), _text(e.get("text"))
    return f"{who}: {text.strip()}" if who else text.strip()


# --- plots: matplotlib, Agg, SVG inlined in the page ---------------------------------------

_COLOURS = {
    "holds": "#2e7d32",
    "violated": "#e08a00",
    "mismatch": "#7b1fa2",
    "error": "#c62828",
    "untested": "#757575",
    "unknown": "#757575",
}


def _plot_found_at(outcomes: list[dict[str, Any]]) -> str | None:
    rows = [r for r in outcomes if r["found_at_n"] is not None]
    return _bars(rows, "found_at_n", "examples until the first failure", "found-at")


def _plot_seconds(outcomes: list[dict[str, Any]]) -> str | None:
    rows = [r for r in outcomes if r["seconds"] is not None]
    return _bars(rows, "seconds", "seconds per row", "seconds")


def _bars(rows: list[dict[str, Any]], key: str, xlabel: str, salt: str) -> str | None:
    """A horizontal bar per row, coloured by verdict, as an SVG string (None: no data)."""
    if not rows:
        return None
    import matplotlib  # lazy: a second of import time only when a page is written
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    # Fixed hash salt: the same rows give the same SVG, and each plot its own ids.
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        fig = Figure(figsize=(8, 0.9 + 0.24 * len(rows)), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        # "$" would start matplotlib's mathtext.
        labels = [f"{r['property']}  {r['label']}".replace("$", r"\$") for r in rows]
        values = [r[key] for r in rows]
        ax.barh(range(len(rows)), values, color=[_COLOURS.get(r["css"], "#757575") for r in rows])
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.margins(y=0.5 / len(rows))
        ax.invert_yaxis()  # the table's order, top to bottom
        seen = {r["css"]: r["verdict"] for r in rows}
        ax.legend(
            handles=[Patch(color=_COLOURS.get(css, "#757575"), label=v) for css, v in seen.items()],
            fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False,
        )  # fmt: skip
        ax.set_xlabel(xlabel)
        if key == "found_at_n":  # a count of examples: whole ticks
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="x", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)  # RDF that names URLs
    return svg[svg.index("<svg") :]  # inline: no XML declaration or doctype
