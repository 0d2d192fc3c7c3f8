"""IQ's policy: the context model (encoder and online k-means) and the multi-head Q-networks."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sklearn.cluster import KMeans
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, is_image_space, preprocess_obs
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, NatureCNN, create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

NORMALIZATIONS = ("standardize", "none")
CONTEXT_ENCODERS = ("observation", "random_nature_cnn", "random_features")
RANDOM_ENCODER_DIM = 50  # the authors' random encoder's output units


# -- context division ------------------------------------------------------------------------------
class OnlineKMeans(nn.Module):
    """k-means on normalised states: batch k-means on a warm-up (:meth:`fit`), then one sequential update
    per new state (:meth:`update`). Its state is registered buffers, saved in the policy's state_dict.

    :param n_contexts: k, the number of centres
    :param dim: d, the dimension of a state
    :param normalization: ``"standardize"`` (each dimension by the warm-up's mean and std, frozen
        after :meth:`fit`) or ``"none"``
    """

    centres: th.Tensor
    counts: th.Tensor
    mean: th.Tensor
    std: th.Tensor
    fitted: th.Tensor

    def __init__(self, n_contexts: int, dim: int, normalization: str = "standardize"):
        super().__init__()
        if n_contexts < 1 or dim < 1:
            raise ValueError(f"OnlineKMeans: n_contexts={n_contexts}, dim={dim}; expected both >= 1")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"OnlineKMeans: normalization={normalization!r}; expected one of {NORMALIZATIONS}")
        self.n_contexts, self.dim, self.normalization = n_contexts, dim, normalization
        self.register_buffer("centres", th.zeros(n_contexts, dim))
        self.register_buffer("counts", th.zeros(n_contexts, dtype=th.long))
        self.register_buffer("mean", th.zeros(dim))
        self.register_buffer("std", th.ones(dim))
        self.register_buffer("fitted", th.tensor(False))

    def normalize(self, x: th.Tensor) -> th.Tensor:
        return (x.float() - self.mean) / self.std

    def _nearest(self, z: th.Tensor) -> th.Tensor:
        # Squared distances written out rather than th.cdist, whose matmul form can flip near-ties.
        return ((z[:, None, :] - self.centres[None]) ** 2).sum(dim=-1).argmin(dim=1)

    @th.no_grad()
    def fit(self, states: th.Tensor, seed: int | None = None) -> th.Tensor:
        """Set the normalisation from ``states`` (N, d), run batch k-means (10 initialisations, seeded by
        ``seed``) and set the counts to the cluster sizes. Returns the N labels."""
        if states.ndim != 2 or states.shape[1] != self.dim:
            raise ValueError(f"OnlineKMeans.fit: states of shape {tuple(states.shape)}; expected (N, {self.dim})")
        if len(states) < self.n_contexts:
            raise ValueError(f"OnlineKMeans.fit: {len(states)} states; k-means needs at least {self.n_contexts}")
        states = states.float()
        if self.normalization == "standardize":
            self.mean.copy_(states.mean(dim=0))
            self.std.copy_(states.std(dim=0, correction=0).clamp_min(1e-6))
        z = self.normalize(states)
        kmeans = KMeans(n_clusters=self.n_contexts, n_init=10, random_state=seed).fit(z.cpu().double().numpy())
        self.centres.copy_(th.as_tensor(kmeans.cluster_centers_, dtype=th.float32))
        labels = th.as_tensor(kmeans.labels_, dtype=th.long, device=self.centres.device)
        self.counts.copy_(th.bincount(labels, minlength=self.n_contexts))
        self.fitted.fill_(True)
        return labels

    @th.no_grad()
    def assign(self, x: th.Tensor) -> th.Tensor:
        """The nearest centre of each row of ``x`` (B, d); all zeros before :meth:`fit`."""
        if not self.fitted:
            return th.zeros(len(x), dtype=th.long, device=x.device)
        return self._nearest(self.normalize(x))

    def update(self, x: th.Tensor) -> th.Tensor:
        """Sequential k-means, row by row in order: c = nearest centre, n_c += 1, μ_c += (z − μ_c)/n_c.
        Returns each row's c (chosen before its centre moved)."""
        if not self._buffers["fitted"]:
            raise RuntimeError("OnlineKMeans.update before fit: the centres are not initialised")
        views = self._cpu_views()
        if views is not None and x.device.type == "cpu":
            return th.from_numpy(self._update_on_numpy_views(x.detach().numpy(), *views))
        with th.no_grad():
            return self._update_with_torch(x)

    def _cpu_views(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """NumPy views of centres, counts, mean and std when they are on the CPU (None elsewhere), made
        once per set of buffer tensors: ``.numpy()`` costs as much as a step of the update itself. A
        move (``.to``) or a load that assigns new tensors makes new views; copies and pickles drop them
        (:meth:`__getstate__`), since theirs would look at the original's memory."""
        b = self._buffers
        cached = self.__dict__.get("_views")
        tensors = (b["centres"], b["counts"], b["mean"], b["std"])
        if cached is None or any(old is not new for old, new in zip(cached[0], tensors)):
            views = tuple(t.numpy() for t in tensors) if all(t.device.type == "cpu" for t in tensors) else None
            cached = self.__dict__["_views"] = (tensors, views)
        return cached[1]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_views", None)
        return state

    @staticmethod
    def _update_on_numpy_views(x: np.ndarray, centres: np.ndarray, counts: np.ndarray, mean: np.ndarray,
                               std: np.ndarray) -> np.ndarray:  # fmt: skip
        # The same float32 arithmetic on NumPy views of the buffers, which move in place: with one state
        # per env step, torch's per-operation cost would be the whole cost (z − μ broadcasts over the
        # centres; its square is d·d, as ** 2 computes it).
        z_all = (x.astype(np.float32, copy=False) - mean) / std
        labels = np.empty(len(z_all), dtype=np.int64)
        for i, z in enumerate(z_all):
            d = z - centres
            c = int((d * d).sum(axis=1).argmin())
            counts[c] += 1
            centres[c] += (z - centres[c]) / np.float32(counts[c])
            labels[i] = c
        return labels

    def _update_with_torch(self, x: th.Tensor) -> th.Tensor:
        labels = []
        for z in self.normalize(x):
            c = int(self._nearest(z[None])[0])
            self.counts[c] += 1
            centre = self.centres[c]  # a view: the in-place update moves the stored centre
            centre += (z - centre) / self.counts[c]
            labels.append(c)
        return th.tensor(labels, dtype=th.long, device=x.device)


class ObservationEncoder(nn.Module):
    """IQ's context features: the observation itself, flattened (one-hot for discrete spaces)."""

    def __init__(self, observation_space: spaces.Space):
        super().__init__()
        self.observation_space = observation_space
        self.features_dim = get_flattened_obs_dim(observation_space)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return preprocess_obs(obs, self.observation_space, normalize_images=False).flatten(1).float()


class RandomNatureEncoder(nn.Module):
    """IQ-RE's context features: SB3's :class:`NatureCNN` trunk with a 50-unit output, randomly
    initialised from ``seed`` (the global generator is left untouched) and never trained.

    :param observation_space: a channel-first image space
    :param seed: seed of the initialisation (``None``: from the global generator)
    :param normalize_images: divide uint8 images by 255, as the Q-network does
    """

    def __init__(self, observation_space: spaces.Space, seed: int | None = None, normalize_images: bool = True):
        super().__init__()
        if not is_image_space(observation_space, check_channels=False, normalized_image=not normalize_images):
            raise ValueError(
                f"RandomNatureEncoder: observation space {observation_space}; expected a channel-first image "
                "Box (uint8 in [0, 255] unless normalize_images=False)"
            )
        self.observation_space, self.normalize_images = observation_space, normalize_images
        self.features_dim = RANDOM_ENCODER_DIM
        with th.random.fork_rng(devices=[]):
            if seed is not None:
                th.manual_seed(seed)
            self.cnn = NatureCNN(observation_space, RANDOM_ENCODER_DIM, normalized_image=not normalize_images)
        self.requires_grad_(False)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return self.cnn(preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images))


