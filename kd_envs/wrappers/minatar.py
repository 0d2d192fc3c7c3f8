"""MinAtar games (Young & Tian, 2019) as channel-first images, the interference study's CPU-scale
stand-in for Atari (IQ-RE against DQN).

The ``minatar`` package is an optional extra (``pip install 'kd-gym[minatar]'``); the ids
``MinAtar-Breakout-v1`` and ``MinAtar-SpaceInvaders-v1`` are registered with the other KD-Gym envs and
import it only when made.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from kd_envs.envs.arguments import check_bool, check_number, check_render_mode

# Our id's game name -> MinAtar's module name.
MINATAR_GAMES = {"Breakout": "breakout", "SpaceInvaders": "space_invaders", "Asterix": "asterix",
                 "Freeway": "freeway", "Seaquest": "seaquest"}  # fmt: skip


class ChannelsFirst(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """MinAtar's ``(10, 10, C)`` bool grid as a ``(C, 10, 10)`` uint8 array of 0 and 1, the layout of
    PyTorch's convolutions (a quarter of the memory of float32 in a replay buffer).

    ``reset(seed=s)`` also forgets the sticky action: MinAtar keeps the last action across episodes
    (its first episode starts from action 0), so without this one seed would not give one episode.
    Rewards are returned as floats (some MinAtar games return ints)."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        height, width, channels = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 1, (channels, height, width), np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.env.unwrapped.game.last_action = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, float(reward), terminated, truncated, info

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(observation, -1, 0), dtype=np.uint8)


def make_minatar(
    game: str = "Breakout",
    sticky_action_prob: float = 0.1,
    difficulty_ramping: bool = True,
    render_mode: str | None = None,
) -> gym.Env:
    """A MinAtar game with its minimal action set, as MinAtar's own ``-v1`` ids, in
    :class:`ChannelsFirst`. ``sticky_action_prob`` and ``difficulty_ramping`` are MinAtar's defaults
    (the paper's setting). ``reset(seed=s)`` seeds the game's generator."""
    if game not in MINATAR_GAMES:
        raise ValueError(f"MinAtar: game={game!r}; expected one of {tuple(MINATAR_GAMES)}")
    try:
        from minatar.gym import BaseEnv
    except ImportError as error:
        raise ImportError(
            f"MinAtar-{game}-v1 needs the optional package minatar: pip install 'kd-gym[minatar]'"
        ) from error
    env_id = f"MinAtar-{game}-v1"
    check_number(env_id, "sticky_action_prob", sticky_action_prob, 0.0, 1.0, high_open=False)
    check_bool(env_id, "difficulty_ramping", difficulty_ramping)
    check_render_mode(env_id, render_mode, BaseEnv.metadata["render_modes"])
    env = BaseEnv(game=MINATAR_GAMES[game], render_mode=render_mode, use_minimal_action_set=True,
                  sticky_action_prob=sticky_action_prob, difficulty_ramping=difficulty_ramping)  # fmt: skip
    return ChannelsFirst(env)
