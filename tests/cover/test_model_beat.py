"""The beat model (model/beat.py) on hand-written histories, and its scenario line."""

from __future__ import annotations

import pytest

from model.beat import (
    AT_LEAST_ONCE,
    AT_MOST_ONCE,
    BeatConfig,
    duplicates,
    expected_verdict,
    mismatches,
    missed,
    parse_beat_label,
)
from model.history import (
    BeatAsleep,
    BeatDue,
    BeatExited,
    BeatLocked,
    BeatQueued,
    BeatReloaded,
    BeatRow,
    BeatSaved,
    BeatSent,
    BeatStarted,
    BeatTick,
    BeatWrote,
    ClockAdvanced,
    Event,
    Expired,
    Killed,
    Paused,
    Resumed,
)
from properties.scenario import BeatScenario, decode_any
from properties.timeline import render

TWO = BeatConfig("persistent", 2)
ONE_KILL = BeatConfig("persistent", 1, "kill")
RED = BeatConfig("redbeat", 2, "pause")
DJ = BeatConfig("django", 2, "pause")
DJ_KILL = BeatConfig("django", 1, "kill")


def boot(beat: str, redbeat: bool = False, locked: bool = False) -> list[Event]:
    if redbeat:
        return [BeatStarted(beat), BeatLocked(beat) if locked else BeatAsleep(beat, "lock")]
    return [BeatStarted(beat), BeatSaved(beat), BeatAsleep(beat, "tick")]


def tick_send(beat: str, due: int, at: int | None = None) -> list[Event]:
    sent = BeatSent(beat, "e1", due, due if at is None else at)
    return [BeatTick(beat), BeatDue(beat, "e1", due), sent, BeatAsleep(beat, "tick")]


def test_two_persistent_beats_each_send_the_tick_the_model_allows_both() -> None:
    h = [*boot("b1"), *boot("b2"), ClockAdvanced(1), *tick_send("b1", 1), *tick_send("b2", 1)]
    h.append(BeatQueued("e1", 2))
    assert mismatches(TWO, h) == []
    (v,) = duplicates(h)
    assert v.executions == ("b1", "b2") and "due 00:01 sent twice" in v.message
    assert missed(TWO, h) == []


def test_a_beat_sending_what_it_already_sent_is_a_mismatch() -> None:
    h = [*boot("b1"), ClockAdvanced(1), *tick_send("b1", 1), *tick_send("b1", 1)]
    (m,) = mismatches(ONE_KILL, h)
    assert "not due for b1" in m.describe()


def test_a_restart_before_a_save_may_resend_after_a_save_may_not() -> None:
    first = [*boot("b1"), ClockAdvanced(1), *tick_send("b1", 1)]
    unsaved = [*first, Killed("b1"), BeatStarted("b1'"), BeatSaved("b1'")]
    assert mismatches(ONE_KILL, [*unsaved, BeatDue("b1'", "e1", 1)]) == []
    saved = [*first, BeatSaved("b1"), Killed("b1"), BeatStarted("b1'"), BeatSaved("b1'")]
    (m,) = mismatches(ONE_KILL, [*saved, BeatDue("b1'", "e1", 1)])
    assert "last_run_at in its memory is 00:01" in m.describe()


def test_a_shared_file_is_read_at_start_only() -> None:
    shared = BeatConfig("persistent", 2, shared_file=True)
    h = [*boot("b1"), *boot("b2"), ClockAdvanced(1), *tick_send("b1", 1), BeatSaved("b1")]
    assert mismatches(shared, [*h, *tick_send("b2", 1)]) == []  # b2's memory still says 0


def redbeat_start() -> list[Event]:
    return [
        *boot("b1", redbeat=True, locked=True), BeatAsleep("b1", "tick"),
        *boot("b2", redbeat=True),
    ]  # fmt: skip


def test_redbeat_holder_paused_inside_a_tick_sends_what_it_loaded() -> None:
    h = [
        *redbeat_start(), ClockAdvanced(1), BeatTick("b1"), BeatDue("b1", "e1", 1),
        Paused("b1"), Expired("lock"), BeatTick("b2"), BeatLocked("b2"),
        BeatDue("b2", "e1", 1), BeatSent("b2", "e1", 1, 1), BeatAsleep("b2", "tick"),
        Resumed("b1"), BeatSent("b1", "e1", 1, 1), BeatAsleep("b1", "tick"),
        BeatTick("b1"), BeatExited("b1", "LockNotOwnedError"), BeatQueued("e1", 2),
    ]  # fmt: skip
    assert mismatches(RED, h) == []
    assert len(duplicates(h)) == 1


