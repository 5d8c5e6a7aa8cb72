import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
TOPOLOGIES = pathlib.Path(os.environ.get("MESHRL_TOPOLOGIES", ROOT.parent / "shared" / "data" / "topologies"))


@pytest.fixture
def small_config():
    return str(CONFIGS / "env" / "small.toml")


@pytest.fixture
def dynamic_config():
    return str(CONFIGS / "env" / "dynamic.toml")
