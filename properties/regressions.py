"""Dated Celery / kombu / billiard bugs, rediscovered on the old releases that had them.

``nox -s regressions`` runs one nox venv per pin set (``PIN_SETS``): the project is
installed, then celery, kombu and billiard are pinned to the set's versions. Each
known bug (``BUGS``) has two pin sets that differ in the one package its fix touched:
``<bug>-buggy``, the last release with the bug, and ``<bug>-fixed``, the release that
fixed it. Both run the same rows (``Row``): a property search (the delivery area's
Hypothesis search, today's model) and the semantics claims that state the behaviour
the bug broke. A row on the buggy pins must be *caught*: the search fails or the
claim is refuted, and the failure says what the bug does (``Row.signature``); on the
fixed pins it must pass. The bug's issue or PR is named in each row's finding.

Each pin set's run (tests/regressions/) writes ``reports/regressions/<pin set>.json``;
``python -m properties.regressions summary`` reads them all and prints the table
(``nox -s regressions`` ends with it). Pure: nothing here imports Celery, so the
noxfile and the unit tests (tests/cover/test_regressions.py) read it anywhere.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from model.config import DeliveryConfig

REPORTS = Path("reports/regressions")
HEAD = (
    "pin set",
    "bug",
    "versions",
    "row",
    "wanted",
    "got",
    "caught after",
    "row s",
    "counterexample",
)
Side = Literal["buggy", "fixed"]
SIDES: tuple[Side, ...] = ("buggy", "fixed")
# What a row must do on each side.
WANTED: dict[Side, str] = {"buggy": "caught", "fixed": "passes"}


@dataclass(frozen=True)
class Pins:
    """The releases one venv runs, and any further pin it needs, with the reason."""

    celery: str
    kombu: str
    billiard: str
    extra: tuple[str, ...] = ()  # further requirements, e.g. "redis==4.6.0"
    why: str = ""  # why each extra pin is there

    def requirements(self) -> list[str]:
        return [
            f"celery=={self.celery}", f"kombu=={self.kombu}", f"billiard=={self.billiard}",
            *self.extra,
        ]  # fmt: skip

    def label(self) -> str:
        return f"celery {self.celery} / kombu {self.kombu} / billiard {self.billiard}"

    def as_dict(self) -> dict[str, str]:
        return {"celery": self.celery, "kombu": self.kombu, "billiard": self.billiard}


@dataclass(frozen=True)
class Row:
    """One check run on both sides of a bug: ``search`` a delivery property on
    ``config``, or check the semantics ``claim`` (properties/claims.py) on ``broker``.
    ``signature``: text the buggy side's failure must contain (a search's mismatch
    or violation lines, a refuted claim's detail), so a catch is this bug and not
    another difference between the old release and today's model."""

    kind: Literal["search", "claim"]
    name: str  # the property, or the claim's id
    signature: str
    config: DeliveryConfig | None = None  # search
    broker: str | None = None  # claim

    def __post_init__(self) -> None:
        search, claim = self.config is not None, self.broker is not None
        if (self.kind, search, claim) not in (("search", True, False), ("claim", False, True)):
            raise ValueError(f"row {self.name}: a search needs a config, a claim a broker")

    @property
    def id(self) -> str:
        """The pytest id: a claim's as tests/properties/test_semantics.py spells it."""
        if self.config is not None:
            return f"{self.name}-{self.config.label()}"
        return f"{self.name}-{self.broker}"

    def label(self) -> str:
        if self.config is not None:
            return f"{self.name} {self.config.label()}"
        return f"claim {self.name} ({self.broker})"


@dataclass(frozen=True)
class Bug:
    id: str  # the pin sets are <id>-buggy and <id>-fixed
    ref: str  # the upstream issue or PR
    title: str
    buggy: Pins
    fixed: Pins
    rows: tuple[Row, ...]
    cause: str  # the bug's source lines, and the fix's (docs/findings/regressions.md)

    def pins(self, side: Side) -> Pins:
        return self.buggy if side == "buggy" else self.fixed

    def note(self, side: Side) -> str:
        """What the finding says about the bug on this side."""
        if side == "buggy":
            return f"known bug: {self.ref} ({self.title}); present in {self.buggy.label()}"
        return f"fixed pin of {self.ref} ({self.title}): {self.fixed.label()}"


