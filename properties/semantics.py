"""Run one semantics row on real workers and a real broker, and check it
(properties/claims.py holds the rows)."""

from __future__ import annotations

from harness.cluster import Cluster
from harness.runs.delivery import DeliveryRun, DeliveryRunner
from model.config import DeliveryConfig
from properties.claims import Claim, ClaimResult
from properties.schedule import simplest
from properties.timeline import render


def _entries(cluster: Cluster, runner: DeliveryRunner) -> int:
    """Unacked entries of this scenario's messages (not of earlier ones)."""
    mine = cluster.controller.messages
    return sum(1 for _tag, tid, _level in runner.broker.entries() if tid in mine)


def check(cluster: Cluster, claim: Claim, broker: str) -> ClaimResult:
    config = DeliveryConfig(
        broker, claim.pool, claim.slots, acks_late=claim.ack != "early",  # type: ignore[arg-type]
        reject_on_worker_lost=claim.ack == "late+requeue", retries=claim.retries,
        max_retries=claim.max_retries, acks_on_failure=claim.acks_on_failure,
        dedup=claim.dedup, cancel_on_loss=claim.cancel_on_loss, countdown=claim.countdown,
        chord=claim.chord, gate=claim.gate, results=claim.results,
        consumer_timeout_ms=claim.consumer_timeout_ms, heartbeat=claim.heartbeat,
    )  # fmt: skip
    allowed = {"kill", "vt", "term", "quit", "drop", "ctimeout", "idle"}
    allowed |= {"reserve"} if claim.reserve else set()
    runner = DeliveryRunner(cluster, config, frozenset(allowed))
    # AMQP has no visibility timeout: what Redis waits for it for comes back at once.
    queue = [m for m in claim.moves if not (m == "vt" and broker == "amqp")]
    probes: list[int] = []
    played: list[str] = []

    def choose(enabled: list[str]) -> str:
        while queue and queue[0] == "probe":
            queue.pop(0)
            played.append("probe")
            probes.append(_entries(cluster, runner))
        if queue:
            move = queue.pop(0)
            if move not in enabled:
                raise RuntimeError(f"move {move!r} is not enabled; enabled: {enabled}")
        else:  # run what is left to its end
            move = simplest(enabled)
        played.append(move)
        return move

    shape = f"{claim.pool}/{config.concurrency}"
    label = f"{claim.id} {broker}/{claim.ack}/{shape}: " + "; ".join(claim.moves)
    try:
        run: DeliveryRun = runner.run(claim.tasks, choose)
        while queue and queue[0] == "probe":  # a probe after the last move
            queue.pop(0)
            probes.append(_entries(cluster, runner))
    except Exception as exc:
        return ClaimResult(claim, broker, "harness error", f"{type(exc).__name__}: {exc}",
                           render(cluster.controller.history.events), label)  # fmt: skip
    why_not = claim.check(run.history.events, probes)
    verdict = "confirmed" if why_not is None else "refuted"
    return ClaimResult(
        claim, broker, verdict, why_not or "as stated", render(run.history.events), label
    )
