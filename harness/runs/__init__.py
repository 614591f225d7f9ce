"""The scenario runners: one per area (lock, delivery, module state, publishing), all
on one loop (``base.Runner``): wait for quiescence, offer the enabled moves, play the
one chosen, until none is enabled."""
