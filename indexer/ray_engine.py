"""The Ray engine (``index --engine ray``, the ``simsearch[ray]`` extra): the indexing run's per-file stage
(read, digest, decode, hash, model inputs) and its models run as Ray Data ``map_batches`` stages over the
cluster, and the results stream back, in task order, to the driver, which writes them exactly as the local
engine does.
- On CPUs: a pool of actors, one per CPU, each doing whole files (the per-file stage, then any models on one
  thread), as the local engine's workers do.
- With GPUs: the per-file stage as tasks spread over the CPUs, feeding a pool of model actors, one per GPU.

Files are read where they live: every node must see the paths (a shared filesystem). A task or actor whose
process dies (a node lost, a decoder that kills it) is tried once more. When the cluster fails the run all the
same (a file that kills its process twice), the files it has not yet returned are finished on the driver's
machine by the local engine's workers, where a file that kills its process is recorded as a failure like any
other.
"""

from __future__ import annotations

import logging
import pickle
import socket
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from simsearch.errors import InvalidArgument

from .features import ModelJobs, Result, Task, extract, infer, make_models
from .workers import CHUNK, extract_all, worker_pool

# files per Ray Data block and per call of each stage. Ray Data costs about 0.1 s a block: hashes alone (as tasks),
# 4,984 files on 2 cores, took 18 to 20 s in blocks of 128, 14 to 15 s in 512, 15 to 17 s in 1024 (too few to
# overlap); as actors, 256 ran no faster than 512
BLOCK = 512
# with models: 128 files ran faster than 512 (embeddings on CPU actors: 135 s against 152 s on 19,936 files); with
# a GPU actor a block carries each file's network input, and 128 ran as fast as 512 in a quarter of the memory
MODEL_BLOCK = 128
# the CPUs a decoding task reserves beside a GPU actor (which holds one): a quarter more tasks than free cores, as
# the GPU figures were measured
_GPU_FEEDER_CPUS = 0.75
_ACTORS_READY_S = 300  # how long a run waits for its actors to start (then: the local fallback)
# a task whose worker died, or an actor that died (restarted once in a run), is tried once more before the local
# fallback: a file that kills its process fails twice, a lost node once
_RETRIES = 1


def require_ray():
    try:
        import ray  # noqa: PLC0415
    except ImportError:
        raise InvalidArgument.hinted("the Ray engine needs Ray: pip install 'simsearch[ray]' (or use {})",
                                     'engine="local"', "--engine local") from None
    return ray


def check_cluster(address: str | None) -> None:
    """Fail at once where Ray is not installed or ``address`` does not answer (unless the caller's own Ray
    session is running): before any work, even where the run turns out to have none."""
    ray = require_ray()
    if address and not ray.is_initialized():
        check_reachable(address)


