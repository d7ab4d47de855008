"""Incidents: what a seed and a key make of a scenario.

An incident is drawn from (key, scenario, seed) with HMAC-SHA256, so it cannot be computed
without the key: the hidden cause, the training seed (data order, initialisation, the step
where things break) and one to three harmless decoy changes shown beside the real one in
"what changed since the last good run". A learner's key lives in their debugsim home; a class
has its own. Without a key (`run --cause`, instructors exploring) the draw uses a public key,
so it is a fresh incident, never a learner's.
"""
from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass
from typing import Any

from .scenario import Change, Scenario

PUBLIC_KEY = "debugsim-public-incidents"
MAX_DECOYS = 3


@dataclass(frozen=True)
class Incident:
    scenario: Scenario
    seed: int                           # the seed the learner was given
    cause_id: str | None                # None: the healthy base
    train_seed: int                     # seeds the training itself
    decoys: tuple[Change, ...] = ()
    changes_shown: bool = True          # False for bare runs (tests, notebooks): no change list

    @property
    def overrides(self) -> dict[str, Any]:
        """What the incident adds to the scenario's base before the cause: the training seed
        and the decoys' settings."""
        merged: dict[str, Any] = {"seed": self.train_seed}
        for decoy in self.decoys:
            merged.update(decoy.config)
        return merged

    def healthy(self) -> "Incident":
        """The same incident without its cause: last week's good run plus the decoys."""
        return Incident(self.scenario, self.seed, None, self.train_seed, self.decoys,
                        self.changes_shown)

    def change_log(self) -> list[str]:
        """The change log: the real change and the decoys, in an order that tells nothing."""
        lines = [d.log for d in self.decoys]
        if self.cause_id:
            lines += self.scenario.cause(self.cause_id).changes
        return sorted(set(lines))


def _rng(key: str, scenario: Scenario, seed: int) -> random.Random:
    digest = hmac.new(key.encode(), f"{scenario.id}/{seed}".encode(), hashlib.sha256).digest()
    return random.Random(int.from_bytes(digest, "big"))


def draw(scenario: Scenario, seed: int, key: str, cause_id: str | None = None) -> Incident:
    """The incident for (key, scenario, seed); `cause_id` forces the cause (instructors)."""
    rng = _rng(key, scenario, seed)
    drawn = rng.choice(scenario.causes).id if scenario.causes else None
    train_seed = rng.randrange(2**31)
    # one settings change and one code change always, so neither kind points at the cause;
    # never a decoy that repeats the cause's own settings (the diff must show another one)
    fault = scenario.cause(cause_id or drawn).fault.config if (cause_id or drawn) else {}
    settings = [d for d in scenario.decoys if d.config and not set(d.config) & set(fault)]
    code = [d for d in scenario.decoys if not d.config]
    decoys = [rng.choice(group) for group in (settings, code) if group]
    rest = [d for d in scenario.decoys if d not in decoys]
    if rest and len(decoys) < MAX_DECOYS and rng.random() < 0.5:
        decoys.append(rng.choice(rest))
    return Incident(scenario, seed, cause_id or drawn, train_seed, tuple(decoys))


def bare(scenario: Scenario, seed: int, cause_id: str | None = None) -> Incident:
    """A cause injected into the scenario's base as it is: no decoys, training seed = seed
    (notebooks, tests, the catalogue's own checks)."""
    return Incident(scenario, seed, cause_id, seed, (), changes_shown=False)
