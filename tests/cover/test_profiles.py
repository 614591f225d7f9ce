"""The suite's Hypothesis profiles: every phase a search needs, and no explain phase
(its replays are whole scenarios on real workers, outside the shrink budget;
properties/profiles.py)."""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings

from properties import profiles


@pytest.mark.parametrize("name", profiles.PROFILES)
def test_a_profile_searches_and_shrinks_but_does_not_explain(name: str) -> None:
    profiles.register()
    phases = settings.get_profile(name).phases
    assert Phase.explain not in phases
    assert {Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink} <= set(phases)
