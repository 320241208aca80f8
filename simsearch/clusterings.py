"""Stored k-medoids runs: make one over an index's embeddings or hashes, list runs,
their clusters and their members."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select

from .errors import InvalidArgument
from .reads import ImageRecord, Reads
from .schema import HASH_METHODS, ClusteringRun, ClusterMember

_INSERT_ROWS = 50_000


@dataclass(frozen=True)
class Member:
    """An image in a cluster, with its distance to the cluster's medoid (1 - cosine, or bits)."""

    image: ImageRecord
    cluster: int
    distance: float
    medoid: bool


def make_clustering(reads: Reads, k: int | None, *, auto: bool, by: str, model: str | None, name: str | None,
                    seed: int, exact_below: int | None, solver: str = "pam") -> dict:
    """k-medoids over the indexed images, stored under ``name``; clusters numbered from 1, largest first."""
    from .cluster import EXACT_BELOW  # noqa: PLC0415 - loads on use
    from .cluster import cluster as kmedoids_run

    if by not in ("embedding",) + HASH_METHODS:
        raise InvalidArgument(f"cannot cluster by {by!r}; choose embedding or one of {', '.join(HASH_METHODS)}")
    if by == "embedding":
        model = reads.model(model)
        ids, features = reads.vectors(model)
    else:
        model = None
        ids, features = reads.hash_codes(by)
    name = name or time.strftime("run-%Y%m%d-%H%M%S")
    if any(run["name"] == name for run in clusterings(reads)):
        raise InvalidArgument(f"a clustering named {name!r} exists; choose another name")
    result = kmedoids_run(features, by, k, auto=auto, seed=seed, exact_below=exact_below or EXACT_BELOW,
                          solver=solver)
    sizes = np.bincount(result.labels, minlength=len(result.medoids))
    number = np.empty(len(sizes), dtype=np.int64)
    number[np.argsort(-sizes, kind="stable")] = np.arange(1, len(sizes) + 1)
    is_medoid = np.zeros(len(ids), dtype=bool)
    is_medoid[result.medoids] = True
    params = {"seed": seed, "auto": auto, "solver": solver, "silhouette_by_k": result.scores}
    with reads.engine.begin() as conn:
        run_id = conn.execute(ClusteringRun.__table__.insert().values(
            name=name, by=by, model=model, k=result.k, scheme=result.scheme, loss=result.loss,
            silhouette=result.silhouette, params=json.dumps(params), created_at=time.time(),
        )).inserted_primary_key[0]
        rows = [{"clustering_id": run_id, "image_id": int(i), "cluster": int(number[label]),
                 "distance": float(d), "is_medoid": bool(m)}
                for i, label, d, m in zip(ids, result.labels, result.distances, is_medoid)]
        for start in range(0, len(rows), _INSERT_ROWS):
            conn.execute(ClusterMember.__table__.insert(), rows[start : start + _INSERT_ROWS])
    return run_info(reads, name)


def clusterings(reads: Reads) -> list[dict]:
    """Every stored clustering run, oldest first."""
    with reads.engine.connect() as conn:
        runs = conn.execute(select(ClusteringRun).order_by(ClusteringRun.id)).all()
        counts = dict(conn.execute(select(ClusterMember.clustering_id, func.count())
                                   .group_by(ClusterMember.clustering_id)).all())
    # runs stored before the solver was recorded were made by the kmedoids package
    return [{"name": r.name, "by": r.by, "model": r.model, "k": r.k, "scheme": r.scheme,
             "solver": json.loads(r.params).get("solver", "kmedoids"), "images": counts.get(r.id, 0),
             "loss": round(r.loss, 4),
             "silhouette": None if r.silhouette is None else round(r.silhouette, 4),
             "silhouette_by_k": json.loads(r.params).get("silhouette_by_k", {}),
             "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at))} for r in runs]


def scheme_text(run: dict) -> str:
    """How a run's medoids were found, in words."""
    if run["scheme"] == "exact":
        return f"k-medoids ({run['solver']}) on every image"
    return f"CLARA ({run['solver']} on samples, FAISS assignment)"


def run_info(reads: Reads, run: str) -> dict:
    run_id(reads, run)  # a clear error for an unknown run
    return next(r for r in clusterings(reads) if r["name"] == run)


def clusters(reads: Reads, run: str) -> list[dict]:
    """The clusters of ``run``: number, size, medoid image and mean distance to it."""
    rid = run_id(reads, run)
    with reads.engine.connect() as conn:
        stats = conn.execute(
            select(ClusterMember.cluster, func.count(), func.avg(ClusterMember.distance))
            .where(ClusterMember.clustering_id == rid).group_by(ClusterMember.cluster)
            .order_by(ClusterMember.cluster)).all()
        medoids = dict(conn.execute(select(ClusterMember.cluster, ClusterMember.image_id).where(
            ClusterMember.clustering_id == rid, ClusterMember.is_medoid)).all())
    records = reads.records(medoids.values())
    return [{"cluster": c, "size": n, "medoid": records[medoids[c]], "mean_distance": round(float(avg), 4)}
            for c, n, avg in stats]


def cluster_members(reads: Reads, run: str, cluster: int) -> list[Member]:
    """The images of one cluster of ``run``: the medoid first, then by distance to it."""
    rid = run_id(reads, run)
    with reads.engine.connect() as conn:
        rows = conn.execute(
            select(ClusterMember.image_id, ClusterMember.distance, ClusterMember.is_medoid)
            .where(ClusterMember.clustering_id == rid, ClusterMember.cluster == cluster)
            .order_by(ClusterMember.is_medoid.desc(), ClusterMember.distance, ClusterMember.image_id)).all()
    if not rows:
        raise InvalidArgument(f"clustering {run!r} has no cluster {cluster}")
    records = reads.records(r[0] for r in rows)
    return [Member(records[i], cluster, round(float(d), 6), bool(m)) for i, d, m in rows]


def run_id(reads: Reads, run: str) -> int:
    with reads.engine.connect() as conn:
        found = conn.execute(select(ClusteringRun.id).where(ClusteringRun.name == run)).scalar()
    if found is None:
        raise InvalidArgument(f"no clustering named {run!r}; see simsearch clusters")
    return found
