"""Every private hook in fnsft/compat: the installed dependency is in the range the hook was
checked against, and the private names it relies on are still there. A dependency upgrade that
moves one fails here, naming the hook, before anything fails deep in a Train worker. (What to do
then: check the hook against the new version, widen its CHECKED, or drop it for the public path.)"""

from __future__ import annotations

import importlib
import inspect

import pytest

from fnsft.compat import in_range, installed_version
from fnsft.compat import ray_autoscaler, ray_logging, ray_train, trl as trl_compat

HOOKS = {"fnsft.compat.ray_logging": ("ray", ray_logging.CHECKED),
         "fnsft.compat.ray_train": ("ray", ray_train.CHECKED),
         "fnsft.compat.ray_autoscaler": ("ray", ray_autoscaler.CHECKED),
         "fnsft.compat.trl": ("trl", trl_compat.CHECKED)}


def _range(checked) -> str:
    low, high = (".".join(map(str, v)) for v in checked)
    return f">={low},<{high}"


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_installed_version_is_the_checked_one(hook):
    package, checked = HOOKS[hook]
    assert in_range(package, *checked), (
        f"{hook} was checked against {package}{_range(checked)}, installed: {package} "
        f"{'.'.join(map(str, installed_version(package))) or 'missing'}; it now takes the public path. "
        f"Check its private names against this version and widen CHECKED, or drop the hook")


def _attr(module: str, name: str, hook: str):
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        pytest.fail(f"{hook}: {module} no longer imports ({e})")
    assert hasattr(mod, name), f"{hook}: {module}.{name} is gone"
    return getattr(mod, name)


def test_ray_logging_dispatcher_is_there():
    module, name, attrs = ray_logging.HOOK
    dispatcher = _attr(module, name, "fnsft.compat.ray_logging")
    missing = [a for a in attrs if not hasattr(dispatcher, a)]
    assert not missing, f"fnsft.compat.ray_logging: {module}.{name} lacks {missing}"
    assert tuple(inspect.signature(dispatcher.add_handler).parameters)[:2] == ("name", "handler"), \
        "fnsft.compat.ray_logging: add_handler(name, handler) changed"


def test_ray_train_report_logger_is_there():
    import logging

    module, name = ray_train.HOOK
    logger = _attr(module, name, "fnsft.compat.ray_train")
    assert isinstance(logger, logging.Logger), f"fnsft.compat.ray_train: {module}.{name} is not a Logger"
    src = inspect.getsource(importlib.import_module(module))
    assert "logger.info(" in src, f"fnsft.compat.ray_train: {module} no longer logs reports through its logger"


def test_ray_autoscaler_sources_are_there():
    for module, name, attrs in ray_autoscaler.HOOKS:
        obj = _attr(module, name, "fnsft.compat.ray_autoscaler")
        missing = [a for a in attrs if not hasattr(obj, a)]
        assert not missing, f"fnsft.compat.ray_autoscaler: {module}.{name} lacks {missing}"


def test_trl_lm_head_decision_is_there():
    for module, name in trl_compat.LM_HEAD_HOOK:
        _attr(module, name, "fnsft.compat.trl (LM head)")
    import trl.trainer.utils as trl_utils

    decide = trl_utils._use_triton
    assert tuple(inspect.signature(decide).parameters) == ("device",), \
        "fnsft.compat.trl (LM head): _use_triton(device) changed"
    # The fused head must still make its compacting choice through this module-level name.
    assert "_use_triton(hidden_states.device)" in inspect.getsource(trl_utils), \
        "fnsft.compat.trl (LM head): trl.trainer.utils no longer decides with _use_triton(hidden_states.device)"


def test_trl_dpo_private_steps_are_there():
    for (module, cls, name), params in trl_compat.DPO_HOOKS.items():
        klass = _attr(module, cls, "fnsft.compat.trl_dpo")
        method = getattr(klass, name, None)
        assert method is not None, f"fnsft.compat.trl_dpo: {module}.{cls}.{name} is gone"
        got = tuple(inspect.signature(method).parameters)[:len(params)]
        assert got == params, f"fnsft.compat.trl_dpo: {cls}.{name}{got} changed (expected {params})"
    from trl import DPOTrainer

    init = inspect.getsource(DPOTrainer.__init__)
    assert "self._precompute_engine = None" in init and "self._precompute_ref_logps(" in init, \
        "fnsft.compat.trl_dpo: DPOTrainer.__init__ no longer precomputes through _precompute_ref_logps " \
        "with a _precompute_engine"
    from fnsft.compat.trl_dpo import HOOKED

    assert HOOKED