def test_redbeat_standby_taking_a_held_lock_is_a_mismatch() -> None:
    h = [*redbeat_start(), BeatTick("b2"), BeatLocked("b2")]
    (m,) = mismatches(RED, h)
    assert "b1 holds it" in m.describe()


def test_redbeat_holder_that_lost_its_lock_must_exit_at_its_next_tick() -> None:
    h = [*redbeat_start(), ClockAdvanced(1), Expired("lock"), BeatTick("b1")]
    (m,) = mismatches(RED, [*h, BeatDue("b1", "e1", 1)])
    assert "LockNotOwnedError" in m.describe()
    assert mismatches(RED, [*h, BeatExited("b1", "LockNotOwnedError")]) == []


def test_redbeat_standby_must_take_a_free_lock() -> None:
    h = [*redbeat_start(), Expired("lock"), BeatTick("b2"), BeatAsleep("b2", "lock")]
    (m,) = mismatches(RED, h)
    assert "take the free lock" in m.describe()


def test_broker_count_must_match_the_sends() -> None:
    h = [*boot("b1"), ClockAdvanced(1), *tick_send("b1", 1), BeatQueued("e1", 2)]
    (m,) = mismatches(ONE_KILL, h)
    assert "1 messages of e1" in m.describe()


def test_a_completed_tick_that_sent_nothing_due_is_missed() -> None:
    h = [*boot("b1"), ClockAdvanced(1), BeatTick("b1"), BeatAsleep("b1", "tick")]
    (v,) = missed(ONE_KILL, h)
    assert "never sent" in v.message


def test_a_held_send_covers_the_ticks_due_while_it_was_held() -> None:
    h = [
        *boot("b1"), ClockAdvanced(1), BeatTick("b1"), BeatDue("b1", "e1", 1),
        ClockAdvanced(2), BeatSent("b1", "e1", 1, 2), BeatAsleep("b1", "tick"),
        BeatTick("b1"), BeatAsleep("b1", "tick"),
    ]  # fmt: skip
    assert missed(ONE_KILL, h) == []
    assert mismatches(ONE_KILL, h) == []


def test_a_tick_spanning_a_clock_move_owes_nothing_and_a_standby_owes_nothing() -> None:
    h = [*redbeat_start(), ClockAdvanced(1), BeatTick("b2"), BeatAsleep("b2", "lock")]
    assert missed(RED, h) == []


def dj_boot(beat: str) -> list[Event]:
    return [BeatStarted(beat), BeatAsleep(beat, "tick")]


def test_two_django_beats_each_send_the_tick_and_the_row_keeps_one_count() -> None:
    h = [*dj_boot("b1"), *dj_boot("b2"), ClockAdvanced(1), *tick_send("b1", 1)]
    h += [*tick_send("b2", 1), BeatQueued("e1", 2), BeatRow("e1", None, 0)]
    assert mismatches(DJ, h) == []
    assert len(duplicates(h)) == 1


def test_a_django_restart_reads_the_row_before_a_save_it_may_resend_after_it_may_not() -> None:
    first = [*dj_boot("b1"), ClockAdvanced(1), *tick_send("b1", 1)]
    unsaved = [*first, Killed("b1"), BeatStarted("b1'")]
    assert mismatches(DJ_KILL, [*unsaved, BeatDue("b1'", "e1", 1)]) == []
    saved = [*first, BeatWrote("b1", "e1", 1, 1), Killed("b1"), BeatStarted("b1'")]
    (m,) = mismatches(DJ_KILL, [*saved, BeatDue("b1'", "e1", 1)])
    assert "last_run_at in its memory is 00:01" in m.describe()


def test_a_django_save_writes_its_memory_and_only_what_it_sent() -> None:
    h = [*dj_boot("b1"), ClockAdvanced(1), *tick_send("b1", 1)]
    assert mismatches(DJ_KILL, [*h, BeatWrote("b1", "e1", 1, 1), BeatRow("e1", 1, 1)]) == []
    (m,) = mismatches(DJ_KILL, [*h, BeatWrote("b1", "e1", 1, 2)])
    assert "ModelEntry.save" in m.describe()
    (m,) = mismatches(DJ_KILL, [*dj_boot("b1"), BeatWrote("b1", "e1", None, 0)])
    assert "_dirty" in m.describe()
    (m,) = mismatches(DJ_KILL, [*h, BeatRow("e1", 1, 1)])  # never saved: the row is empty
    assert "last_run_at empty, 0 run(s)" in m.describe()


