"""The cover tests' Hypothesis settings: no wall-clock limits.

A model test's verdict must not depend on how busy the machine is: Hypothesis's
deadline and its too-slow health check time each example, and on a loaded 2-core CI
machine they failed tests whose model was right.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "cover", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("cover")
