"""`ops-pipelines eval`: golden sets registered, shown, evaluated and compared, as an operator would."""

from __future__ import annotations

from ops_pipelines_tests.cli.test_commands import run
from ops_pipelines_tests.quality.test_evaluate import GOLDEN


def test_eval_commands(home, corpus, tmp_path, extra_embedders):
    golden = tmp_path / "golden.jsonl"
    golden.write_text(GOLDEN)
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    code, out = run("eval", "kb1")
    assert code == 1 and "kb1 has no golden set: register one with ops-pipelines eval set kb1 FILE" in out
    code, out = run("eval", "set", "kb1", str(golden))
    assert code == 1 and "no active document for: alpha.md" in out  # nothing synced yet
    assert run("sync", "kb1")[0] == 0
    code, out = run("eval", "set", "kb1", str(golden))
    assert code == 0 and "golden set of kb1: 4 queries, version " in out and "(registered)" in out

    code, out = run("eval", "show", "kb1")
    assert "(in use)" in out and "ice     glaciers and mountain valleys  ->  gamma.md (2), delta.md" in out

    code, out = run("eval", "kb1")
    assert code == 0, out
    assert out.startswith("kb1 g1 hash-256@1: 4 queries of golden set ")
    assert "recall@10 " in out and "mrr@10 " in out and "ndcg@10 " in out
    assert "apples  recall 1.00  rr 1.00  ndcg 1.00  top alpha.md  apples and orchards" in out

    assert run("refresh", "kb1", "--embedder-version", "hash-64@1")[0] == 0
    code, out = run("eval", "compare", "kb1", "1", "2")
    assert code == 0, out
    assert "g1 hash-256@1" in out.splitlines()[0] and "g2 hash-64@1" in out.splitlines()[0]
    assert out.splitlines()[1].startswith("recall@10")
    code, out = run("eval", "kb1", "--generation", "7")
    assert code == 1 and "kb1 has no generation 7 to evaluate (kept: g1, g2)" in out