def test_a_django_beat_re_reads_its_rows_after_five_minutes_only() -> None:
    h: list[Event] = [*dj_boot("b1"), *dj_boot("b2"), ClockAdvanced(1), *tick_send("b1", 1)]
    (m,) = mismatches(DJ, [*h, BeatTick("b2"), BeatReloaded("b2")])
    assert "SCHEDULE_SYNC_MAX_INTERVAL" in m.describe()
    h += [*(ClockAdvanced(n) for n in range(2, 6)), BeatTick("b1"), BeatWrote("b1", "e1", 1, 1)]
    h += [BeatReloaded("b1"), BeatDue("b1", "e1", 5), BeatSent("b1", "e1", 5, 5)]
    h += [BeatWrote("b1", "e1", 5, 2), BeatAsleep("b1", "tick"), BeatTick("b2")]
    assert mismatches(DJ, [*h, BeatDue("b2", "e1", 5)]) == []  # its memory says 00:00
    # re-read, b2's memory is the row b1 saved: the tick due 00:05 is not due for it
    (m,) = mismatches(DJ, [*h, BeatReloaded("b2"), BeatDue("b2", "e1", 5)])
    assert "not due for b2" in m.describe()


def test_django_takes_no_lock_and_no_file() -> None:
    (m,) = mismatches(DJ, [*dj_boot("b1"), BeatLocked("b1")])
    assert "DatabaseScheduler takes no lock" in m.describe()
    (m,) = mismatches(DJ, [*dj_boot("b1"), BeatSaved("b1")])
    assert "keeps no schedule file" in m.describe()


def test_predictions() -> None:
    assert expected_verdict(TWO, AT_MOST_ONCE) == "violated"
    assert expected_verdict(ONE_KILL, AT_MOST_ONCE) == "violated"
    assert expected_verdict(BeatConfig("persistent", 1, "pause"), AT_MOST_ONCE) == "holds"
    assert expected_verdict(RED, AT_MOST_ONCE) == "violated"
    assert expected_verdict(BeatConfig("redbeat", 2, "kill"), AT_MOST_ONCE) == "holds"
    assert expected_verdict(TWO, AT_LEAST_ONCE) == "holds"
    assert expected_verdict(BeatConfig("django", 2), AT_MOST_ONCE) == "violated"
    assert expected_verdict(DJ_KILL, AT_MOST_ONCE) == "violated"
    assert expected_verdict(BeatConfig("django", 1, "pause"), AT_MOST_ONCE) == "holds"
    assert expected_verdict(DJ, AT_LEAST_ONCE) == "holds"


@pytest.mark.parametrize(
    "label",
    ["persistent/b2/none", "persistent/b3/shared/kill", "redbeat/b2/pause", "django/b3/kill"],
)
def test_labels_round_trip(label: str) -> None:
    assert parse_beat_label(label).label() == label


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="shared schedule file"):
        BeatConfig("redbeat", 2, shared_file=True)
    with pytest.raises(ValueError, match="a beat config reads"):
        parse_beat_label("persistent/2/none")


def test_scenario_line_round_trips() -> None:
    text = "one-send-per-tick beat redbeat/b2/pause tasks=1: advance; tick b1; pause b1; end"
    scenario = decode_any(text)
    assert isinstance(scenario, BeatScenario)
    assert scenario.encode() == text
    assert scenario.config == RED


def test_timeline_names_the_beat_and_the_tick() -> None:
    text = render([ClockAdvanced(1), BeatSent("b1'", "e1", 1, 2)])
    assert "CLOCK advances to 00:01" in text
    assert "b1'          SENT e1 (tick due 00:01) at 00:02" in text


def test_timeline_names_the_django_rows() -> None:
    text = render([BeatWrote("b1", "e1", 1, 1), BeatReloaded("b2"), BeatRow("e1", None, 0)])
    assert "b1           SAVED e1's row: last_run_at 00:01, 1 run(s)" in text
    assert "b2           re-reads every row" in text
    assert "database: e1's row: last_run_at empty, 0 run(s)" in text