@contextmanager
def ray_cluster(address: str | None):
    """Ray, joined to the cluster at ``address``, or to a local instance started (and stopped) here
    (``check_cluster`` first)."""
    ray = require_ray()
    if ray.is_initialized():  # the caller's own session (the API inside a Ray program)
        yield ray
        return
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
        import ray.data  # noqa: PLC0415 - configures its logger on import: quieten it after

        for name in ("ray", "ray.data"):  # the run prints its own summary; Ray's log files keep the rest
            logging.getLogger(name).setLevel(logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InvalidArgument(f"cannot join the Ray cluster at {address}: {exc} (a cluster made by `ray start` "
                              "uses token authentication: set RAY_AUTH_MODE=token, and RAY_AUTH_TOKEN unless "
                              "the token is in ~/.ray/auth_token)") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def check_reachable(address: str) -> None:
    """A HOST:PORT that does not answer fails here at once (Ray itself would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or "://" in address or not port.isdigit():
        return  # ray://, auto, and other forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise InvalidArgument(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from None


@dataclass
class RayStages:
    """The per-file and model stages of a run on a Ray cluster. ``nodes`` counts, per stage (``extract``,
    ``models``), the files each node did; ``fallback`` those finished locally."""

    ray: object
    jobs: ModelJobs | None  # the models the actors run (None: no models, or the driver runs them)
    workers: int  # local worker processes for the fallback
    nodes: dict[str, Counter] = field(default_factory=lambda: {"extract": Counter(), "models": Counter()})
    fallback: int = 0

    @property
    def block(self) -> int:
        return BLOCK if self.jobs is None else MODEL_BLOCK

    @property
    def _on_gpu(self) -> bool:
        return self.jobs is not None and self.jobs.device.startswith("cuda")

    def results(self, tasks: list[Task]) -> Iterator[Result]:
        """Results in task order, as ``workers.extract_all`` gives them."""
        done = 0
        try:
            for batch in self._dataset(tasks).iter_batches(batch_size=CHUNK, batch_format="numpy",
                                                           prefetch_batches=4):
                self.nodes["extract"].update(batch["node"].tolist())
                if "model_node" in batch:
                    self.nodes["models"].update(batch["model_node"].tolist())
                for blob in batch["result"]:
                    yield pickle.loads(blob)
                    done += 1
        except self.ray.exceptions.RayError:
            rest = tasks[done:]  # task order: everything after the last result came back is redone here
            self.fallback += len(rest)
            yield from self._local(rest)

    def _dataset(self, tasks: list[Task]):
        data = self.ray.data
        context = data.DataContext.get_current()  # a dataset keeps the settings it was made with
        context.execution_options.preserve_order = True  # same order, same image ids as the local engine
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        # actors get files once every actor has started and loaded its models (else the first ones ready take the
        # first blocks), and whichever actor is free gets the next: a block is a list of paths, so the node that
        # holds it is no reason to wait
        context.wait_for_min_actors_s = _ACTORS_READY_S
        # at least two blocks per CPU of the cluster, so a short run still reaches every node
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        blocks = max(-(-len(tasks) // self.block), min(2 * cpus, len(tasks)), 1)
        per_block = -(-len(tasks) // blocks)  # each stage's call takes one block (a larger batch would join them)
        ds = data.from_items([{"task": pickle.dumps(t)} for t in tasks], override_num_blocks=blocks)
        # remote args and the locality switch are deprecated from Ray 2.60 with no named replacement yet: a run
        # of the API should not print Ray's deprecation notices
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.execution_options.actor_locality_enabled = False  # whichever actor is free: see above
            if not self._on_gpu:
                return self._whole_files(ds, cpus, per_block)
            # Ray Data retries a dead task for ever by default: a file that kills its worker would never end the run
            # SPREAD: decoding goes to every node's cores, not first to the driver's
            ds = ds.map_batches(_extract_batch, batch_size=per_block, batch_format="numpy", num_cpus=_GPU_FEEDER_CPUS,
                                max_retries=_RETRIES, scheduling_strategy="SPREAD")
            return self._models(ds, per_block)

    def _whole_files(self, ds, cpus: int, per_block: int):
        """On CPUs: a pool of actors, one per CPU, each doing whole files (the per-file stage, then any models on one
        thread), as the local engine's workers do. No pixels cross between processes and no core waits for another
        stage: in two stages (decoding tasks feeding model actors) embeddings ran at 0.84x the local engine's
        steady rate on 19,936 files, 0.92x like this. Hashes alone ran 5 % faster than as tasks (a task's worker
        waits between blocks; an actor has the next one queued). An actor that dies is restarted once and its
        block tried again; after that the dataset ends, and the rest is finished locally."""
        # as many actors as the cluster has CPUs free now: the run waits for every actor (``_ACTORS_READY_S``), so
        # CPUs another job holds would only delay it
        size = max(1, min(cpus, int(self.ray.available_resources().get("CPU", 0))))
        return ds.map_batches(_WholeFiles, fn_constructor_kwargs={"jobs": self.jobs}, batch_format="numpy",
                              batch_size=per_block, compute=self.ray.data.ActorPoolStrategy(size=size), num_cpus=1,
                              max_restarts=_RETRIES, max_task_retries=_RETRIES)

    def _models(self, ds, per_block: int):
        """The model stage on GPUs: a pool of actors, one per GPU, restarted once like the whole-file actors."""
        return ds.map_batches(_ModelStage, fn_constructor_kwargs={"jobs": self.jobs}, batch_format="numpy",
                              batch_size=per_block,
                              compute=self.ray.data.ActorPoolStrategy(size=int(self.ray.cluster_resources()["GPU"])),
                              num_gpus=1, num_cpus=1, max_restarts=_RETRIES, max_task_retries=_RETRIES)

    def _local(self, tasks: list[Task]) -> Iterator[Result]:
        """The local engine's crash-isolating workers (spawned: this process runs Ray's threads)."""
        with worker_pool(self.workers, len(tasks), isolate=True, start_method="spawn") as pool:
            yield from extract_all(tasks, pool, None, ahead=4 * CHUNK)


def _extract_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    results, node = _extracted(batch)
    return {"result": _blobs(results), "node": node}


def _extracted(batch: dict[str, np.ndarray]) -> tuple[list[Result], np.ndarray]:
    """The per-file stage of a block's tasks, and this node's id for each file."""
    import ray  # noqa: PLC0415

    results = [extract(pickle.loads(blob)) for blob in batch["task"]]
    return results, np.array([ray.get_runtime_context().get_node_id()] * len(results))


class _ModelStage:
    """An actor holding the run's models (ONNX Runtime on a CPU, torch on its GPU), or none (hashes only)."""

    def __init__(self, jobs: ModelJobs | None):
        self.embedder, self.tagger = make_models(jobs) if jobs is not None else (None, None)
        self.min_score = jobs.min_score if jobs is not None else 0.0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray  # noqa: PLC0415

        results = infer([pickle.loads(blob) for blob in batch["result"]], self.embedder, self.tagger, self.min_score)
        node = ray.get_runtime_context().get_node_id()
        return {"result": _blobs(results), "node": batch["node"], "model_node": np.array([node] * len(results))}


class _WholeFiles(_ModelStage):
    """An actor doing the whole of each file on a CPU: decoding, hashes, then the models."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results, node = _extracted(batch)
        if self.embedder is None and self.tagger is None:
            return {"result": _blobs(results), "node": node}
        results = infer(results, self.embedder, self.tagger, self.min_score)
        return {"result": _blobs(results), "node": node, "model_node": node}


def _blobs(results: list[Result]) -> np.ndarray:
    out = np.empty(len(results), dtype=object)
    out[:] = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in results]
    return out
