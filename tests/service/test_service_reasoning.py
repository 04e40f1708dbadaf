"""Shared-prefix scoring and explanations over tiny ONNX graphs of the afrl/graphs.py contract."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from service_testkit import CHAIN_TEXT, DOCS, metric_value, parse_sse

QUERY = "insulated water bottle 500ml"
EXPLANATION = CHAIN_TEXT.removesuffix("<|im_end|>").strip()
VARIED = [f"{DOCS[i % 10]} " + "more detail " * (i * 3) for i in range(16)]


def best(results: list[dict], k: int) -> list[int]:
    return [r["index"] for r in sorted(results, key=lambda r: (-r["score"], r["index"]))[:k]]


def test_the_prefix_runs_once_per_request_and_is_counted(make_client, encoder):
    client, backend = make_client(prefix=True, max_batch_tokens=256)
    backend.reset()
    r = client.post("/v1/score", json={"query": QUERY, "documents": VARIED})
    assert r.status_code == 200, r.text
    methods = backend.methods()
    assert methods.count("prefix") == 1 and methods.count("score_prefix") > 1 and "score" not in methods
    p = len(encoder().encode_prefix(QUERY))
    saved = metric_value(client.get("/metrics").text, "afrl_prefix_tokens_saved_total")
    assert saved == p * (len(VARIED) - 1)
    info = client.get("/info").json()
    assert info["shared_prefix"] and info["reasoning"] and info["stream"]


def test_scores_are_the_same_alone_and_in_any_batch(make_client):
    """Within 1e-5 (FP32): alone, in one request, in small micro-batches, merged with other
    requests, and on the plain score graph versus the shared-prefix graphs."""
    runs: dict[str, list] = {}
    for name, kw in {"plain": dict(onnx=True), "prefix": dict(prefix=True)}.items():
        for budget in (8192, 200):
            client, _ = make_client(max_batch_tokens=budget, **kw)
            body = client.post("/v1/score", json={"query": QUERY, "documents": VARIED}).json()
            runs[f"{name}-{budget}"] = [r["probs"] for r in body["results"]]
        runs[f"{name}-alone"] = [
            client.post("/v1/score", json={"query": QUERY, "documents": [d]}).json()["results"][0]["probs"]
            for d in VARIED
        ]
        merged: dict[int, list] = {}

        def one(i: int, client=client, merged=merged) -> None:
            docs = [VARIED[i], VARIED[(i + 5) % len(VARIED)]]
            merged[i] = client.post("/v1/score", json={"query": QUERY, "documents": docs}).json()["results"][0]["probs"]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(VARIED))]
        [t.start() for t in threads]
        [t.join(30) for t in threads]
        runs[f"{name}-concurrent"] = [merged[i] for i in range(len(VARIED))]
    reference = np.asarray(runs["plain-alone"])
    for name, probs in runs.items():
        np.testing.assert_allclose(np.asarray(probs), reference, atol=1e-5, err_msg=name)


def test_reasoning_explains_every_returned_document_or_the_top_k(make_client):
    client, _ = make_client(prefix=True)
    everything = client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:5], "reasoning": True})
    assert everything.status_code == 200, everything.text
    assert [r["reasoning"] for r in everything.json()["results"]] == [EXPLANATION] * 5

    plain = client.post("/v1/score", json={"query": QUERY, "documents": DOCS}).json()["results"]
    top = client.post("/v1/score", json={"query": QUERY, "documents": DOCS, "reasoning": {"top_k": 3}}).json()
    explained = [r["index"] for r in top["results"] if "reasoning" in r]
    assert sorted(explained) == sorted(best(plain, 3))
    assert [r["probs"] for r in top["results"]] == [r["probs"] for r in plain]

    top_n = client.post("/v1/score", json={"query": QUERY, "documents": DOCS, "top_n": 2, "reasoning": True}).json()
    assert [r["index"] for r in top_n["results"]] == best(plain, 2)
    assert all(r["reasoning"] == EXPLANATION for r in top_n["results"])


def test_decoding_continues_from_the_score_cache_without_a_second_prefill(make_client, encoder):
    client, backend = make_client(prefix=True)
    backend.reset()
    r = client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:4], "reasoning": {"top_k": 2}})
    assert r.status_code == 200, r.text
    calls = backend.calls
    methods = [m for m, _ in calls]
    first_decode = methods.index("decode")
    assert methods[:first_decode] == ["prefix", "score_prefix"] and set(methods[first_decode:]) == {"decode"}
    (shape, past_length, last_tokens) = calls[first_decode][1]
    (doc_shape, prefix_length, kept) = calls[1][1]
    assert kept and shape == (2, 1)
    assert past_length == prefix_length + doc_shape[1]  # prefix ++ the documents' own cache
    grade_token = {g: 15 + g for g in range(5)}  # "0".."4" are tokens 15..19
    results = r.json()["results"]
    assert list(last_tokens) == [grade_token[results[i]["grade"]] for i in best(results, 2)]
    assert len(methods) - first_decode == len(encoder().tokenizer.encode(CHAIN_TEXT, add_special_tokens=False).ids)


def test_max_new_tokens_caps_each_explanation(make_client):
    client, _ = make_client(prefix=True, max_new_tokens=3)
    r = client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:2], "reasoning": True})
    assert [x["reasoning"] for x in r.json()["results"]] == ["[Conclusion"] * 2  # "\n", "[", "Conclusion"


def test_stream_event_order_scores_then_reasoning_then_done(make_client):
    client, _ = make_client(prefix=True, max_batch_tokens=200)
    plain = client.post("/v1/score", json={"query": QUERY, "documents": VARIED}).json()
    r = client.post("/v1/score", json={"query": QUERY, "documents": VARIED, "stream": True, "reasoning": {"top_k": 3}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert float(r.headers["x-inference-time-ms"]) > 0
    events = parse_sse(r.text)
    kinds = [kind for kind, _ in events]
    n = len(VARIED)
    assert kinds[:n] == ["score"] * n and kinds[-1] == "done" and set(kinds[n:-1]) == {"reasoning"}
    scores = sorted((data for kind, data in events if kind == "score"), key=lambda d: d["index"])
    assert [d["probs"] for d in scores] == [x["probs"] for x in plain["results"]]
    text: dict[int, str] = {}
    for _, data in events[n:-1]:
        text[data["index"]] = text.get(data["index"], "") + data["delta"]
    assert sorted(text) == sorted(best(plain["results"], 3)) and set(text.values()) == {EXPLANATION}
    assert events[-1][1] == {"model": "afrl-test-tiny", "usage": plain["usage"]}
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "afrl_time_to_first_reasoning_token_seconds_count") == 1
    assert metric_value(metrics, "afrl_reasoning_tokens_total") > 0


def test_stream_without_reasoning_on_a_score_only_artifact(shared):
    client, _ = shared
    r = client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:3], "stream": True})
    events = parse_sse(r.text)
    assert [k for k, _ in events] == ["score"] * 3 + ["done"]
    assert sorted(d["index"] for k, d in events if k == "score") == [0, 1, 2]


@pytest.mark.parametrize(
    "extra, status",
    [({"reasoning": True}, 413), ({"reasoning": {"top_k": 3}}, 200), ({"reasoning": True, "top_n": 3}, 200)],
)
def test_explaining_is_limited_per_request(make_client, extra, status):
    client, _ = make_client(prefix=True, max_reasoning_documents=3)
    r = client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:5], **extra})
    assert r.status_code == status, r.text
    if status == 413:
        assert "at most 3" in r.json()["error"]["message"]


class CountingDecoder:
    """A decode backend whose next token depends on each row's real past (its values and how many):
    a row that saw another row's positions, or lost its own, would decode differently."""

    vocab = 50

    def decode(self, input_ids, past):
        from service.backend import decode_mask
        from service.kv import KVCache

        mask = decode_mask(past, 1)  # (B, S + 1)
        seen = (past.tensors[0][:, 0, :, 0] * past.mask).sum(axis=1)  # (B,)
        nxt = (input_ids[:, -1] * 3 + mask.sum(axis=1) + seen.astype(np.int64)) % self.vocab
        new = input_ids[:, -1:, None, None].transpose(0, 2, 1, 3).astype(np.float32)  # (B, 1, 1, 1)
        present = [np.concatenate([t, new], axis=2) for t in past.tensors]
        return np.eye(self.vocab, dtype=np.float32)[nxt], KVCache(present, mask)