class RandomFeaturesEncoder(nn.Module):
    """IQ-RE's context features for observations NatureCNN does not fit (MinAtar's 10×10 grids): a copy
    of the policy's own features extractor class with a 50-unit output, randomly initialised from
    ``seed`` (the global generator is left untouched) and never trained.

    :param features_extractor_class: an SB3 features extractor taking ``(observation_space, features_dim, **kwargs)``
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        features_extractor_class: type[BaseFeaturesExtractor],
        features_extractor_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        normalize_images: bool = True,
    ):
        super().__init__()
        self.observation_space, self.normalize_images = observation_space, normalize_images
        self.features_dim = RANDOM_ENCODER_DIM
        kwargs = {k: v for k, v in (features_extractor_kwargs or {}).items() if k != "features_dim"}
        with th.random.fork_rng(devices=[]):
            if seed is not None:
                th.manual_seed(seed)
            self.extractor = features_extractor_class(observation_space, features_dim=RANDOM_ENCODER_DIM, **kwargs)
        self.requires_grad_(False)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return self.extractor(preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images))


class ContextModel(nn.Module):
    """Context division: an encoder (:class:`ObservationEncoder`, :class:`RandomNatureEncoder` or
    :class:`RandomFeaturesEncoder`) followed by :class:`OnlineKMeans`. ``assign`` gives an observation's
    context; the algorithm calls ``encode`` and the k-means' ``fit``/``update`` while it collects
    transitions."""

    def __init__(
        self,
        observation_space: spaces.Space,
        n_contexts: int,
        encoder: str = "observation",
        normalization: str = "standardize",
        seed: int | None = None,
        normalize_images: bool = True,
        features_extractor_class: type[BaseFeaturesExtractor] | None = None,
        features_extractor_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        if isinstance(observation_space, spaces.Dict):
            raise ValueError("ContextModel: Dict observation spaces are not supported")
        if encoder == "observation":
            self.encoder: nn.Module = ObservationEncoder(observation_space)
        elif encoder == "random_nature_cnn":
            self.encoder = RandomNatureEncoder(observation_space, seed, normalize_images)
        elif encoder == "random_features":
            if features_extractor_class is None:
                raise ValueError("ContextModel: encoder='random_features' needs the policy's features_extractor_class")
            self.encoder = RandomFeaturesEncoder(observation_space, features_extractor_class,
                                                 features_extractor_kwargs, seed, normalize_images)  # fmt: skip
        else:
            raise ValueError(f"ContextModel: encoder={encoder!r}; expected one of {CONTEXT_ENCODERS}")
        self.kmeans = OnlineKMeans(n_contexts, self.encoder.features_dim, normalization)
        # IQ's encoder on a Box is the observation as float32: encode_observations then reads the array
        # itself instead of paying torch's per-operation cost on every env step.
        self._observations_as_features = encoder == "observation" and isinstance(observation_space, spaces.Box)

    @th.no_grad()
    def encode(self, obs: th.Tensor) -> th.Tensor:
        return self.encoder(obs)

    def encode_observations(self, obs: np.ndarray, device: th.device | str) -> th.Tensor:
        """``encode(obs_as_tensor(obs, device))`` for a batch of observations as the env gives them,
        the same float32 values; on the CPU with the observation encoder of a Box, without torch (and
        without the encoder's forward hooks)."""
        if self._observations_as_features and (device == "cpu" or getattr(device, "type", None) == "cpu"):
            return th.from_numpy(np.asarray(obs, dtype=np.float32).reshape(len(obs), -1))
        return self.encode(obs_as_tensor(obs, device))

    @th.no_grad()
    def assign(self, obs: th.Tensor) -> th.Tensor:
        return self.kmeans.assign(self.encode(obs))


# -- networks --------------------------------------------------------------------------------------
class MultiHeadQNetwork(BasePolicy):
    """SB3's :class:`~stable_baselines3.dqn.policies.QNetwork` with one Q head per context: features
    extractor → shared MLP (``net_arch``, may be empty) → ``n_contexts`` separate linear heads.

    :param n_contexts: k, the number of heads
    (the other parameters are QNetwork's)
    """

    action_space: spaces.Discrete

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        n_contexts: int = 4,
    ) -> None:
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        if net_arch is None:
            net_arch = [64, 64]
        self.net_arch, self.activation_fn, self.features_dim = net_arch, activation_fn, features_dim
        self.n_contexts = n_contexts
        self.shared = nn.Sequential(*create_mlp(features_dim, -1, net_arch, activation_fn))
        last_dim = net_arch[-1] if net_arch else features_dim
        # The k heads as one linear layer: rows h·A … (h+1)·A − 1 of its weight are head h (one matmul
        # instead of k; each row block is initialised as a separate Linear(last_dim, A) would be).
        self.heads = nn.Linear(last_dim, n_contexts * int(action_space.n))
        # For forward, which runs three times per gradient step and once per env step: the layers in order
        # (plain attributes, read without nn.Module's lookup), the action count, whether the features are
        # the flattened float observation (FlattenExtractor on a Box, as preprocess_obs and nn.Flatten
        # compute them), and the row indices 0..B-1 by batch size.
        self._layers = (*self.shared, self.heads)
        self._n_actions = int(action_space.n)
        self._flat_observations = type(features_extractor) is FlattenExtractor and isinstance(
            observation_space, spaces.Box
        )
        self._rows: dict[tuple[int, th.device], th.Tensor] = {}

    def head_rows(self, h: int) -> slice:
        """The rows of ``heads.weight`` and ``heads.bias`` (and of any per-parameter optimizer state) that
        are head ``h``."""
        n_actions = int(self.action_space.n)
        return slice(h * n_actions, (h + 1) * n_actions)

    def head(self, h: int) -> tuple[th.Tensor, th.Tensor]:
        """Views (weight (A, d), bias (A,)) of head ``h``'s parameters."""
        rows = self.head_rows(h)
        return self.heads.weight[rows], self.heads.bias[rows]

    @th.no_grad()
    def copy_head_to_all(self, h: int = 0) -> None:
        """Set every head to head ``h`` (at the end of the warm-up, when the contexts appear)."""
        weight, bias = (t.clone() for t in self.head(h))
        for other in range(self.n_contexts):
            w, b = self.head(other)
            w.copy_(weight)
            b.copy_(bias)

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        """The Q-values of every head, (B, k, A)."""
        if self._flat_observations:
            latent = obs.float().flatten(1)
        else:
            latent = self.extract_features(obs, self.features_extractor)
        # The layers' own forward, not their __call__: the same arithmetic without nn.Module's dispatch,
        # which costs as much as the small layers' compute (three passes per gradient step, one per env
        # step). Hooks on the features extractor, the shared layers and the heads are therefore not called.
        for layer in self._layers:
            latent = layer.forward(latent)
        return latent.view(latent.shape[0], self.n_contexts, self._n_actions)

    def batch_rows(self, n: int, device: th.device) -> th.Tensor:
        """``th.arange(n, device=device)``, made once per batch size."""
        rows = self._rows.get((n, device))
        if rows is None:
            rows = self._rows[(n, device)] = th.arange(n, device=device)
        return rows

    def q_values(self, obs: PyTorchObs, contexts: th.Tensor) -> th.Tensor:
        """The Q-values (B, A) of each observation's own head, ``contexts`` (B,)."""
        q = self(obs)
        return q[self.batch_rows(q.shape[0], q.device), contexts]

    def _predict(self, observation: PyTorchObs, deterministic: bool = True, contexts: th.Tensor | None = None):
        if contexts is None:
            raise ValueError("MultiHeadQNetwork needs each observation's context to act; use IQPolicy")
        return self.q_values(observation, contexts).argmax(dim=1).reshape(-1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(net_arch=self.net_arch, features_dim=self.features_dim, activation_fn=self.activation_fn,
                    features_extractor=self.features_extractor, n_contexts=self.n_contexts)  # fmt: skip
        return data


class IQPolicy(DQNPolicy):
    """DQN's policy with multi-head Q-networks and the context model, which the optimizer does not see
    and the target network does not copy. It acts greedily with each observation's own head.

    :param n_contexts: k, the number of contexts and Q heads
    :param context_encoder: ``"observation"`` (IQ), ``"random_nature_cnn"`` or ``"random_features"`` (IQ-RE)
    :param cluster_normalization: ``"standardize"`` or ``"none"``, see :class:`OnlineKMeans`
    :param context_seed: seed of the random encoder's initialisation
    (the other parameters are :class:`~stable_baselines3.dqn.policies.DQNPolicy`'s)
    """

    q_net: MultiHeadQNetwork
    q_net_target: MultiHeadQNetwork

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        n_contexts: int = 4,
        context_encoder: str = "observation",
        cluster_normalization: str = "standardize",
        context_seed: int | None = None,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        separate_anchor: bool = False,
    ) -> None:
        self.n_contexts, self.context_encoder = n_contexts, context_encoder
        self.cluster_normalization, self.context_seed = cluster_normalization, context_seed
        self.separate_anchor = separate_anchor
        # Mutated, never reassigned: nn.Module's __setattr__ costs more than the rest of an env step.
        self._acting: dict[str, th.Tensor] = {}
        super().__init__(observation_space, action_space, lr_schedule, net_arch, activation_fn,
                         features_extractor_class, features_extractor_kwargs, normalize_images, optimizer_class,
                         optimizer_kwargs)  # fmt: skip

    def _build(self, lr_schedule: Schedule) -> None:
        # DQNPolicy's: q_net, q_net_target (a copy) and an optimizer over q_net's parameters only.
        super()._build(lr_schedule)
        # The distillation anchor, when it is not the target network: a third copy, outside the
        # optimizer, refreshed by the algorithm every anchor_update_interval steps.
        self.q_net_anchor: MultiHeadQNetwork | None = None
        if self.separate_anchor:
            self.q_net_anchor = self.make_q_net()
            self.q_net_anchor.load_state_dict(self.q_net.state_dict())
            self.q_net_anchor.set_training_mode(False)
        # Built after the optimizer and outside both Q-networks: never trained, never polyak-copied.
        self.context_model = ContextModel(self.observation_space, self.n_contexts, self.context_encoder,
                                          self.cluster_normalization, self.context_seed, self.normalize_images,
                                          self.features_extractor_class,
                                          self.features_extractor_kwargs).to(self.device)  # fmt: skip

    @property
    def device(self) -> th.device:
        # BaseModel's walks the modules to a first parameter, twice per prediction; the online
        # network's heads live where the policy does.
        q_net = self._modules.get("q_net")
        return q_net.heads.weight.device if q_net is not None else super().device

    @property
    def distillation_anchor(self) -> MultiHeadQNetwork:
        """The network whose heads L_KD holds the other heads to: the anchor copy, else the target."""
        return self.q_net_anchor if self.q_net_anchor is not None else self.q_net_target

    def make_q_net(self) -> MultiHeadQNetwork:
        # Separate features extractors for the online and target networks, as DQNPolicy makes them.
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return MultiHeadQNetwork(**net_args, n_contexts=self.n_contexts).to(self.device)

    def set_training_mode(self, mode: bool) -> None:
        # SB3 sets the mode before every prediction, and nn.Module.train walks every submodule each
        # time: only a change of mode is passed on.
        if mode != self.training or mode != self.q_net.training:
            super().set_training_mode(mode)

    def contexts(self, obs: th.Tensor) -> th.Tensor:
        """Each observation's context (B,), from the current centres (nothing is updated)."""
        return self.context_model.assign(obs)

    def set_acting_contexts(self, contexts: th.Tensor | None) -> None:
        """Contexts the next :meth:`predict` uses instead of computing them (the algorithm already
        assigned them when it observed the states); ``None`` clears them."""
        if contexts is None:
            self._acting.pop("contexts", None)
        else:
            self._acting["contexts"] = contexts

    def _predict(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        contexts = self._acting.pop("contexts", None)
        if contexts is None or len(contexts) != len(obs):
            contexts = self.contexts(obs)
        return self.q_net._predict(obs, deterministic, contexts=contexts.to(obs.device))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(n_contexts=self.n_contexts, context_encoder=self.context_encoder,
                    cluster_normalization=self.cluster_normalization, context_seed=self.context_seed,
                    separate_anchor=self.separate_anchor)  # fmt: skip
        return data


class IQCnnPolicy(IQPolicy):
    """:class:`IQPolicy` for images: NatureCNN features and, by default, no shared layers
    (``net_arch=[]``), so the heads sit directly on the 512 features as in DQN's CnnPolicy."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        n_contexts: int = 4,
        context_encoder: str = "observation",
        cluster_normalization: str = "standardize",
        context_seed: int | None = None,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        separate_anchor: bool = False,
    ) -> None:
        super().__init__(observation_space, action_space, lr_schedule, n_contexts, context_encoder,
                         cluster_normalization, context_seed, net_arch, activation_fn, features_extractor_class,
                         features_extractor_kwargs, normalize_images, optimizer_class, optimizer_kwargs,
                         separate_anchor)  # fmt: skip


