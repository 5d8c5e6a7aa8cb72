"""meshrl: train agents that route packets through wireless mesh networks.

``import meshrl`` registers ``meshrl/MeshRouting-v0`` with Gymnasium, so both
``gymnasium.make("meshrl/MeshRouting-v0", **cfg)`` and
``gymnasium.make_vec("meshrl/MeshRouting-v0", num_envs=4096, **cfg)`` work; the latter steps
every environment in Rust.
"""

from meshrl._core import (
    CorruptFileError,
    EnvStateError,
    InternalError,
    MeshrlError,
    NonFiniteError,
    TopologyError,
    __version__,
)
from meshrl.config import default_config, load_config, resolve_config
from meshrl.envs import MeshRoutingEnv, MeshRoutingVecEnv

ENV_ID = "meshrl/MeshRouting-v0"


def _register() -> None:
    import gymnasium

    if ENV_ID not in gymnasium.registry:
        gymnasium.register(
            id=ENV_ID,
            entry_point="meshrl.envs:MeshRoutingEnv",
            vector_entry_point="meshrl.envs:MeshRoutingVecEnv",
        )


_register()

__all__ = [
    "CorruptFileError",
    "ENV_ID",
    "EnvStateError",
    "InternalError",
    "MeshRoutingEnv",
    "MeshRoutingVecEnv",
    "MeshrlError",
    "NonFiniteError",
    "TopologyError",
    "__version__",
    "default_config",
    "load_config",
    "resolve_config",
]
