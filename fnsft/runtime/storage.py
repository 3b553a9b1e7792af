"""Whether the cluster's nodes can write ``ray.storage_path`` — checked before any stage starts.

Ray Train's controller and workers write checkpoints from the nodes they run on, with the
credentials and endpoint *those nodes* have (``AWS_ENDPOINT_URL``, instance roles...), not the
driver's. A bucket that does not exist, a node without credentials or an endpoint that does not
answer would otherwise surface minutes later as a Train controller traceback. Each alive node
writes, reads back and deletes one small probe file under the storage path (any pyarrow
filesystem URI: ``s3://``, ``gs://``, ``hdfs://``...), and the first failure becomes one line.
"""

from __future__ import annotations

import uuid
from typing import Optional

from fnsft.errors import ConfigError

PROBE_TIMEOUT_S = 60.0


def _probe(uri: str, name: str) -> Optional[str]:
    """On a node: write, read back and delete ``<uri>/<name>``; None, or the error's first line."""
    try:
        import pyarrow.fs as pafs

        fs, base = pafs.FileSystem.from_uri(uri)
        path = f"{base.rstrip('/')}/{name}"
        with fs.open_output_stream(path) as f:
            f.write(b"fnsft storage probe\n")
        with fs.open_input_stream(path) as f:
            if f.read() != b"fnsft storage probe\n":
                return "a probe file read back different bytes"
        fs.delete_file(path)
        return None
    except Exception as e:  # one line for the driver, whatever the filesystem raised
        first = (str(e).strip().splitlines() or [""])[0]
        return f"{type(e).__name__}: {first}"[:300]


def check_storage(uri: Optional[str], timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise one :class:`ConfigError` line when a node cannot use ``ray.storage_path`` ``uri``.

    Local paths are left alone (the driver creates them; a cluster needs a path every node
    mounts). Runs one zero-CPU task per alive node that has CPUs (where Train runs).
    """
    if not uri or "://" not in uri:  # unset (<output_dir>/ray_train) or a local path
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0] or \
        [n for n in ray.nodes() if n.get("Alive")]
    refs = {probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
        uri, f".fnsft-storage-probe-{uuid.uuid4().hex[:12]}"): n.get("NodeManagerAddress", n["NodeID"][:8])
        for n in nodes}  # one file per node: they probe at once
    done, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    hint = ("check that the bucket exists and that every node has credentials for it (for S3: "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an instance role; AWS_ENDPOINT_URL for an "
            "S3-compatible server) in the environment its Ray processes were started with")
    if pending:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise ConfigError(f"ray.storage_path: {uri} did not answer from node {refs[pending[0]]} within "
                          f"{timeout_s:.0f} s; {hint}")
    for ref in done:
        error = ray.get(ref)
        if error:
            raise ConfigError(f"ray.storage_path: node {refs[ref]} cannot write {uri} ({error}); {hint}")
