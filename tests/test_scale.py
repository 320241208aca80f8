"""Vector indexes built in bounded memory: streamed from the database a chunk at a time, trained on a
sample, split into shards that are searched together, and the same answers as one index."""

import numpy as np
import pytest
from synthetic import MODEL, clustered_vectors, fill

import simsearch
from simsearch import faiss_store


@pytest.fixture(scope="module")
def synthetic_index(tmp_path_factory):
    """An index holding 6,000 synthetic 64-d embeddings (no image files: the build reads only the database)."""
    idx = simsearch.open_index(tmp_path_factory.mktemp("synthetic") / "ix", create=True)
    vectors = clustered_vectors(6000, 64, seed=3, clusters=60, rank=16)
    fill(idx.engine, vectors, batch=2500)
    idx.set_ann("ivf")
    yield idx, vectors
    idx.close()


def _exact(vectors, queries, k):
    return np.argsort(-(queries @ vectors.T), axis=1)[:, :k]


def test_sharded_build_streams_chunks_and_answers_like_exact_search(synthetic_index, monkeypatch):
    idx, vectors = synthetic_index
    monkeypatch.setattr(faiss_store, "SHARD_VECTORS", 2500)
    reads = idx._reads
    source = reads.vector_source(MODEL, chunk=700)
    seen = []
    chunks = source.chunks
    monkeypatch.setattr(reads, "vector_source", lambda model: source._replace(
        chunks=lambda: (seen.append(len(c[0])) or c for c in chunks())))
    index = reads.vector_index(MODEL)
    assert max(seen) == 700 and sum(seen) == 6000  # streamed, never all at once
    files = sorted(p.name for p in (idx.directory / "faiss").glob(f"embedding-{MODEL}*.index"))
    assert files == [f"embedding-{MODEL}.1.index", f"embedding-{MODEL}.2.index", f"embedding-{MODEL}.index"]
    assert index.kind == "ivf" and index.index.ntotal == 6000

    ids = np.array([r.id for r in idx.images()])
    queries = vectors[::60]
    found, _ = index.search(queries, 10)
    truth = ids[_exact(vectors, queries, 10)]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.95 and (found[:, 0] == ids[::60]).all()  # each vector finds itself first, by image id

    again = reads.vector_index(MODEL)  # the saved shards are read back, not rebuilt
    assert len(seen) == 9 and np.array_equal(again.search(queries, 10)[0], found)


def test_one_shard_equals_the_in_memory_build(synthetic_index):
    idx, vectors = synthetic_index
    source = idx._reads.vector_source(MODEL, chunk=1000)
    [(streamed, ids, kind)] = faiss_store.build_shards(source, "ivf")
    in_memory, _ = faiss_store.build_vectors(vectors, "ivf")
    queries = vectors[:50]
    assert kind == "ivf" and np.array_equal(streamed.search(queries, 5)[1], in_memory.search(queries, 5)[1])
    assert np.array_equal(ids, [r.id for r in idx.images()])


def test_a_flat_index_searched_again_scans_a_reduced_copy_and_answers_exactly(synthetic_index, monkeypatch):
    """From the second search of a large flat index, a few queries at a time scan a copy projected onto the
    vectors' main directions and re-score the candidates exactly: the same neighbours, in the same order
    (equal similarities too), with the same similarities."""
    monkeypatch.setattr(faiss_store, "REDUCED_DIMS", 24)  # of 64: the copy loses something, as at 256 of 1280
    _idx, vectors = synthetic_index
    vectors = vectors.copy()
    vectors[[40, 900, 2500]] = vectors[7]  # three copies of one vector: equal similarities
    flat, kind = faiss_store.build_vectors(vectors, "flat")
    ids = np.arange(len(vectors), dtype=np.int64) + 100
    index = faiss_store.VectorIndex(flat, ids, kind)
    queries = vectors[::97] * 0.9 + vectors[1::97] * 0.1
    queries = np.vstack([vectors[7], queries / np.linalg.norm(queries, axis=1, keepdims=True)])
    exact = [flat.search(queries[n : n + 1], 10) for n in range(len(queries))]
    first = [index.search(queries[n : n + 1], 10) for n in range(len(queries))]
    assert index._reduced is not None and kind == "flat"  # made on the second search
    assert index._reduced.fallbacks < len(queries) // 10  # the bound proved nearly every answer
    for (sims, rows), (found, found_sims) in zip(exact, first):
        assert np.array_equal(found, ids[rows]) and np.array_equal(found_sims, sims)
    many = index.search(queries, 10)  # a batch goes through one matrix product on the float vectors
    assert np.array_equal(many[0], ids[flat.search(queries, 10)[1]])


def test_a_reduced_scan_that_cannot_prove_its_answer_scans_every_vector(synthetic_index):
    """Projected onto two directions, the copy loses too much for the bound to prove an answer: each query
    falls back to the float vectors, and the results are still the flat index's."""
    _idx, vectors = synthetic_index
    flat, _ = faiss_store.build_vectors(vectors, "flat")
    scan = faiss_store.ReducedScan(flat, dims=2)
    queries = vectors[::211]
    sims, rows = scan.search(queries, 5)
    assert scan.fallbacks == len(queries)
    expected_sims, expected_rows = flat.search(queries, 5)
    assert np.array_equal(rows, expected_rows) and np.array_equal(sims, expected_sims)
