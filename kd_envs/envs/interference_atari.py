"""InterferenceAtari-v0: an Atari game whose mode and difficulty drift over training."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from ale_py import roms
from ale_py.env import AtariEnv
from ale_py.registration import rom_id_to_name
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from kd_envs.envs.arguments import check_bool, check_int, check_number, check_render_mode, kwarg_error
from kd_envs.wrappers.drift import ContextDrift, DriftSchedule

ATARI_PARAMETERS = ("mode", "difficulty")


class InterferenceAtariEnv(AtariEnv):
    r"""
    ## Description
    An Atari 2600 game of the Arcade Learning Environment whose game *mode* and *difficulty* (the
    variations of Machado et al., 2018) are a hidden context that changes over training on a drift
    schedule, to study catastrophic interference inside one task: what is learned in one variation may
    overwrite another, and a schedule that brings the first back shows whether it was forgotten.
    ``gym.make("InterferenceAtari-v0")`` returns this env (``frameskip=1``) inside Gymnasium's
    ``AtariPreprocessing`` and ``FrameStackObservation``, all inside
    :class:`kd_envs.wrappers.ContextDrift`, which owns the schedule and calls :meth:`set_context`.

    A context is a dict ``{"mode": int, "difficulty": int}``; a given context may omit one, which then
    takes the game's first mode or difficulty. The allowed values are the game's own
    (``ale.getAvailableModes()``, ``ale.getAvailableDifficulties()``; Breakout: modes 0, 4, ..., 44 and
    difficulties 0, 1). A new context takes effect at the next reset, never inside an episode. By
    default (``contexts=None``) with the game's modes m and difficulties d:

    | # | mode | difficulty |
    |---|------|------------|
    | 0 | m[0] | d[0]       |
    | 1 | m[1] | d[0]       |
    | 2 | m[0] | d[1]       |

    (only those the game offers; a game with one mode and one difficulty has a single context).

    ## Action Space
    ``Discrete(n)``, the game's minimal action set (``env.unwrapped.get_action_meanings()``). An action
    that is not one integer in [0, n) (−1, n, a float, a complex number, a bool) raises ``ValueError``, and
    a step before the first ``reset`` raises ``RuntimeError``, in the unwrapped env too.

    ## Observation Space
    ``Box(0, 255, (frame_stack, screen_size, screen_size), uint8)``: the last ``frame_stack`` grayscale
    screens, each the max of the last two frames of its ``frame_skip`` frames, resized (area
    interpolation) to ``screen_size`` × ``screen_size``. The context is hidden (the info reveals it).

    ## Rewards
    The game's score change over the ``frame_skip`` frames of a step (unclipped).

    ## Starting State
    After the game's reset, 1 to ``noop_max`` no-op steps drawn from the env's ``np_random``; with
    ``repeat_action_probability`` > 0, sticky actions drawn by the ALE from the seeded reset.

    ## Episode End
    1. Termination: game over (or a life lost, with ``terminal_on_life_loss=True``).
    2. Truncation: 27,000 steps (108,000 frames at ``frame_skip=4``; ``max_episode_steps`` of the
       registration).

    ## Drift
    With K contexts, c0 = ``context`` and L = ``phase_length``:

    | `drift`    | the context                                                                               |
    |------------|-------------------------------------------------------------------------------------------|
    | `"none"`   | always c0                                                                                 |
    | `"abrupt"` | at the first reset after a phase has lasted L units, one drawn uniformly among the others |
    | `"cyclic"` | at the first reset after a phase has lasted L units, the next one: (current + 1) mod K    |

    A unit is an episode begun or a step taken (``phase_unit``). ``"smooth"`` is refused: a game's mode
    cannot be interpolated nor changed inside an episode. ``reset(seed=s)`` restarts the schedule (the
    abrupt draws come from a generator seeded from ``s``), so one seed reproduces the whole sequence; a
    reset without a seed continues it.

    ``info`` at reset and at every step holds ALE's ``lives``, ``episode_frame_number`` and
    ``frame_number`` and the drift's ``"context"`` (int, the context's index), ``"phase"`` (int,
    0-based) and ``"context_params"`` (dict ``{"mode": int, "difficulty": int}`` in effect).

    ## Arguments
    | kwarg                       | default      | meaning                                                      |
    |-----------------------------|--------------|--------------------------------------------------------------|
    | `game`                      | `"Breakout"` | ALE game, as in ``ALE/Breakout-v5`` (or its rom id, ``"breakout"``) |
    | `drift`                     | `"none"`     | `"none"`, `"abrupt"` or `"cyclic"` (see Drift)               |
    | `contexts`                  | None         | list of ``{"mode", "difficulty"}`` dicts; None: the default above |
    | `phase_length`              | 10           | L, the length of a phase, an integer >= 1                     |
    | `phase_unit`                | `"episodes"` | `"episodes"` or `"steps"`                                     |
    | `context`                   | 0            | c0, index of the starting context                             |
    | `frame_skip`                | 4            | emulator frames per step                                      |
    | `screen_size`               | 84           | side of the square observation frames                         |
    | `frame_stack`               | 4            | frames stacked in one observation                             |
    | `noop_max`                  | 30           | at most this many no-ops after a reset (0: none)              |
    | `terminal_on_life_loss`     | False        | end the episode when a life is lost                           |
    | `repeat_action_probability` | 0.25         | sticky actions (Machado et al., 2018)                         |
    | `render_mode`               | None         | None, `"human"` or `"rgb_array"` (ALE's screen)               |

    Errors name the bad kwarg, its value and what is allowed: an unknown ``game``, ``drift``, mode or
    difficulty, ``"smooth"``, ``phase_length`` < 1, ``context`` out of range, a drift with one context, a
    ``render_mode`` outside ``metadata["render_modes"]``, and any kwarg of a wrong type (a bool is not an
    integer, nor is a float, and a string is not a number).

    ``env.spec`` stores as JSON (``EnvSpec.to_json``) under every drift schedule, and
    ``gym.make(EnvSpec.from_json(...))`` makes the same env again. The ids are registered when ``kd_envs``
    is imported; a process that has not imported it, such as a worker of SB3's ``SubprocVecEnv``
    (started by forkserver or spawn), makes the env as ``gym.make("kd_envs:InterferenceAtari-v0")``.

    ## Version History
    * v0: initial version; later, without changing any episode: actions outside the space and a step
      before reset refused, kwargs of a wrong type and unknown render modes refused by name, the spec's
      JSON round trip.
    """

    supports_smooth_drift = False
    _has_reset = False  # ALE would step a game never reset, and with the previous episode's context

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        self._has_reset = True
        return obs, info

    def step(self, action):
        if not self._has_reset:
            raise RuntimeError("InterferenceAtari-v0: call reset() before step()")
        return super().step(self._check_action(action))

    def _check_action(self, action) -> int:
        """One integer in Discrete(n): ALE's action-set lookup would take -1 for the last action and fail on n
        with an IndexError."""
        n = self.action_space.n
        if type(action) is int and 0 <= action < n:  # the common case, every frame
            return action
        a = np.asarray(action)
        if a.size != 1 or a.dtype.kind not in "iu" or not 0 <= int(a.reshape(-1)[0]) < n:
            raise ValueError(f"InterferenceAtari-v0: action {action!r}; expected one integer in Discrete({n})")
        return int(a.reshape(-1)[0])

    @property
    def context_params(self) -> dict[str, int]:
        """The game's mode and difficulty as the emulator holds them (a new one shows here at once and
        reaches the game at the next reset)."""
        state = self.ale.cloneState()
        return {"mode": int(state.getCurrentMode()), "difficulty": int(state.getDifficulty())}

    def set_context(self, params: Mapping[str, int]) -> None:
        """Set the game's ``mode`` and/or ``difficulty``; they take effect at the next reset."""
        unknown = sorted(set(params) - set(ATARI_PARAMETERS))
        if unknown:
            raise ValueError(
                f"InterferenceAtari-v0: unknown context parameter(s) {unknown}; expected names among {ATARI_PARAMETERS}"
            )
        allowed = {
            "mode": ("modes", self.ale.getAvailableModes()),
            "difficulty": ("difficulties", self.ale.getAvailableDifficulties()),
        }
        for name, value in params.items():
            plural, values = allowed[name]
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value not in values:
                game = rom_id_to_name(self._game)
                raise ValueError(f"InterferenceAtari-v0: {name}={value!r}; {game} offers {plural} {list(values)}")
        # AtariEnv.reset(seed=...) reloads the ROM and re-applies _game_mode and _game_difficulty; a reset
        # without a seed takes the values given to the ALE directly.
        if "mode" in params:
            self._game_mode = int(params["mode"])
            self.ale.setMode(self._game_mode)
        if "difficulty" in params:
            self._game_difficulty = int(params["difficulty"])
            self.ale.setDifficulty(self._game_difficulty)


