"""What Ray Train runs beside a job's workers, trimmed where fnsft started Ray itself.

Ray Train 2.60 starts, for every ``TorchTrainer.fit()``, besides the controller and the workers:
a placement-group cleaner (a detached actor that polls Ray's State API every second to free the
job's placement group if the controller dies), a preemption watcher (polls for spot-instance
notices), metrics callbacks, with the Datasets callback Ray Data's dataset manager, and — from
its scaling policy — a request to Ray Data's autoscaling coordinator, a detached actor it starts
and waits for before any worker starts (measured: the train function began 2.1 s later).
Each actor is a Python process to start (~1 s of a core here) and
each poll takes CPU from the training threads: measured on 2 cores (SmolLM2 LoRA SFT, the same
TRL trainer in a plain process and in a 1-worker Train job), the helpers cost ~1 s of start-up
and ~4 % of training throughput.

On a local Ray started in this process (``ensure_ray`` without an address) none of them has a
job: the cluster ends with the driver, there are no spot instances, no dashboard serves the
metrics, and fnsft hands its workers data through the object store, not Ray Datasets. There
:func:`trainer_class` leaves them out (environment settings a user sets win). On a cluster
(``ray.address``, ``ray job submit``, Tune trials) Ray Train's defaults are kept.
"""

from __future__ import annotations

import os

# Ray Train's switches, read by the driver and propagated to the controller. (Its poll interval,
# RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, is set for every run in fnsft.distributed.train_job.)
LOCAL_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_METRICS_ENABLED": "0"}


def trainer_class(local: bool):
    """``TorchTrainer``, or (``local``) a subclass without the cleaner and Datasets callbacks.

    ``local`` also sets :data:`LOCAL_ENV` in this process's environment (unless already set):
    Ray Train reads them there and propagates them to the controller. They stay for the
    process's later Train jobs, which on a local Ray are local too.
    """
    from ray.train.torch import TorchTrainer

    if not local:
        return TorchTrainer
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    try:  # private Ray Train classes: without them (another Ray), Train's defaults stay
        from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
        from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    except ImportError:
        return TorchTrainer

    try:
        from ray.train.v2._internal.execution.scaling_policy import FixedScalingPolicy
    except ImportError:
        FixedScalingPolicy = None

    class LocalTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            callbacks = super()._create_default_callbacks()
            unused = (PlacementGroupCleanerCallback,) + (() if self.datasets else (DatasetsCallback,))
            return [c for c in callbacks if not isinstance(c, unused)]

        def _initialize_and_run_controller(self, **kwargs):
            if FixedScalingPolicy is not None and type(kwargs.get("scaling_policy")) is FixedScalingPolicy:
                kwargs["scaling_policy"] = _local_scaling_policy(FixedScalingPolicy)(self.scaling_config)
            return super()._initialize_and_run_controller(**kwargs)

    return LocalTorchTrainer if hasattr(TorchTrainer, "_create_default_callbacks") else TorchTrainer


def _local_scaling_policy(fixed):
    """Ray Train's fixed-size policy without its autoscaler requests: on a local Ray there is no
    autoscaler, and the first request starts Ray Data's autoscaling-coordinator actor (a process)
    and waits for it before any worker starts."""

    class LocalFixedScalingPolicy(fixed):
        def after_controller_start(self, train_run_context):
            pass

        async def before_controller_shutdown(self):
            pass

        def before_controller_abort(self):
            pass

        def _maybe_send_resource_request(self):
            pass

    return LocalFixedScalingPolicy
