"""deploy/slurm/render.py, imported from its path (it is a script, not a package module)."""

import importlib.util
import sys
from types import ModuleType

from tests.deploy.files import ROOT

SLURM = ROOT / "deploy" / "slurm"


def load_render() -> ModuleType:
    spec = importlib.util.spec_from_file_location("turnout_slurm_render", SLURM / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module