def atari_rom_id(game: str) -> str:
    """The ALE rom id of a game named as in its Gymnasium id (``"SpaceInvaders"`` -> ``"space_invaders"``)."""
    rom_ids = roms.get_all_rom_ids()
    if game in rom_ids:
        return game
    by_name = {rom_id_to_name(rom): rom for rom in rom_ids}
    if game in by_name:
        return by_name[game]
    close = difflib.get_close_matches(str(game), list(by_name), n=3)
    hint = f"did you mean {close}? " if close else ""
    raise ValueError(
        f"InterferenceAtari-v0: game={game!r}; {hint}expected an ALE game such as 'Breakout', 'Pong', "
        f"'SpaceInvaders' or 'Seaquest' ({len(by_name)} in ale_py.roms.get_all_rom_ids(), as rom ids)"
    )


def default_atari_contexts(modes: Sequence[int], difficulties: Sequence[int]) -> list[dict[str, int]]:
    """(m[0], d[0]), (m[1], d[0]), (m[0], d[1]): those the game offers."""
    contexts = [{"mode": modes[0], "difficulty": difficulties[0]}]
    if len(modes) > 1:
        contexts.append({"mode": modes[1], "difficulty": difficulties[0]})
    if len(difficulties) > 1:
        contexts.append({"mode": modes[0], "difficulty": difficulties[1]})
    return contexts


