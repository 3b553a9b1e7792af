"""Connect to Ray, or start it in-process, the way the config and environment ask."""

from __future__ import annotations

import logging
import os

log = logging.getLogger("fnsft")


def ensure_ray(cfg) -> None:
    """Join ``ray.address`` / ``RAY_ADDRESS`` when given, else start a local Ray (127.0.0.1)."""
    import ray

    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    # Our own stdout already has the progress; Ray's per-worker log prefixes stay on.
    if address:
        log.info("Connecting to Ray at %s", address)
        ray.init(address=address, namespace=cfg.namespace, log_to_driver=True)
    else:
        log.info("Starting a local Ray instance (dashboard: %s)",
                 f"http://{cfg.dashboard_host}:8265" if cfg.include_dashboard else "off")
        ray.init(
            num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, namespace=cfg.namespace,
            include_dashboard=cfg.include_dashboard, dashboard_host=cfg.dashboard_host,
            _node_ip_address="127.0.0.1", log_to_driver=True,
            runtime_env={"worker_process_setup_hook": "fnsft.distributed.ray_runtime.quiet_ray_internals"},
        )


def quiet_ray_internals() -> None:
    """Ray worker setup hook (local runs): silence Ray Train's once-a-second State API warning.

    Train V2's placement-group cleaner polls the State API, which needs the dashboard; with the
    dashboard off (our local default) or a busy machine every poll logs "Failed to query Ray
    Train Controller actor state", hundreds of lines in a long stage. Nothing else is changed.
    """
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0
