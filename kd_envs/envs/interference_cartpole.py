"""InterferenceCartPole-v0: CartPole whose hidden physics drift over training."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import gymnasium as gym
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from kd_envs.wrappers.drift import ContextDrift, DriftSchedule

CARTPOLE_PARAMETERS = ("gravity", "masscart", "masspole", "length", "force_mag")
CARTPOLE_CONTEXT_NAMES = ("standard", "long_heavy_pole", "strong_gravity_weak_push")
CARTPOLE_CONTEXTS = (
    MappingProxyType({"gravity": 9.8, "masscart": 1.0, "masspole": 0.1, "length": 0.5, "force_mag": 10.0}),
    MappingProxyType({"gravity": 9.8, "masscart": 1.0, "masspole": 0.5, "length": 1.0, "force_mag": 10.0}),
    MappingProxyType({"gravity": 15.0, "masscart": 1.0, "masspole": 0.1, "length": 0.5, "force_mag": 7.0}),
)


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
    length) and ``force_mag``. The presets, ``CARTPOLE_CONTEXTS`` (names in ``CARTPOLE_CONTEXT_NAMES``):

    | # | name                       | gravity | masscart | masspole | length | force_mag |
    |---|----------------------------|---------|----------|----------|--------|-----------|
    | 0 | `standard` (CartPole-v1)   | 9.8     | 1.0      | 0.1      | 0.5    | 10.0      |
    | 1 | `long_heavy_pole`          | 9.8     | 1.0      | 0.5      | 1.0    | 10.0      |
    | 2 | `strong_gravity_weak_push` | 15.0    | 1.0      | 0.1      | 0.5    | 7.0       |

    ## Action Space
    ``Discrete(2)``, as CartPole-v1: 0 pushes the cart left, 1 pushes it right, with force ``force_mag``.

    ## Observation Space
    ``Box((4,), float32)``, identical to CartPole-v1; the context is hidden (the info reveals it):

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
    | `contexts`     | None         | list of dicts of parameters (a missing one: standard); None: presets  |
    | `phase_length` | 10           | L, the length of a phase, an integer >= 1                             |
    | `phase_unit`   | `"episodes"` | `"episodes"` or `"steps"` (`"smooth"` needs `"steps"`)                |
    | `context`      | 0            | c0, index of the starting context                                     |
    | `render_mode`  | None         | `"human"` or `"rgb_array"`, as CartPole-v1                            |

    Errors name the bad kwarg, its value and what is allowed: an unknown ``drift``, ``phase_length`` < 1,
    ``"smooth"`` with episodes, ``context`` out of range, an empty ``contexts``, a drift with one
    context, an unknown parameter name or a parameter that is not a finite number > 0.

    ## Version History
    * v0: initial version.
    """

    supports_smooth_drift = True

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)

    @property
    def context_params(self) -> dict[str, float]:
        """The five physical parameters in effect."""
        return {name: float(getattr(self, name)) for name in CARTPOLE_PARAMETERS}

    def set_context(self, params: Mapping[str, float]) -> None:
        """Set any of ``gravity, masscart, masspole, length, force_mag`` (each a finite number > 0).

        Takes effect at the next step, also inside an episode. Nothing is set unless all are valid.
        """
        unknown = sorted(set(params) - set(CARTPOLE_PARAMETERS))
        if unknown:
            raise ValueError(
                f"InterferenceCartPole-v0: unknown context parameter(s) {unknown}; expected names among "
                f"{CARTPOLE_PARAMETERS}"
            )
        for name, value in params.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value < math.inf:
                raise ValueError(f"InterferenceCartPole-v0: {name}={value!r}; expected a finite number > 0")
        for name, value in params.items():
            setattr(self, name, float(value))
        # CartPoleEnv computes these two in __init__ and its step reads them, not masspole or length: a
        # context change that skips them silently keeps the old dynamics.
        self.total_mass = self.masspole + self.masscart
        self.polemass_length = self.masspole * self.length


def make_interference_cartpole(
    drift: str = "none",
    contexts: Sequence[Mapping[str, float]] | None = None,
    phase_length: int = 10,
    phase_unit: str = "episodes",
    context: int = 0,
    render_mode: str | None = None,
) -> gym.Env:
    """Build InterferenceCartPole-v0: :class:`InterferenceCartPoleEnv` inside :class:`ContextDrift`.

    The kwargs are those of ``gym.make("InterferenceCartPole-v0", ...)``; see the Arguments and Drift
    sections of :class:`InterferenceCartPoleEnv`. ``contexts=None`` means ``CARTPOLE_CONTEXTS``; a context
    may give a subset of the five parameters, the others take the standard values (context 0 of the
    presets).
    """
    schedule = DriftSchedule(drift, phase_length, phase_unit, context)
    if contexts is None:
        contexts = CARTPOLE_CONTEXTS
    contexts = [{**CARTPOLE_CONTEXTS[0], **c} if isinstance(c, Mapping) else c for c in contexts]
    return ContextDrift(InterferenceCartPoleEnv(render_mode=render_mode), contexts, schedule)