def make_interference_atari(
    game: str = "Breakout",
    drift: str = "none",
    contexts: Sequence[Mapping[str, int]] | None = None,
    phase_length: int = 10,
    phase_unit: str = "episodes",
    context: int = 0,
    frame_skip: int = 4,
    screen_size: int = 84,
    frame_stack: int = 4,
    noop_max: int = 30,
    terminal_on_life_loss: bool = False,
    repeat_action_probability: float = 0.25,
    render_mode: str | None = None,
) -> gym.Env:
    """Build InterferenceAtari-v0: :class:`InterferenceAtariEnv` in ``AtariPreprocessing`` and
    ``FrameStackObservation``, inside :class:`ContextDrift`.

    The kwargs are those of ``gym.make("InterferenceAtari-v0", ...)``; see the Arguments and Drift
    sections of :class:`InterferenceAtariEnv`.
    """
    import ale_py

    gym.register_envs(ale_py)
    # Every kwarg checked here, before the ROM loads: fail fast, naming the kwarg.
    env_id = "InterferenceAtari-v0"
    if not isinstance(game, str):
        raise kwarg_error(env_id, "game", game, "an ALE game such as 'Breakout' (a str)")
    schedule = DriftSchedule(drift, phase_length, phase_unit, context)
    if contexts is not None and (isinstance(contexts, (str, bytes)) or not isinstance(contexts, Sequence)):
        raise kwarg_error(env_id, "contexts", contexts, 'None or a list of {"mode", "difficulty"} dicts')
    for name, value in (("frame_skip", frame_skip), ("screen_size", screen_size), ("frame_stack", frame_stack)):
        check_int(env_id, name, value, minimum=1)
    check_int(env_id, "noop_max", noop_max, minimum=0)
    check_bool(env_id, "terminal_on_life_loss", terminal_on_life_loss)
    check_number(env_id, "repeat_action_probability", repeat_action_probability, 0.0, 1.0, high_open=False)
    check_render_mode(env_id, render_mode, InterferenceAtariEnv.metadata["render_modes"])
    base = InterferenceAtariEnv(
        game=atari_rom_id(game), frameskip=1, repeat_action_probability=repeat_action_probability,
        render_mode=render_mode,
    )  # fmt: skip
    modes, difficulties = base.ale.getAvailableModes(), base.ale.getAvailableDifficulties()
    if contexts is None:
        contexts = default_atari_contexts(modes, difficulties)
        if len(contexts) == 1 and drift != "none":
            raise ValueError(
                f"InterferenceAtari-v0: drift={drift!r} with game={game!r}, which offers one mode and one difficulty "
                "(a single context); expected drift='none' or a game with more variations"
            )
    first = {"mode": modes[0], "difficulty": difficulties[0]}
    contexts = [{**first, **c} if isinstance(c, Mapping) else c for c in contexts]
    env = AtariPreprocessing(
        base, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size, grayscale_obs=True,
        terminal_on_life_loss=terminal_on_life_loss,
    )  # fmt: skip
    env = FrameStackObservation(env, stack_size=frame_stack)
    return ContextDrift(env, contexts, schedule)
