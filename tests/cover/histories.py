"""Terse histories for the model's unit tests (one mini-language for all of them)."""

from __future__ import annotations

from model.history import (
    AcquireBegin,
    AcquireEnd,
    Event,
    Expired,
    Finished,
    InvoiceCount,
    InvoiceCreated,
    Killed,
    Paused,
    Point,
    ReleaseBegin,
    ReleaseEnd,
    Restarted,
    Resumed,
    Started,
    Submitted,
)

KEY = "invoice:o1"
ORDER = "o1"


def hist(script: str) -> list[Event]:
    """Steps separated by ';' or newlines, all on KEY / ORDER:
    ``start t1 w1.c1`` (Submitted + Started), ``acq t1`` / ``no t1`` (AcquireBegin +
    AcquireEnd True / False), ``begin t1``, ``got t1``, ``refused t1``, ``rel t1 [error]``
    (ReleaseBegin + ReleaseEnd), ``rbegin t1``, ``rend t1 [error]``, ``expire``,
    ``kill P``, ``pause P``, ``resume P``, ``restart W``, ``point t1 NAME``,
    ``invoice t1``, ``done t1``, ``count N``."""
    out: list[Event] = []
    for step in script.replace("\n", ";").split(";"):
        if not step.strip():
            continue
        verb, *args = step.split()
        err = " ".join(args[1:]) or None
        match verb:
            case "start":
                out += [Submitted(args[0]), Started(args[0], args[0].split("#")[0], args[1])]
            case "acq" | "no":
                out += [AcquireBegin(args[0], KEY), AcquireEnd(args[0], KEY, verb == "acq")]
            case "begin":
                out.append(AcquireBegin(args[0], KEY))
            case "got" | "refused":
                out.append(AcquireEnd(args[0], KEY, verb == "got"))
            case "rel":
                out += [ReleaseBegin(args[0], KEY), ReleaseEnd(args[0], KEY, err)]
            case "rbegin":
                out.append(ReleaseBegin(args[0], KEY))
            case "rend":
                out.append(ReleaseEnd(args[0], KEY, err))
            case "expire":
                out.append(Expired(KEY))
            case "kill":
                out.append(Killed(args[0]))
            case "pause":
                out.append(Paused(args[0]))
            case "resume":
                out.append(Resumed(args[0]))
            case "restart":
                out.append(Restarted(args[0]))
            case "point":
                out.append(Point(args[0], args[1]))
            case "invoice":
                out.append(InvoiceCreated(args[0], ORDER))
            case "done":
                out.append(Finished(args[0], "ok"))
            case "count":
                out.append(InvoiceCount(ORDER, int(args[0])))
            case _:
                raise ValueError(f"unknown step {step!r}")
    return out