@dataclass(frozen=True)
class PinSet:
    bug: Bug
    side: Side

    @property
    def id(self) -> str:
        return f"{self.bug.id}-{self.side}"

    @property
    def pins(self) -> Pins:
        return self.bug.pins(self.side)

    def session(self) -> str:
        return f"regressions({self.id})"

    def replay(self, row: Row, scenario: str | None) -> str:
        """The command that runs this row's failure again, in this pin set's venv."""
        nox = f"nox -s {shlex.quote(self.session())} --"
        if scenario:
            return f"{nox} replay {shlex.quote(scenario)}"
        return f"{nox} -k {shlex.quote(row.id)}"


def _late_requeue(broker: str = "redis") -> DeliveryConfig:
    return DeliveryConfig(broker, "prefork", 2, acks_late=True, reject_on_worker_lost=True)  # type: ignore[arg-type]


BUGS: tuple[Bug, ...] = (
    Bug(
        "kombu-1484", "kombu PR #1484",
        "the Redis transport does not flag a restored message redelivered",
        buggy=Pins("5.2.7", "5.2.3", "3.6.4.0"), fixed=Pins("5.2.7", "5.2.4", "3.6.4.0"),
        rows=(
            Row("search", "delivery-model", "observed redelivered=False", config=_late_requeue()),
            Row("claim", "main-kill.redis", "redelivered=False", broker="redis"),
            Row("claim", "child-kill.requeue", "redelivered=False", broker="redis"),
        ),
        cause=(
            "kombu/transport/redis.py Channel._do_restore_message sets only "
            "payload['headers']['redelivered'] = True; Celery reads "
            "message.delivery_info['redelivered'] (celery/worker/request.py). 5.2.4 adds "
            "payload['properties']['delivery_info']['redelivered'] = True"
        ),
    ),
    Bug(
        "celery-7781", "celery PR #7781",
        "reject_on_worker_lost ignored: billiard wraps WorkerLostError in "
        "ExceptionWithTraceback, so Request.on_failure acks the lost job with FAILURE",
        buggy=Pins("5.3.0b1", "5.3.0", "4.1.0"), fixed=Pins("5.3.0b2", "5.3.0", "4.1.0"),
        rows=(
            Row("search", "at-least-once", "1 more delivery", config=_late_requeue()),
            Row("claim", "child-kill.requeue", "no reject with requeue", broker="redis"),
            Row("claim", "child-kill.requeue", "no reject with requeue", broker="amqp"),
        ),
        cause=(
            "celery/worker/request.py Request.on_failure tests "
            "isinstance(exc, WorkerLostError) on exc_info.exception, which billiard 4 "
            "(billiard/einfo.py ExceptionInfo.__init__) wraps in ExceptionWithTraceback; "
            "5.3.0b2 unwraps it first (`if isinstance(exc, ExceptionWithTraceback): "
            "exc = exc.exc`)"
        ),
    ),
    Bug(
        "celery-5998", "celery #5998",
        "no AMQP heartbeats while a prefork worker's warm shutdown waits for its running "
        "tasks: RabbitMQ closes the connection and redelivers a task that is still running",
        buggy=Pins("5.6.0", "5.7.0", "4.3.2"), fixed=Pins("5.6.1", "5.7.0", "4.3.2"),
        rows=(
            # The delivery properties do not draw ``term`` (a worker keeps consuming for
            # a moment after SIGTERM: docs/choices-and-limits.md), so no search here.
            Row("claim", "warm-shutdown.heartbeat", "runs ['t1', 't1#2']", broker="amqp"),
        ),
        cause=(
            "celery/concurrency/prefork.py TaskPool.on_stop calls self._pool.join() on "
            "the main thread, which runs the hub's timers (the AMQP heartbeat_check "
            "among them): none fire until every task has returned. 5.6.1 fires the "
            "timers from a thread (prefork-timer-shutdown) while the pool joins"
        ),
    ),
)  # fmt: skip

PIN_SETS: tuple[PinSet, ...] = tuple(PinSet(b, s) for b in BUGS for s in SIDES)


def pin_set(name: str) -> PinSet:
    for p in PIN_SETS:
        if p.id == name:
            return p
    known = ", ".join(p.id for p in PIN_SETS)
    raise ValueError(f"unknown pin set {name!r}: choose one of {known}")


def version_error(p: PinSet, installed: dict[str, str]) -> str | None:
    """Why this venv cannot run ``p`` (another version installed), or None."""
    wrong = [
        f"{dist} {installed.get(dist, 'missing')} (wants {want})"
        for dist, want in p.pins.as_dict().items()
        if installed.get(dist) != want
    ]
    if not wrong:
        return None
    return (
        f"pin set {p.id} needs {p.pins.label()}; this venv has {', '.join(wrong)}: "
        f"run it with nox -s {shlex.quote(p.session())}"
    )


