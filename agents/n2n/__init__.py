"""N2N (Ashok et al., ICLR 2018): two recurrent policies that remove, then shrink, a teacher's layers,
trained with REINFORCE. ``n2n.py`` holds the agent, ``policies.py`` the networks."""

from agents.n2n.n2n import N2NAgent, N2NConfig
from agents.n2n.policies import N2NPolicy, obs_as_tensor

__all__ = ["N2NAgent", "N2NConfig", "N2NPolicy", "obs_as_tensor"]