def stream_of(seed: int, documents: int, max_new_tokens: int, eos: int = 49):
    from service.kv import KVCache, prefix_cache
    from service.reasoning import ExplanationStream

    rng = np.random.default_rng(seed)
    prefix = prefix_cache([rng.integers(1, 9, (1, 1, 5 + seed, 1)).astype(np.float32)] * 2)
    docs = []
    for d in range(documents):
        n = 2 + (seed + d) % 4
        values = rng.integers(1, 9, (1, 1, n, 1)).astype(np.float32)
        docs.append(KVCache([values, values], np.ones((1, n), dtype=np.int64)))
    first = [int(x) for x in rng.integers(0, 40, documents)]
    return ExplanationStream(prefix, docs, list(range(documents)), first, eos, max_new_tokens, tokenizer=None)


def decode_all(batch, streams_at: dict[int, list], leave_at: dict[int, list] | None = None) -> dict:
    """Step `batch` until every stream is done; streams join (and leave) before the given steps."""
    tokens: dict = {}
    step, done = 0, set()
    everyone = [s for ss in streams_at.values() for s in ss]
    while len(done) < len(everyone):
        for s in streams_at.get(step, []):
            batch.add(s)
        for s in (leave_at or {}).get(step, []):
            batch.remove(s)
            done.add(s)
        out = batch.step()
        for s, produced in out.produced.items():
            for index, token in produced:
                tokens.setdefault((s, index), []).append(token)
        done |= set(out.finished)
        step += 1
        assert step < 100
    return tokens


