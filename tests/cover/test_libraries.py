"""The third-party lock libraries: pins, resolution, predictions, rows. No servers."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
import redis

from model import lock_properties
from model.config import LockConfig
from model.libraries import LIBRARIES, library_of
from properties import matrix
from properties.locks import AREA
from tasks.instrument.redis import InstrumentedRedis
from tasks.locks.builtin import load_lock

ROOT = Path(__file__).resolve().parents[2]


def test_each_library_is_pinned_once_and_installed_at_that_version() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pins = set(extras["thirdparty"])
    assert pins == {lib.pin for lib in LIBRARIES.values()}
    for lib in LIBRARIES.values():
        assert importlib.metadata.version(lib.dist) == lib.version, lib.pin


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_a_library_resolves_by_its_kind_and_by_its_adapter_path(name: str) -> None:
    lib = LIBRARIES[name]
    assert load_lock(name) is load_lock(lib.adapter)
    assert library_of(name) is library_of(lib.adapter) is lib


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_every_property_has_a_prediction_with_a_cited_cause(name: str) -> None:
    lib = LIBRARIES[name]
    assert set(lib.predictions) == set(lock_properties.PROPERTIES)
    for prop in lock_properties.PROPERTIES:
        config = LockConfig(name, "prefork", 2)
        assert lock_properties.expected(config, prop) == lib.predictions[prop][0]
        # concurrency 1 overlaps nothing, whatever the library
        assert lock_properties.expected(LockConfig(name, "solo", 1), prop) == "holds"
    assert lib.predictions["invoice-under-expiry"][0] == "violated"  # no fencing token
    release = lib.predictions["lease-mutual-exclusion"][1]
    assert ".py" in release, "the release's cause names the library's source file"


def test_the_adapter_path_as_a_plug_in_is_judged_as_a_users_lock() -> None:
    lib = LIBRARIES["celery-once"]
    config = LockConfig(lib.adapter, "prefork", 2)
    assert lock_properties.expected(config, "lease-mutual-exclusion") == "unknown"
    assert AREA.row_area(config) == "libraries"


def test_a_library_row_names_its_version_and_is_grouped_under_libraries() -> None:
    config = LockConfig("python-redis-lock", "prefork", 2)
    assert config.label() == "python-redis-lock==4.0.1/prefork/c2"
    row = config.as_dict()
    assert (row["library"], row["version"], row["backend"]) == (
        "python-redis-lock",
        "4.0.1",
        "redis",
    )
    assert AREA.row_area(config) == "libraries"
    assert AREA.row_area(LockConfig("redis-py-lock", "prefork", 2)) == "lock"
    assert "library" not in LockConfig("redis-py-lock", "prefork", 2).as_dict()


def test_ci_runs_each_library_both_ways_and_full_runs_every_shape() -> None:
    props = list(lock_properties.PROPERTIES)
    ci = [(p, c.lock) for p, c in matrix.lock_cases("ci", props) if c.library]
    assert sorted(ci) == sorted(
        (p, lib) for lib in LIBRARIES for p in ("mutual-exclusion", "lease-mutual-exclusion")
    )
    full = [c for _, c in matrix.lock_cases("full", props) if c.library]
    assert len(full) == len(LIBRARIES) * len(matrix.SHAPES_FULL) * len(props)
    # a plug-in run (check-lock) is only the plug-in's rows
    only = matrix.lock_cases("ci", props, [LIBRARIES["celery-once"].adapter])
    assert {c.lock for _, c in only} == {LIBRARIES["celery-once"].adapter}


def test_instrument_redis_swaps_a_plain_client_in_place_and_refuses_others() -> None:
    from examples.thirdparty import instrument_redis

    client = redis.Redis.from_url("redis://127.0.0.1:1/0")
    assert instrument_redis(client) is client and type(client) is InstrumentedRedis
    assert instrument_redis(client) is client  # twice is once

    class Custom(redis.Redis):
        pass

    with pytest.raises(TypeError, match="only a plain redis"):
        instrument_redis(Custom())


def _row(lib: str, prop: str, verdict: str) -> dict[str, object]:
    config = LockConfig(lib, "prefork", 2)
    expected, why = lock_properties.expected(config, prop), lock_properties.why(config, prop)
    return {
        "property": prop, "config": config.as_dict(), "label": config.label(),
        "area": AREA.row_area(config), "expected": expected, "verdict": verdict,
        "passed": verdict == expected, "reason": "as the model predicts", "why": why,
        "examples": 10, "seconds": 1.0,
    }  # fmt: skip


LIB_ROWS = [
    _row("celery-once", "mutual-exclusion", "holds"),
    _row("celery-once", "lease-mutual-exclusion", "violated"),
    _row("django-cache-lock-redis", "lease-mutual-exclusion", "violated"),
    _row("django-cache-lock-memcached", "lease-mutual-exclusion", "violated"),
]


def test_the_table_summary_gives_each_library_its_verdicts_and_causes() -> None:
    from properties.findings import library_summary

    lines = library_summary(LIB_ROWS)
    assert lines[0] == (
        "celery-once 3.0.1 (prefork/c2): mutual-exclusion holds, lease-mutual-exclusion violated"
    )
    assert "celery_once/backends/redis.py Redis.clear_lock" in lines[1]
    # one line per lock kind: the two django-cache-lock kinds are not merged
    kinds = [line for line in lines if line.startswith("django-cache-lock")]
    assert len(kinds) == 2 and "0.2.5" in kinds[0]


def test_the_page_has_a_libraries_section_with_versions_and_causes() -> None:
    from properties.report_page import render_page

    page = render_page(LIB_ROWS)
    section = page[page.index('<section id="libraries">') :]
    section = section[: section.index("</section>")]
    assert section.count('data-area="libraries"') == 3
    assert 'data-verdict="holds|violated"' in section
    assert '<td class="mono">3.0.1</td>' in section and '<td class="mono">0.2.5</td>' in section
    assert "Lock._release_owned" in section  # the cause, quoted from the source
    assert "<option>libraries</option>" in page  # the area filter
    assert '<section id="libraries">' not in render_page(LIB_ROWS[:0])