# --- what a run found, and the summary ----------------------------------------------------


@dataclass
class Result:
    """One row on one pin set, as its JSON report holds it."""

    row: str  # Row.label()
    got: str  # caught | passes | failed otherwise | harness error
    seconds: float  # the whole row: the search, its shrinking, the attacks if it held
    catch: float | None = None  # seconds to the first failing run (a claim: its one run)
    counterexample: str = ""  # the scenario's moves, or a refuted claim's detail
    replay: str = ""
    detail: str = ""  # the failure's lines, when it is not the one wanted

    def ok(self, side: Side) -> bool:
        return self.got == WANTED[side]


def judged(row: Row, passed: bool, harness_error: bool, text: str) -> str:
    """What a row did: ``passes``; ``caught`` (it failed with the bug's signature in
    ``text``); ``failed otherwise`` (some other difference); ``harness error``."""
    if harness_error:
        return "harness error"
    if passed:
        return "passes"
    return "caught" if row.signature in text else "failed otherwise"


@dataclass
class Report:
    """A pin set's run: the versions it found installed and every row's result."""

    pin_set: str
    installed: dict[str, str]
    results: list[Result] = field(default_factory=list)

    def write(self, directory: Path = REPORTS) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.pin_set}.json"
        data = {
            "pin_set": self.pin_set, "installed": self.installed,
            "results": [r.__dict__ for r in self.results],
        }  # fmt: skip
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> Report:
        data = json.loads(path.read_text())
        return cls(data["pin_set"], data["installed"], [Result(**r) for r in data["results"]])


def _short(text: str, width: int = 70) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 3] + "..."


def summary(reports: dict[str, Report]) -> tuple[str, bool]:
    """The table of every pin set's rows and one verdict line per bug; ok when every
    buggy row was caught and every fixed row passed, on every pin set."""
    head = HEAD
    lines: list[tuple[str, ...]] = []
    verdicts: list[str] = []
    ok = True
    for bug in BUGS:
        bug_ok = True
        catch: dict[str, list[float]] = {"search": [], "claim": []}
        for side in SIDES:
            p = PinSet(bug, side)
            report = reports.get(p.id)
            by_row = {r.row: r for r in report.results} if report else {}
            for row in bug.rows:
                r = by_row.get(row.label())
                if r is None:
                    lines.append(
                        (p.id, bug.ref, p.pins.label(), row.label(), WANTED[side], "not run  <--")
                    )
                    bug_ok = False
                    continue
                mark = "" if r.ok(side) else "  <--"
                lines.append((
                    p.id, bug.ref, p.pins.label(), row.label(), WANTED[side], r.got + mark,
                    "-" if r.catch is None else f"{r.catch:.1f} s", f"{r.seconds:.1f}",
                    _short(r.counterexample),
                ))  # fmt: skip
                bug_ok = bug_ok and r.ok(side)
                if side == "buggy" and r.catch is not None:
                    catch[row.kind].append(r.catch)
        ok = ok and bug_ok
        if bug_ok:
            took = ", ".join(f"{kind} {min(found):.1f} s" for kind, found in catch.items() if found)
            verdicts.append(
                f"{bug.ref}: rediscovered: caught on {bug.buggy.label()} ({took}); "
                f"passes on {bug.fixed.label()}"
            )
        else:
            verdicts.append(f"{bug.ref}: NOT rediscovered (see the rows marked <--)")
    rows = [(*line, *[""] * (len(head) - len(line))) for line in lines]
    widths = [max(len(c) for c in col) for col in zip(head, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    table = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    table += [fmt.format(*row).rstrip() for row in rows]
    return "\n".join([*table, "", *verdicts]), ok


def _summary_main(directory: Path) -> int:
    reports = {}
    for path in sorted(directory.glob("*.json")):
        try:
            report = Report.read(path)
        except (ValueError, KeyError, TypeError) as exc:
            print(f"regressions: {path} is not a pin set's report ({exc})", file=sys.stderr)
            return 2
        reports[report.pin_set] = report
    text, ok = summary(reports)
    print(text)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m properties.regressions")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary", help="the table of every pin set's report")
    s.add_argument("directory", nargs="?", type=Path, default=REPORTS)
    sub.add_parser("list", help="the pin sets, one a line: id and requirements")
    args = parser.parse_args(argv)
    if args.command == "list":
        for p in PIN_SETS:
            print(p.id, " ".join(p.pins.requirements()))
        return 0
    return _summary_main(args.directory)


if __name__ == "__main__":
    sys.exit(main())
