import os
import pathlib

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (a green run stays green, as with
# PROPTEST_RNG_SEED for the Rust ones); HYPOTHESIS_PROFILE=explore draws new ones.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
TOPOLOGIES = pathlib.Path(os.environ.get("MESHRL_TOPOLOGIES", ROOT.parent / "shared" / "data" / "topologies"))


@pytest.fixture
def small_config():
    return str(CONFIGS / "env" / "small.toml")


@pytest.fixture
def dynamic_config():
    return str(CONFIGS / "env" / "dynamic.toml")
