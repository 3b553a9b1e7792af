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

On a local Ray, too, the controller is started without a runtime environment when the Ray's
processes inherited everything that environment would set, so it takes one of the worker
processes Ray starts in advance instead of a new one (:func:`_controller_without_runtime_env`).
"""

from __future__ import annotations

import os

from fnsft.distributed.ray_runtime import LOCAL_TRAIN_ENV

# Ray Train's switches, read by the driver and propagated to the controller. (Its poll interval,
# RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, is set for every run in fnsft.distributed.train_job.)
LOCAL_ENV = {k: LOCAL_TRAIN_ENV[k] for k in ("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "RAY_TRAIN_METRICS_ENABLED")}


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
            run = _controller_without_runtime_env(self, kwargs)
            return run() if run is not None else super()._initialize_and_run_controller(**kwargs)

    return LocalTorchTrainer if hasattr(TorchTrainer, "_create_default_callbacks") else TorchTrainer


def _controller_without_runtime_env(trainer, kwargs):
    """A function running Ray Train's controller start (Ray 2.60's
    ``DataParallelTrainer._initialize_and_run_controller``; other versions keep their own)
    without its runtime environment, when the processes of the local Ray inherited every
    variable that environment would set (:func:`fnsft.distributed.ray_runtime.inherits`); else
    None (Ray Train's own start runs).

    Ray Train always gives the controller a runtime environment (the variables it propagates),
    and Ray starts a new worker process for any runtime environment it has no idle process
    for. Without one the controller takes a process Ray started in advance: measured on a
    no-op 2-worker job, the train function starts ~1 s sooner (4.4-4.6 s instead of 5.3-5.4 s
    after ``fit()``), because the controller's process start is the first link of the chain.
    """
    import threading

    import ray

    from fnsft.distributed.ray_runtime import inherits

    if not ray.__version__.startswith("2.60."):  # the start copied below is Ray 2.60's
        return None
    try:
        from ray._raylet import RAY_NODE_ID_KEY
        from ray.train.v2._internal.constants import (DEFAULT_RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_VALUE,
                                                      RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR,
                                                      get_env_vars_to_propagate)
        from ray.train.v2._internal.execution.controller import TrainController
    except ImportError:  # another Ray: its own start
        return None
    env = get_env_vars_to_propagate()  # what Ray Train's start would give the controller
    env.setdefault(RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR, DEFAULT_RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_VALUE)
    if not inherits(env) or not hasattr(trainer, "_register_sigint_handler"):
        return None

    def run():
        node = ray.get_runtime_context().get_node_id()
        controller = ray.remote(num_cpus=0, label_selector={RAY_NODE_ID_KEY: node})(
            TrainController).remote(**kwargs)
        if threading.current_thread() is threading.main_thread():
            trainer._register_sigint_handler(controller)
        ray.get(controller.run.remote())
        return ray.get(controller.get_result.remote())

    return run


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
