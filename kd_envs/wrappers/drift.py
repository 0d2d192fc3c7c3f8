"""Context drift: the hidden parameters of an environment change over training, on a schedule.

An agent trained on a drifting environment meets catastrophic interference inside one task: what it
learns in one context can overwrite what it knew of another, and a schedule that brings an earlier
context back (``cyclic``) shows whether it was forgotten.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

DRIFT_KINDS = ("none", "abrupt", "cyclic", "smooth")
PHASE_UNITS = ("episodes", "steps")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class DriftSchedule:
    """When and how the context of a :class:`ContextDrift` env changes.

    Parameters
    ----------
    kind
        ``"none"`` (the context stays ``context``), ``"abrupt"`` (at a phase end, a context drawn
        uniformly among the others), ``"cyclic"`` (at a phase end, the next context in order, so earlier
        ones return) or ``"smooth"`` (parameters move every step between consecutive contexts).
    phase_length
        How long a phase lasts, in ``phase_unit``; an integer >= 1.
    phase_unit
        ``"episodes"`` or ``"steps"`` (``"smooth"`` needs ``"steps"``).
    context
        Index of the context the schedule starts in.
    """

    kind: str = "none"
    phase_length: int = 10
    phase_unit: str = "episodes"
    context: int = 0

    def __post_init__(self) -> None:
        if self.kind not in DRIFT_KINDS:
            raise ValueError(
                f"DriftSchedule: kind={self.kind!r} (the env's drift kwarg); expected one of {DRIFT_KINDS}"
            )
        if not _is_int(self.phase_length) or self.phase_length < 1:
            raise ValueError(f"DriftSchedule: phase_length={self.phase_length!r}; expected an integer >= 1")
        if self.phase_unit not in PHASE_UNITS:
            raise ValueError(f"DriftSchedule: phase_unit={self.phase_unit!r}; expected one of {PHASE_UNITS}")
        if self.kind == "smooth" and self.phase_unit != "steps":
            raise ValueError(
                f"DriftSchedule: phase_unit={self.phase_unit!r} with kind='smooth'; expected phase_unit='steps' "
                "(a smooth drift moves the parameters every step)"
            )
        if not _is_int(self.context) or self.context < 0:
            raise ValueError(f"DriftSchedule: context={self.context!r}; expected an integer >= 0 (a context index)")


def _plain_context(index: int, params: Mapping[str, Any]) -> dict[str, int | float]:
    """A context as a dict of plain Python numbers (ints stay ints), so infos and logs hold no NumPy types."""
    if not isinstance(params, Mapping) or not params:
        raise ValueError(f"ContextDrift: contexts[{index}]={params!r}; expected a non-empty mapping of name -> number")
    out: dict[str, int | float] = {}
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"ContextDrift: contexts[{index}][{name!r}]={value!r}; expected a number")
        out[str(name)] = int(value) if isinstance(value, numbers.Integral) else float(value)
    return out


class ContextDrift(gym.Wrapper, gym.utils.RecordConstructorArgs):
    r"""Changes the hidden context of the wrapped env on a :class:`DriftSchedule`.

    The wrapped env's ``unwrapped`` env must have a public ``set_context(params: Mapping[str, float])``;
    a ``"smooth"`` schedule also needs it to declare ``supports_smooth_drift = True`` (a class
    attribute), as only some envs can change their parameters inside an episode. Every context is
    applied once here, so a bad one fails when the env is made, not hours into training.

    This wrapper owns the schedule: its counters and its random number generator (for ``"abrupt"``).
    ``reset(seed=s)`` restarts the whole schedule (counters to zero, the starting context, the generator
    re-seeded from ``s``), so one seed reproduces the whole sequence of contexts; a reset without a seed
    continues it (the very first one seeds the generator randomly).

    ## Schedules
    K is the number of contexts, c0 = ``schedule.context``, L = ``schedule.phase_length``.

    * ``"none"``: always context c0.
    * ``"abrupt"``: a phase lasts L units (episodes begun, or steps taken). The context switches at the
      first reset after the phase has lasted at least L units, to one drawn uniformly among the other
      K - 1 contexts.
    * ``"cyclic"``: the same timing; the next context is (current + 1) mod K, so earlier contexts
      return and forgetting shows.
    * ``"smooth"`` (L in steps): the parameters move every step, inside episodes too. With t the steps
      taken since the seeded reset, p = t / L, i = floor(p), w = p - i, the step about to be taken uses
      (1 - w) · contexts[(c0 + i) mod K] + w · contexts[(c0 + i + 1) mod K]; its phase is i and its
      context (c0 + i) mod K. Every context must name the same parameters.

    ## Info
    ``reset`` and every ``step`` add, as plain Python types:

    * ``"context"`` (int): index of the context in effect,
    * ``"phase"`` (int): 0-based index of the phase since the schedule (re)started,
    * ``"context_params"`` (dict name -> number): the parameters in effect; for a step, those that
      governed it (for ``"smooth"`` they are set just before the step's dynamics).

    ## Visible context
    With ``visible_context=True`` the observation (a 1-D ``Box``) is followed by K weights in [0, 1]:
    the one-hot of the context in effect, or, under ``"smooth"``, 1 − w on context (c0 + i) mod K and w
    on the next, as CARL makes the context part of the observation. Otherwise the context is hidden.

    A smooth schedule sets its interpolated parameters every step through the unwrapped env's
    ``set_context_unchecked`` when it has one (every context was checked once here, and so are the
    values between two of them), else through ``set_context``: all of them at a reset and where a
    segment between two contexts begins, then only those that move between the segment's two ends.

    Parameters
    ----------
    env
        The env to wrap.
    contexts
        The K contexts, each a mapping of parameter name -> number passed to ``set_context``.
    schedule
        When the context changes: a :class:`DriftSchedule` or a dict of its fields. The wrapper records its
        arguments as plain JSON (the schedule as that dict), so an env's spec survives
        ``EnvSpec.to_json`` / ``from_json`` and ``gym.make`` rebuilds the wrapper from it.
    visible_context
        Append the context's weights to the observation (see Visible context).
    """

    def __init__(
        self,
        env: gym.Env,
        contexts: Sequence[Mapping[str, float]],
        schedule: DriftSchedule | Mapping[str, Any] = DriftSchedule(),
        visible_context: bool = False,
    ):
        gym.Wrapper.__init__(self, env)
        base = env.unwrapped
        if not callable(getattr(base, "set_context", None)):
            raise TypeError(
                f"ContextDrift: {type(base).__name__} has no set_context(params) method; the unwrapped env must "
                "expose one to have its context changed"
            )
        if isinstance(schedule, Mapping):  # the form a spec stored as JSON gives back
            try:
                schedule = DriftSchedule(**schedule)
            except TypeError:
                raise TypeError(f"ContextDrift: schedule={schedule!r}; expected a DriftSchedule or its fields "
                                f"{[f.name for f in fields(DriftSchedule)]}") from None  # fmt: skip
        if not isinstance(schedule, DriftSchedule):
            raise TypeError(f"ContextDrift: schedule={schedule!r}; expected a DriftSchedule")
        if isinstance(contexts, (str, bytes)) or not isinstance(contexts, Sequence):
            raise ValueError(f"ContextDrift: contexts={contexts!r}; expected a list of mappings of name -> number")
        self.contexts = tuple(_plain_context(i, c) for i, c in enumerate(contexts))
        # Recorded as plain JSON (the checked contexts, the schedule's fields), so that the env's spec survives
        # EnvSpec.to_json / from_json and gym.make rebuilds this wrapper from it.
        gym.utils.RecordConstructorArgs.__init__(self, contexts=[dict(c) for c in self.contexts],
                                                 schedule=asdict(schedule),
                                                 visible_context=bool(visible_context) if isinstance(
                                                     visible_context, np.bool_) else visible_context)  # fmt: skip
        self.schedule = schedule
        n = len(self.contexts)
        if n == 0:
            raise ValueError("ContextDrift: contexts=[]; expected at least one context")
        if schedule.context >= n:
            raise ValueError(
                f"DriftSchedule: context={schedule.context}; expected an index in [0, {n}), as there are {n} contexts"
            )
        if schedule.kind != "none" and n < 2:
            raise ValueError(
                f"DriftSchedule: kind={schedule.kind!r} with 1 context; expected at least 2 contexts to drift between"
            )
        if schedule.kind == "smooth":
            if not getattr(base, "supports_smooth_drift", False):
                raise ValueError(
                    f"DriftSchedule: kind='smooth' on {type(base).__name__}, whose context only changes at reset "
                    "(it does not declare supports_smooth_drift = True); expected one of ('none', 'abrupt', 'cyclic')"
                )
            for i, params in enumerate(self.contexts):
                if set(params) != set(self.contexts[0]):
                    raise ValueError(
                        f"ContextDrift: contexts[{i}] names {sorted(params)} but contexts[0] names "
                        f"{sorted(self.contexts[0])}; a smooth drift interpolates, so every context must name the same"
                    )
        for params in self.contexts:
            base.set_context(params)
        if not isinstance(visible_context, (bool, np.bool_)):
            raise ValueError(f"ContextDrift: visible_context={visible_context!r}; expected True or False")
        self.visible_context = bool(visible_context)
        if self.visible_context:
            space = env.observation_space
            if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
                raise ValueError(
                    f"ContextDrift: visible_context=True with observation space {space}; expected a 1-D Box to "
                    "append the context's weights to"
                )
            self.observation_space = gym.spaces.Box(
                np.concatenate([space.low, np.zeros(n, space.dtype)]),
                np.concatenate([space.high, np.ones(n, space.dtype)]),
                dtype=space.dtype,
            )
            self._weights = np.zeros(n, space.dtype)
        self._set_smoothly = getattr(base, "set_context_unchecked", base.set_context)
        # The smooth schedule, per pair of consecutive contexts: the parameters that stay, and
        # (name, start, change) of those that move, so a step interpolates only what moves.
        self._segments = []
        if schedule.kind == "smooth":
            for k, here in enumerate(self.contexts):
                there = self.contexts[(k + 1) % n]
                moving = tuple((name, float(here[name]), float(there[name]) - float(here[name]))
                               for name in here if there[name] != here[name])  # fmt: skip
                self._segments.append(({name: here[name] for name in here if there[name] == here[name]}, moving))
        self._w = 0.0
        self._smooth = schedule.kind == "smooth"
        # The segment whose fixed parameters the env holds (set by reset): within it, a step sets only
        # the parameters that move.
        self._applied_segment: int | None = None
        self._rng: np.random.Generator | None = None  # seeded at the first reset
        self._restart()
        base.set_context(self._params)
        self._applied_segment = self._context

    # -- read-only state ---------------------------------------------------------------------------
    @property
    def context(self) -> int:
        """Index of the context in effect."""
        return self._context

    @property
    def phase(self) -> int:
        """0-based index of the phase since the schedule (re)started."""
        return self._phase

    @property
    def context_params(self) -> dict[str, int | float]:
        """The parameters in effect (a copy)."""
        return dict(self._params)

    @property
    def n_contexts(self) -> int:
        """K, the number of contexts."""
        return len(self.contexts)

    @property
    def total_steps(self) -> int:
        """Steps taken since the schedule (re)started."""
        return self._total_steps

    @property
    def episodes(self) -> int:
        """Episodes begun (resets) since the schedule (re)started, the current one included."""
        return self._episodes

    # -- schedule ----------------------------------------------------------------------------------
    def _restart(self) -> None:
        self._total_steps = self._episodes = 0
        self._phase_steps = self._phase_episodes = 0
        self._phase = 0
        self._context = self.schedule.context
        self._params = dict(self.contexts[self._context])
        if self.schedule.kind == "smooth":
            self._move_smoothly()

    def _end_phase_if_due(self) -> None:
        """At a reset: start the next phase of an abrupt or cyclic schedule once this one has lasted long enough."""
        kind, n = self.schedule.kind, len(self.contexts)
        units = self._phase_episodes if self.schedule.phase_unit == "episodes" else self._phase_steps
        if kind not in ("abrupt", "cyclic") or units < self.schedule.phase_length:
            return
        if kind == "cyclic":
            self._context = (self._context + 1) % n
        else:
            others = [k for k in range(n) if k != self._context]
            self._context = others[int(self._rng.integers(len(others)))]
        self._phase += 1
        self._phase_steps = self._phase_episodes = 0
        self._params = dict(self.contexts[self._context])

    def _move_smoothly(self) -> None:
        """Set the smooth schedule's parameters for the step about to be taken."""
        schedule = self.schedule
        position = self._total_steps / schedule.phase_length
        i = int(position)  # floor: position >= 0
        w = position - i
        context = (schedule.context + i) % len(self._segments)
        self._phase, self._context, self._w = i, context, w
        fixed, moving = self._segments[context]
        # Fresh dicts each step (never mutated afterwards), so the info may hold one without a copy.
        params, moved = fixed.copy(), {}
        for name, start, change in moving:
            params[name] = moved[name] = start + w * change
        self._params, self._moved = params, moved

    def _with_context(self, info: dict[str, Any]) -> dict[str, Any]:
        # Added in place, as Gymnasium's RecordEpisodeStatistics adds its "episode".
        info["context"], info["phase"] = self._context, self._phase
        info["context_params"] = self._params if self._smooth else dict(self._params)
        return info

    def _observe(self, obs: Any) -> Any:
        """The observation with the context's weights appended when the context is visible."""
        if not self.visible_context:
            return obs
        weights = self._weights
        weights[:] = 0.0
        if self.schedule.kind == "smooth":
            weights[self._context] = 1.0 - self._w
            weights[(self._context + 1) % len(self.contexts)] += self._w
        else:
            weights[self._context] = 1.0
        return np.concatenate([obs, weights])

    # -- gymnasium API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None or self._rng is None:
            # A seed restarts the schedule; so does the first reset, with a random seed when none is given.
            self._rng, _ = seeding.np_random(seed)
            self._restart()
        elif self.schedule.kind == "smooth":
            self._move_smoothly()
        else:
            self._end_phase_if_due()
        self._episodes += 1
        self._phase_episodes += 1
        # Before the inner reset: some envs (ALE) only take a new context in at reset.
        self.env.unwrapped.set_context(self._params)
        self._applied_segment = self._context
        obs, info = self.env.reset(seed=seed, options=options)
        return self._observe(obs), self._with_context(info)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._smooth:
            self._move_smoothly()
            # All the parameters where a segment begins, then only those that move (the others are in effect).
            if self._applied_segment == self._context:
                self._set_smoothly(self._moved)
            else:
                self._set_smoothly(self._params)
                self._applied_segment = self._context
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._total_steps += 1
        self._phase_steps += 1
        if self.visible_context:
            obs = self._observe(obs)
        return obs, reward, terminated, truncated, self._with_context(info)