def test_streams_decode_together_as_each_would_alone_joining_and_leaving_between_steps():
    from service.reasoning import DecodeBatch

    def streams():
        return [stream_of(0, 2, 9), stream_of(1, 3, 5), stream_of(2, 1, 12), stream_of(3, 2, 7)]

    alone = {}
    for i, s in enumerate(streams()):
        for (_, index), produced in decode_all(DecodeBatch(CountingDecoder()), {0: [s]}).items():
            alone[(i, index)] = produced
    assert len({len(v) for v in alone.values()}) > 1, "rows stop at different steps (eos or their limit)"
    fresh = streams()
    batch = DecodeBatch(CountingDecoder())
    together = decode_all(batch, {0: [fresh[0], fresh[1]], 2: [fresh[2]], 4: [fresh[3]]})
    assert {(fresh.index(s), i): v for (s, i), v in together.items()} == alone
    assert batch._past is None and not batch._owners, "every row left"
    fresh = streams()
    batch = DecodeBatch(CountingDecoder())
    partial = decode_all(batch, {0: fresh[:3]}, leave_at={2: [fresh[1]]})
    for (s, i), produced in partial.items():
        want = alone[(fresh.index(s), i)]
        assert produced == (want[:2] if s is fresh[1] else want)


def test_a_decode_turn_runs_passes_for_its_time_slice_and_yields_the_tokens_one_pass_at_a_time_would():
    from service.reasoning import DecodeBatch

    def streams():
        return [stream_of(0, 2, 9), stream_of(1, 3, 5), stream_of(2, 1, 12)]

    first = streams()
    want = {(first.index(s), i): v for (s, i), v in decode_all(DecodeBatch(CountingDecoder()), {0: first}).items()}
    fresh = streams()
    batch = DecodeBatch(CountingDecoder())
    for s in fresh:
        batch.add(s)
    turn = batch.run(slice_s=60.0)  # long enough for every row to finish in one turn
    assert len(turn.passes) == max(len(v) for v in want.values()) and turn.passes[0] == 6 and turn.passes[-1] == 1
    assert set(turn.finished) == set(fresh) and not batch._owners
    got: dict = {}
    for s, produced in turn.produced.items():
        for index, token in produced:
            got.setdefault((fresh.index(s), index), []).append(token)
    assert got == want
    batch = DecodeBatch(CountingDecoder())
    batch.add(stream_of(0, 2, 9))
    assert len(batch.run(slice_s=0.0).passes) == 1  # no slice: one pass per turn
