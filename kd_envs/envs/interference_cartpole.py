"""InterferenceCartPole-v0: CartPole whose hidden physics drift over training."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import gymnasium as gym
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from kd_envs.envs.arguments import check_render_mode
from kd_envs.wrappers.drift import ContextDrift, DriftSchedule

CARTPOLE_PARAMETERS = ("gravity", "masscart", "masspole", "length", "force_mag", "push_direction")
_STANDARD = {"gravity": 9.8, "masscart": 1.0, "masspole": 0.1, "length": 0.5, "force_mag": 10.0, "push_direction": 1.0}
# The "physics" presets: the same task under other hidden physics (one policy can serve them all).
CARTPOLE_CONTEXT_NAMES = ("standard", "long_heavy_pole", "strong_gravity_weak_push")
CARTPOLE_CONTEXTS = (
    MappingProxyType(dict(_STANDARD)),
    MappingProxyType({**_STANDARD, "masspole": 0.5, "length": 1.0}),
    MappingProxyType({**_STANDARD, "gravity": 15.0, "force_mag": 7.0}),
)
# The "conflicting" presets: the action pushes the other way, so the same state needs the opposite
# action; a single Q-function must overwrite one context to learn the other.
CARTPOLE_CONFLICTING_CONTEXT_NAMES = ("standard", "reversed_push")
CARTPOLE_CONFLICTING_CONTEXTS = (
    MappingProxyType(dict(_STANDARD)),
    MappingProxyType({**_STANDARD, "push_direction": -1.0}),
)
CONTEXT_PRESETS = {"physics": CARTPOLE_CONTEXTS, "conflicting": CARTPOLE_CONFLICTING_CONTEXTS}
# Where a context parameter is held when it is not an attribute of its own name (force_mag's sign is push_direction).
_ATTRIBUTES = {"force_mag": "_force_magnitude"}


class InterferenceCartPoleEnv(CartPoleEnv):
    r"""
    ## Description
    Gymnasium's CartPole (Barto, Sutton and Anderson, 1983) whose physical parameters are a hidden
    *context* that changes over training on a drift schedule, to study catastrophic interference inside
    one task: a policy tuned to one context may be overwritten while learning another, and a schedule
    that brings the first back shows whether it was forgotten. ``gym.make("InterferenceCartPole-v0")``
    returns this env inside :class:`kd_envs.wrappers.ContextDrift`, which owns the schedule and calls
    :meth:`set_context`.

    The contexts are dicts over ``gravity``, ``masscart``, ``masspole``, ``length`` (half the pole's
    length), ``force_mag`` and ``push_direction`` (+1: action 1 pushes right, as CartPole-v1; −1: it
    pushes left; a value in [−1, 1] scales the push, which a smooth drift passes through). Two sets
    of presets, chosen by ``contexts``:

    ``"physics"`` (the default, ``CARTPOLE_CONTEXTS``, names in ``CARTPOLE_CONTEXT_NAMES``): the same
    task under other hidden physics, which one policy can mostly serve.

    | # | name                       | gravity | masscart | masspole | length | force_mag | push_direction |
    |---|----------------------------|---------|----------|----------|--------|-----------|----------------|
    | 0 | `standard` (CartPole-v1)   | 9.8     | 1.0      | 0.1      | 0.5    | 10.0      | 1              |
    | 1 | `long_heavy_pole`          | 9.8     | 1.0      | 0.5      | 1.0    | 10.0      | 1              |
    | 2 | `strong_gravity_weak_push` | 15.0    | 1.0      | 0.1      | 0.5    | 7.0       | 1              |

    ``"conflicting"`` (``CARTPOLE_CONFLICTING_CONTEXTS``): contexts that need opposite actions in the
    same states, so a single Q-function must overwrite one to learn the other and a method that
    divides contexts can keep both.

    | # | name            | push_direction | (the rest)   |
    |---|-----------------|----------------|--------------|
    | 0 | `standard`      | 1              | CartPole-v1  |
    | 1 | `reversed_push` | −1             | CartPole-v1  |

    ## Action Space
    ``Discrete(2)``: 0 pushes the cart left, 1 pushes it right (``push_direction`` = 1, as
    CartPole-v1; reversed when it is −1), with force ``force_mag``.

    ## Observation Space
    ``Box((4,), float32)``, identical to CartPole-v1, when the context is hidden (the default; the info
    reveals it). With ``visible_context=True`` the K weights of the contexts in effect follow, as CARL
    appends its context features: ``Box((4 + K,), float32)``, the one-hot of the context (a smooth
    drift's two interpolation weights, 1 − w and w), each in [0, 1].

    | Num | Observation           | Min                 | Max               |
    |-----|-----------------------|---------------------|-------------------|
    | 0   | Cart Position         | -4.8                | 4.8               |
    | 1   | Cart Velocity         | -Inf                | Inf               |
    | 2   | Pole Angle            | ~ -0.418 rad (-24°) | ~ 0.418 rad (24°) |
    | 3   | Pole Angular Velocity | -Inf                | Inf               |

    ## Rewards
    +1 for every step taken, the terminating step included, as CartPole-v1.

    ## Starting State
    Every observation uniform in (-0.05, 0.05), drawn from the env's ``np_random``.

    ## Episode End
    1. Termination: the pole angle leaves ±12°.
    2. Termination: the cart position leaves ±2.4.
    3. Truncation: 500 steps (``max_episode_steps`` of the registration).

    ## Drift
    With K contexts, c0 = ``context`` and L = ``phase_length``:

    | `drift`    | the context                                                                               |
    |------------|-------------------------------------------------------------------------------------------|
    | `"none"`   | always c0                                                                                 |
    | `"abrupt"` | at the first reset after a phase has lasted L units, one drawn uniformly among the others |
    | `"cyclic"` | at the first reset after a phase has lasted L units, the next one: (current + 1) mod K    |
    | `"smooth"` | moves every step (L in steps): see below                                                  |

    Smooth: with t the steps taken since the seeded reset, p = t / L, i = floor(p) and w = p − i, the step
    about to be taken uses (1 − w)·contexts[(c0 + i) mod K] + w·contexts[(c0 + i + 1) mod K]; its phase
    is i and its context (c0 + i) mod K.

    A unit is an episode begun or a step taken (``phase_unit``). ``reset(seed=s)`` restarts the schedule
    (the abrupt draws come from a generator seeded from ``s``), so one seed reproduces the whole
    sequence; a reset without a seed continues it.

    ``info`` at reset and at every step holds ``"context"`` (int, the context's index), ``"phase"``
    (int, 0-based) and ``"context_params"`` (dict of the five parameters in effect; at a step, those
    that governed it).

    ## Arguments
    | kwarg          | default      | meaning                                                               |
    |----------------|--------------|-----------------------------------------------------------------------|
    | `drift`        | `"none"`     | `"none"`, `"abrupt"`, `"cyclic"` or `"smooth"` (see Drift)            |
    | `contexts`     | `"physics"`  | `"physics"` or `"conflicting"` (presets), or a list of dicts of       |
    |                |              | parameters (a missing one: standard); None: `"physics"`               |
    | `visible_context` | False     | append the context's one-hot (weights) to the observation             |
    | `phase_length` | 10           | L, the length of a phase, an integer >= 1                             |
    | `phase_unit`   | `"episodes"` | `"episodes"` or `"steps"` (`"smooth"` needs `"steps"`)                |
    | `context`      | 0            | c0, index of the starting context                                     |
    | `render_mode`  | None         | None, `"human"` or `"rgb_array"`, as CartPole-v1                      |

    Errors name the bad kwarg, its value and what is allowed: an unknown ``drift``, ``phase_length`` < 1,
    ``"smooth"`` with episodes, ``context`` out of range, an empty ``contexts``, an unknown preset or
    neither a preset nor a list, a drift with one context, an unknown parameter name, a parameter that is
    not a finite number > 0 (``push_direction``: in [−1, 1]), a ``visible_context`` that is not a bool, or
    a ``render_mode`` outside ``metadata["render_modes"]``.

    ``env.spec`` stores as JSON (``EnvSpec.to_json``) under every drift schedule, and
    ``gym.make(EnvSpec.from_json(...))`` makes the same env again. The ids are registered when ``kd_envs``
    is imported; a process that has not imported it, such as a worker of SB3's ``SubprocVecEnv``
    (started by forkserver or spawn), makes the env as ``gym.make("kd_envs:InterferenceCartPole-v0")``.

    ## Version History
    * v0: initial version; ``push_direction``, the ``"conflicting"`` presets and ``visible_context``
      added later (the physics presets and their dynamics unchanged; their info now also reports
      ``push_direction``); later, without changing any episode: unknown render modes refused by name,
      the spec's JSON round trip.
    """

    supports_smooth_drift = True

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        self._force_magnitude, self.push_direction = float(self.force_mag), 1.0

    @property
    def context_params(self) -> dict[str, float]:
        """The six parameters in effect."""
        params = {name: float(getattr(self, name)) for name in CARTPOLE_PARAMETERS[:4]}
        return {**params, "force_mag": self._force_magnitude, "push_direction": float(self.push_direction)}

    def set_context(self, params: Mapping[str, float]) -> None:
        """Set any of ``gravity, masscart, masspole, length, force_mag`` (each a finite number > 0) and
        ``push_direction`` (a number in [−1, 1]).

        Takes effect at the next step, also inside an episode. Nothing is set unless all are valid.
        """
        unknown = sorted(set(params) - set(CARTPOLE_PARAMETERS))
        if unknown:
            raise ValueError(
                f"InterferenceCartPole-v0: unknown context parameter(s) {unknown}; expected names among "
                f"{CARTPOLE_PARAMETERS}"
            )
        for name, value in params.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"InterferenceCartPole-v0: {name}={value!r}; expected a number")
            if name == "push_direction" and not -1.0 <= value <= 1.0:
                raise ValueError(f"InterferenceCartPole-v0: push_direction={value!r}; expected a number in [-1, 1]")
            if name != "push_direction" and not 0.0 < value < math.inf:
                raise ValueError(f"InterferenceCartPole-v0: {name}={value!r}; expected a finite number > 0")
        self.set_context_unchecked(params)

    def set_context_unchecked(self, params: Mapping[str, float]) -> None:
        """:meth:`set_context` without the checks, for a wrapper that checked its contexts once and
        only sets them or their interpolations (the smooth drift, every step)."""
        for name, value in params.items():
            setattr(self, _ATTRIBUTES.get(name, name), float(value))
        # CartPoleEnv's step reads force_mag (signed here), total_mass and polemass_length, which it
        # computes once in __init__: a context change that skips them silently keeps the old dynamics.
        self.force_mag = self.push_direction * self._force_magnitude
        self.total_mass = self.masspole + self.masscart
        self.polemass_length = self.masspole * self.length


def make_interference_cartpole(
    drift: str = "none",
    contexts: str | Sequence[Mapping[str, float]] | None = "physics",
    phase_length: int = 10,
    phase_unit: str = "episodes",
    context: int = 0,
    visible_context: bool = False,
    render_mode: str | None = None,
) -> gym.Env:
    """Build InterferenceCartPole-v0: :class:`InterferenceCartPoleEnv` inside :class:`ContextDrift`.

    The kwargs are those of ``gym.make("InterferenceCartPole-v0", ...)``; see the Arguments and Drift
    sections of :class:`InterferenceCartPoleEnv`. ``contexts`` names a preset (``"physics"``, also
    ``None``, or ``"conflicting"``) or lists contexts; a context may give a subset of the six
    parameters, the others take the standard values (CartPole-v1's).
    """
    check_render_mode("InterferenceCartPole-v0", render_mode, InterferenceCartPoleEnv.metadata["render_modes"])
    schedule = DriftSchedule(drift, phase_length, phase_unit, context)
    if contexts is None:
        contexts = "physics"
    if (isinstance(contexts, str) and contexts not in CONTEXT_PRESETS) or not isinstance(contexts, (str, Sequence)):
        raise ValueError(
            f"InterferenceCartPole-v0: contexts={contexts!r}; expected a preset name {tuple(CONTEXT_PRESETS)} "
            "or a list of dicts of parameters"
        )
    if isinstance(contexts, str):
        contexts = CONTEXT_PRESETS[contexts]
    contexts = [{**_STANDARD, **c} if isinstance(c, Mapping) else c for c in contexts]
    return ContextDrift(InterferenceCartPoleEnv(render_mode=render_mode), contexts, schedule,
                        visible_context=visible_context)  # fmt: skip
