"""``python -m ops_pipelines.vectors.edge_optimize SHARD``: run Qdrant Edge's optimizers on one
shard (HNSW build, segment merges) in a process of its own; see ``EdgeVectorStore.build_index``."""

import sys

import qdrant_edge


def optimize(path: str) -> None:
    shard = qdrant_edge.EdgeShard.load(path)
    try:
        shard.optimize()
    finally:
        shard.close()


if __name__ == "__main__":
    optimize(sys.argv[1])
