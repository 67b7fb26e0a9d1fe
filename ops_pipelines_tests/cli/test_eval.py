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

    # one slice of the container: the queries about its documents, searched among its points
    code, out = run("eval", "kb1", "--filter", "extension=md")
    assert code == 0 and ": 3 queries of golden set " in out and out.splitlines()[0].endswith(", slice extension=md")
    assert "apples  " in out and "top notes/epsilon.txt" not in out
    code, out = run("eval", "kb1", "--filter", "extension=txt")
    assert code == 0 and ": 1 queries of golden set " in out
    code, out = run("eval", "kb1", "--filter", "path=nothing.md")
    assert code == 1 and "no query of the golden set has all its relevant documents in the slice path=nothing.md" in out
    code, out = run("eval", "kb1", "--filter", "colour=red")
    assert code == 1 and "no field 'colour'; they carry extension, path" in out

    # the gate calibrated g2's least score, which eval reports
    code, out = run("eval", "kb1")
    assert code == 0 and "least score " in out and "made-up queries get no match" in out
    # a version's own least score: search says "no match" below it
    with extra_embedders.open("a") as registry:
        registry.write('\n[versions."hash-256-strict@1"]\nprovider = "hashing"\ndimension = 256\nmin_score = 0.3\n')
    assert run("refresh", "kb1", "--embedder-version", "hash-256-strict@1")[0] == 0
    code, out = run("search", "kb1", "zorblax quintessimo")
    assert code == 0 and out.startswith("no match: the best hit scores ") and "least score 0.300" in out
    code, out = run("search", "kb1", "apples and orchards")
    assert code == 0 and "[alpha.md]" in out.splitlines()[0], out


def test_eval_gate_shows_and_sets_a_container_s_bounds(home, corpus, monkeypatch):
    monkeypatch.setenv("OPS_QUALITY_TOLERANCE", "0.03")
    run("container", "add", "--slug", "kb1", "--source", f"folder:{corpus}", "--embedder", "hash-256@1")
    code, out = run("eval", "gate", "kb1")
    assert code == 0 and out.splitlines() == [
        "tolerance 0.030  (the default, OPS_QUALITY_TOLERANCE)", "floor     0.000  (the default, OPS_QUALITY_FLOOR)",
    ]
    code, out = run("eval", "gate", "kb1", "--tolerance", "0.1", "--floor", "0.5")
    assert out.splitlines() == ["tolerance 0.100  (its own)", "floor     0.500  (its own)"]
    code, out = run("eval", "gate", "kb1", "--tolerance", "2")
    assert code != 0 and "2" in out and run("eval", "gate", "kb1")[1].startswith("tolerance 0.100")
    code, out = run("eval", "gate", "kb1", "--default")
    assert out.splitlines()[0] == "tolerance 0.030  (the default, OPS_QUALITY_TOLERANCE)"
