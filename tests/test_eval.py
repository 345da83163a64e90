"""eval.py: BFCL prompts as Tool-N1's handler builds them, scoring and re-scoring stored outputs, end-to-end runs
of a tiny random checkpoint (hand-made BFCL files, and the real ones when bfcl-eval is installed), the held-out
--data path, and the error messages."""
import copy
import importlib
import json
import os

import pytest

from tooln1_min.data import DEFAULT_SYSTEM, EMPTY_CALL_NOTE, load_records
from tooln1_min.demo import QUICK, DemoConfig, make_base, make_data
from tooln1_min.tokenizer import Tokenizer

ev = importlib.import_module("eval")  # eval.py at the repo root; `import eval` would shadow the builtin

HYPOT = {"name": "math.hypot", "description": "Euclidean norm.",
         "parameters": {"type": "dict", "properties": {"x": {"type": "integer", "description": "x side"},
                                                       "y": {"type": "integer", "description": "y side"}},
                        "required": ["x", "y"]}}
JAVA_DOC = {"name": "Sorter.sort", "description": "Sort a list.",
            "parameters": {"type": "dict", "properties": {
                "items": {"type": "ArrayList", "items": {"type": "String"}, "description": "What to sort."},
                "limit": {"type": "integer", "description": "How many."},
                "cmp": {"type": "any", "description": "Comparator."}}, "required": ["items"]}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(checkpoint folder, held-out JSONL) of a tiny random Qwen2 built by the demo's stage functions."""
    cfg = DemoConfig(**{**QUICK, "out": str(tmp_path_factory.mktemp("tiny"))})
    data = make_data(cfg, "k")
    return make_base(cfg, data, "k"), os.path.join(data, "test.jsonl")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Results files without --out land in the working folder: a test's own, not the repository."""
    monkeypatch.chdir(tmp_path)


def _write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


@pytest.fixture()
def bfcl_dir(tmp_path):
    """A hand-made BFCL data folder: 3 simple_python entries (one with a prompt no model of 2048 positions
    can hold) and 2 irrelevance entries, in the package's file layout."""
    long_doc = {**HYPOT, "name": "long_fn", "description": "1" * 3000}  # digits are single tokens: > 2048 tokens
    simple = [{"id": "simple_python_0", "question": [[{"role": "user", "content": "Hypotenuse of 3 and 4?"}]],
               "function": [HYPOT]},
              {"id": "simple_python_1", "question": [[{"role": "system", "content": "SECRET SYSTEM TEXT"},
                                                      {"role": "user", "content": "Hypotenuse of 5 and 12?"}]],
               "function": [HYPOT]},
              {"id": "simple_python_2", "question": [[{"role": "user", "content": "Long one."}]],
               "function": [long_doc]}]
    answers = [{"id": "simple_python_0", "ground_truth": [{"math.hypot": {"x": [3], "y": [4]}}]},
               {"id": "simple_python_1", "ground_truth": [{"math.hypot": {"x": [5], "y": [12]}}]},
               {"id": "simple_python_2", "ground_truth": [{"long_fn": {"x": [1], "y": [2]}}]}]
    irrelevance = [{"id": f"irrelevance_{i}", "question": [[{"role": "user", "content": "Tell me a joke."}]],
                    "function": [HYPOT]} for i in range(2)]
    _write_jsonl(tmp_path / "bfcl" / "BFCL_v4_simple_python.json", simple)
    _write_jsonl(tmp_path / "bfcl" / "possible_answer" / "BFCL_v4_simple_python.json", answers)
    _write_jsonl(tmp_path / "bfcl" / "BFCL_v4_irrelevance.json", irrelevance)
    return str(tmp_path / "bfcl")


# ---------------------------------------------------------------------------------------------------------
# Prompts


def test_prompt_replaces_system_lists_tools_verbatim_and_ends_with_generation_prompt(tiny):
    tok = Tokenizer.from_pretrained(tiny[0])
    entry = {"id": "live_simple_0", "function": [HYPOT],
             "question": [[{"role": "system", "content": "SECRET SYSTEM TEXT"},
                           {"role": "user", "content": "Hypotenuse of 3 and 4?"}]]}
    prompt = ev.bfcl_prompt(tok, entry, "live_simple", hints=False)
    assert prompt.startswith("<|im_start|>system\n" + DEFAULT_SYSTEM)
    assert prompt.count("<|im_start|>system") == 1 and "SECRET SYSTEM TEXT" not in prompt  # replaced, not merged
    tool_lines = [line for line in prompt.splitlines() if line.startswith('{"type": "function"')]
    assert [json.loads(line) for line in tool_lines] == [{"type": "function", "function": HYPOT}]
    assert '"name": "math.hypot"' in prompt  # dotted names stay as BFCL wrote them
    assert EMPTY_CALL_NOTE in prompt  # irrelevance sets need the no-call reply
    assert prompt.endswith("<|im_start|>user\nHypotenuse of 3 and 4?<|im_end|>\n<|im_start|>assistant\n")
    assert entry["question"][0][0]["role"] == "system"  # the entry itself is untouched


def test_language_hints_follow_bfcl_and_leave_the_checker_docs_alone():
    original = copy.deepcopy([JAVA_DOC])
    java = ev.language_hints([JAVA_DOC], "simple_java")[0]
    assert [JAVA_DOC] == original
    assert java["name"] == "Sorter.sort" and java["description"].endswith("in Java 8 SDK syntax.")
    props = java["parameters"]["properties"]
    assert {p["type"] for p in props.values()} == {"string"}  # Java values are checked as source text
    assert "items" not in props["items"] and "elements are of type String" in props["items"]["description"]
    assert "Java integer type parameter in string representation" in props["limit"]["description"]
    assert "any type of Java object" in props["cmp"]["description"]
    python = ev.language_hints([HYPOT], "multiple")[0]
    assert python["description"].endswith("Python 3 syntax.") and python["parameters"] == HYPOT["parameters"]
    msgs = ev.bfcl_messages({"function": [JAVA_DOC], "question": [[{"role": "user", "content": "q"}]]},
                            "simple_java")
    assert '"type": "ArrayList"' not in msgs[0]["content"] and "Java 8 SDK" in msgs[0]["content"]


def test_language_hints_match_bfcl_on_every_entry():
    """The docs the model sees are exactly those BFCL's harness shows any prompting model."""
    pytest.importorskip("bfcl_eval", reason="bfcl-eval not installed (pip install --no-deps bfcl-eval)")
    try:
        from bfcl_eval.utils import _func_doc_language_specific_pre_processing as official
    except ImportError as e:  # a private helper; other bfcl-eval versions may move it
        pytest.skip(f"this bfcl-eval has no _func_doc_language_specific_pre_processing ({e})")
    from tooln1_min import bfcl
    data_dir, count = bfcl.find_bfcl_dir(), 0
    for category in bfcl.CATEGORIES:
        for entry in bfcl.load_category(data_dir, category):
            expected = official(copy.deepcopy(entry["function"]), category)
            assert ev.language_hints(entry["function"], category) == expected, entry["id"]
            count += 1
    assert count > 3000


# ---------------------------------------------------------------------------------------------------------
# Scoring stored outputs


def _results_file(path, bfcl_dir, outputs):
    with open(path, "w") as f:
        json.dump({"bench": "bfcl", "model": "m", "bfcl_dir": bfcl_dir, "summary": {}, "outputs": outputs}, f)
    return str(path)


def test_rescore_recomputes_calls_and_scores_from_raw_text(bfcl_dir, tmp_path):
    def out(i, category, text, **kw):
        return {"id": f"{category}_{i}", "category": category, "prompt_tokens": 10, "text": text,
                "ok": "stale", "reason": "stale", **kw}

    outputs = [
        out(0, "simple_python", '<think>x</think><tool_call>[{"name": "math.hypot", "arguments": {"x": 3, "y": 4}}]'
                                '</tool_call><tool_call>[]</tool_call>'),  # only the first block counts
        out(1, "simple_python", '<tool_call>[{"name": "math.hypot", "arguments": {"x": 5, "y": 13}}]</tool_call>'),
        out(2, "simple_python", None, skipped=True, reason="prompt too long: 9999 tokens"),
        out(0, "irrelevance", "<think>no tool fits</think><tool_call>[]</tool_call>"),  # [] decodes to None
        out(1, "irrelevance", '<tool_call>[{"name": "math.hypot", "arguments": {"x": 1, "y": 1}}]</tool_call>'),
    ]
    result = ev.main(["--rescore", _results_file(tmp_path / "r.json", bfcl_dir, outputs),
                      "--out", str(tmp_path / "again.json")])
    scored = result["outputs"]
    assert [o["ok"] for o in scored] == [True, False, False, True, False]
    assert scored[0]["calls"] == [{"math.hypot": {"x": 3, "y": 4}}]
    assert "13" in scored[1]["reason"] and scored[2]["reason"].startswith("prompt too long")
    assert scored[3]["calls"] is None and scored[4]["reason"] == "called a function"
    summary = result["summary"]
    assert summary["categories"]["simple_python"] == {"accuracy": 1 / 3, "correct": 1, "total": 3}
    assert summary["irrelevance"] == 0.5 and summary["skipped_too_long"] == {"simple_python": 1, "irrelevance": 0}
    with open(tmp_path / "again.json") as f:
        assert json.load(f)["summary"] == json.loads(json.dumps(summary))


def test_rescore_names_an_id_missing_from_the_data(bfcl_dir, tmp_path):
    bad = [{"id": "simple_python_77", "category": "simple_python", "text": ""}]
    with pytest.raises(SystemExit, match="simple_python_77"):
        ev.main(["--rescore", _results_file(tmp_path / "r.json", bfcl_dir, bad)])


# ---------------------------------------------------------------------------------------------------------
# End to end with the tiny random model


def _check_results(result, path, n_outputs):
    with open(path) as f:
        stored = json.load(f)
    assert stored["bench"] == "bfcl" and len(stored["outputs"]) == n_outputs
    for o in stored["outputs"]:
        assert {"id", "category", "prompt_tokens", "text", "calls", "ok", "reason"} <= set(o)
        assert isinstance(o["ok"], bool) and isinstance(o["reason"], str)
    for row in stored["summary"]["categories"].values():
        assert 0.0 <= row["accuracy"] <= 1.0
    return stored


def test_bfcl_end_to_end_on_hand_made_data_skips_prompts_that_do_not_fit(tiny, bfcl_dir, tmp_path):
    out = str(tmp_path / "res.json")
    result = ev.main(["--model", tiny[0], "--bench", "bfcl", "--bfcl-dir", bfcl_dir, "--categories",
                      "simple_python,irrelevance", "--max-new-tokens", "4", "--out", out, "--device", "cpu"])
    stored = _check_results(result, out, 5)
    long_one = stored["outputs"][2]
    assert long_one["skipped"] and not long_one["ok"] and long_one["prompt_tokens"] >= 2048
    assert stored["summary"]["skipped_too_long"]["simple_python"] == 1
    assert all(o["completion_tokens"] <= 4 for o in stored["outputs"] if not o.get("skipped"))
    again = ev.main(["--rescore", out])  # re-scoring stored outputs gives the same numbers
    assert again["summary"] == result["summary"]


def test_bfcl_end_to_end_on_real_bfcl_entries(tiny, tmp_path, capsys):
    pytest.importorskip("bfcl_eval", reason="bfcl-eval not installed (pip install --no-deps bfcl-eval)")
    out = str(tmp_path / "res.json")
    result = ev.main(["--model", tiny[0], "--bench", "bfcl", "--categories", "simple_python,multiple,irrelevance",
                      "--limit", "2", "--max-new-tokens", "8", "--batch-size", "4", "--out", out])
    stored = _check_results(result, out, 6)
    assert [o["category"] for o in stored["outputs"]] == ["simple_python"] * 2 + ["multiple"] * 2 + ["irrelevance"] * 2
    assert stored["settings"]["dtype"] == "float32" and stored["settings"]["limit"] == 2
    printed = capsys.readouterr().out
    assert "[3/3] irrelevance" in printed and "correct/total" in printed


def test_heldout_data_path(tiny, tmp_path, capsys):
    out = str(tmp_path / "heldout.json")
    result = ev.main(["--model", tiny[0], "--data", tiny[1], "--max-new-tokens", "8", "--out", out])
    metrics = result["metrics"]
    records = load_records(tiny[1])
    assert metrics["count"] == len(records) and metrics["skipped_too_long"] == 0
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["format_rate"] <= 1.0
    assert 0 < metrics["mean_response_len"] <= 8
    with open(out) as f:
        assert sorted(o["id"] for o in json.load(f)["outputs"]) == sorted(r["id"] for r in records)
    sampled = ev.main(["--model", tiny[0], "--data", tiny[1], "--max-new-tokens", "8", "--samples", "3",
                       "--temperature", "1.0"])
    assert len(sampled["outputs"]) == 3 * len(records) and 0.0 <= sampled["metrics"]["pass_at_n"] <= 1.0
    printed = capsys.readouterr().out
    assert "pass@3" in printed and any(f"    {c} (" in printed for c in ("single", "multiple", "parallel"))
    with open("heldout_results.json") as f:  # no --out: the documented default (nothing was written before)
        assert len(json.load(f)["outputs"]) == 3 * len(records)


def test_results_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A lone surrogate in a model's output (half an emoji) can't be UTF-8: the file is written with JSON escapes
    (the run's results were lost to a UnicodeEncodeError after it finished); a write that fails leaves the
    previous file as it was (it was truncated first)."""
    path = str(tmp_path / "r.json")
    ev.write_json(path, {"outputs": [{"text": '<tool_call>[{"name": "say", "arguments": {"t": "\ud83d"}}]'}]})
    with open(path, encoding="utf-8") as f:
        assert json.load(f)["outputs"][0]["text"].endswith('"\ud83d"}}]')
    ev.write_json(path, {"ok": "caf\u00e9"})
    assert open(path, encoding="utf-8").read().count("caf\u00e9") == 1  # readable text otherwise
    with pytest.raises(TypeError):
        ev.write_json(path, {"bad": {1, 2}})
    assert json.load(open(path)) == {"ok": "caf\u00e9"} and os.listdir(tmp_path) == ["r.json"]


def test_a_bfcl_category_that_fails_to_load_stops_the_run_before_the_model(tiny, bfcl_dir, tmp_path, monkeypatch):
    """All categories are read before the model loads (a missing or bad later file used to end the run after
    the earlier categories had generated, with nothing written); finished categories are on disk as they end."""
    loaded, real_load = [], ev.load_checkpoint
    monkeypatch.setattr(ev, "load_checkpoint", lambda *a: loaded.append(a))
    with pytest.raises(SystemExit, match="BFCL_v4_multiple.json"):
        ev.main(["--model", tiny[0], "--bench", "bfcl", "--bfcl-dir", bfcl_dir, "--categories",
                 "simple_python,multiple"])
    _write_jsonl(os.path.join(bfcl_dir, "BFCL_v4_irrelevance.json"), [{"id": "irrelevance_0", "question": []}])
    with pytest.raises(SystemExit, match=r"BFCL_v4_irrelevance.json: entry 1 has no 'function'"):
        ev.main(["--model", tiny[0], "--bench", "bfcl", "--bfcl-dir", bfcl_dir, "--categories", "irrelevance"])
    assert not loaded
    monkeypatch.setattr(ev, "load_checkpoint", real_load)
    written = []
    real = ev.write_json
    monkeypatch.setattr(ev, "write_json", lambda path, obj, **kw: (written.append(len(obj["outputs"])),
                                                                     real(path, obj, **kw)))
    ev.main(["--model", tiny[0], "--bench", "bfcl", "--bfcl-dir", bfcl_dir, "--categories", "simple_python",
             "--max-new-tokens", "2"])
    assert written == [3] and os.path.isfile("bfcl_results.json")


def test_heldout_pass_at_n_counts_records_with_any_exact_match(tiny, monkeypatch):
    """Sampled evaluation: accuracy is the mean over every sample, pass@n the share of records solved at least
    once, per case too (rewards planted by a stand-in rollout, so the expected numbers are exact)."""
    from tooln1_min import rollout as ro
    from tooln1_min.tokenizer import Tokenizer
    records, n = load_records(tiny[1]), 4
    plan = {0: [1, 0, 0, 0], 2: [1, 1, 1, 1], 3: [0, 0, 1, 0]}  # every other record: all wrong

    def fake_rollout(model, tokenizer, kept, ids, *, n, temperature, seed, **kw):
        assert temperature == 0.7 and seed == 5
        return [ro.Episode(i, ids[i], [7, 7], [0.0, 0.0], "", float(r), True, "stop")
                for i in range(len(kept)) for r in plan.get(i, [0] * n)], 0
    monkeypatch.setattr(ro, "rollout", fake_rollout)
    m, eps = ro.heldout_eval(None, Tokenizer.from_pretrained(tiny[0]), records, temperature=0.7, n=n, seed=5)
    assert len(eps) == n * len(records) and m["count"] == len(records)
    assert m["accuracy"] == pytest.approx(6 / (n * len(records))) and m["pass_at_n"] == pytest.approx(3 / len(records))
    assert m["format_rate"] == 1.0 and m["mean_response_len"] == 2.0
    for case in {r["case"] for r in records}:
        idx = [i for i, r in enumerate(records) if r["case"] == case]
        assert m[f"count_{case}"] == len(idx)
        assert m[f"pass_at_n_{case}"] == pytest.approx(sum(i in plan and max(plan[i]) == 1 for i in idx) / len(idx))
        assert m[f"accuracy_{case}"] == pytest.approx(sum(sum(plan.get(i, [])) for i in idx) / (n * len(idx)))
    with pytest.raises(ValueError, match="temperature > 0"):
        ro.heldout_eval(None, None, records, n=2)


def test_sampled_heldout_eval_does_not_depend_on_the_number_of_ranks(tiny):
    """Each rank samples its records with their global indices as random streams (local ones gave the first
    record of every rank stream 0: results changed with the world size)."""
    from tooln1_min import rollout as ro
    from tooln1_min.model import Transformer
    model, tok = Transformer.from_pretrained(tiny[0]).eval(), Tokenizer.from_pretrained(tiny[0])
    records = load_records(tiny[1])[:6]
    kw = dict(max_new_tokens=6, temperature=1.0, n=2, seed=3)
    _, alone = ro.heldout_eval(model, tok, records, **kw)
    for world in (2, 3):
        for rank in range(world):
            _, eps = ro.heldout_eval(model, tok, records, rank=rank, world_size=world, **kw)
            for k, e in enumerate(eps):  # episodes in order: (local record, sample) -> (global record, sample)
                twin = alone[(rank + world * (k // 2)) * 2 + k % 2]
                assert e.completion_ids == twin.completion_ids, (world, rank, k)


def test_eval_samples_need_a_temperature(capsys):
    with pytest.raises(SystemExit) as e:
        ev.main(["--model", "m", "--data", "x.jsonl", "--samples", "4"])
    assert e.value.code == 2 and "temperature > 0 when samples > 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        ev.main(["--model", "m", "--data", "x.jsonl", "--samples", "8", "--temperature", "0.7", "--batch-size", "4"])
    assert e.value.code == 2 and "--batch-size 4 is smaller than --samples 8" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# Errors


def test_missing_model_folder(bfcl_dir, tmp_path):
    with pytest.raises(SystemExit, match="not a Hugging Face checkpoint folder"):
        ev.main(["--model", str(tmp_path / "nope"), "--bench", "bfcl", "--bfcl-dir", bfcl_dir, "--categories",
                 "simple_python"])


def test_unknown_category_lists_the_valid_ones(bfcl_dir):
    with pytest.raises(SystemExit, match="unknown BFCL category.*simple_python,simple_java") as e:
        ev.main(["--model", "m", "--bench", "bfcl", "--bfcl-dir", bfcl_dir, "--categories", "simple_python,simpel"])
    assert "'simpel'" in str(e.value)


def test_missing_bfcl_data_says_how_to_install(tmp_path):
    with pytest.raises(SystemExit, match="pip install --no-deps bfcl-eval"):
        ev.main(["--model", "m", "--bench", "bfcl", "--bfcl-dir", str(tmp_path)])


def test_a_mode_is_required(capsys):
    with pytest.raises(SystemExit) as e:
        ev.main(["--model", "m"])
    assert e.value.code == 2 and "choose one of --bench bfcl, --data" in capsys.readouterr().err


def test_missing_data_file_and_bad_results_file(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        ev.main(["--model", "m", "--data", str(tmp_path / "none.jsonl")])
    (tmp_path / "x.json").write_text('{"bench": "heldout"}')
    with pytest.raises(SystemExit, match="not a BFCL results file"):
        ev.main(["--rescore", str(tmp_path / "x.json")])


@pytest.mark.parametrize("stored, message", [
    ([1, 2], "not a BFCL results file"),
    ({"bench": "bfcl", "outputs": "x"}, "not a BFCL results file"),
    ({"bench": "bfcl", "outputs": [5]}, "output 0 is not an object"),
    ({"bench": "bfcl", "outputs": [{"id": "a", "category": "simple_python"}]}, "output 0 is not an object"),
    ({"bench": "bfcl", "outputs": [{"id": "a", "category": "nope", "text": ""}]}, "unknown BFCL category"),
])
def test_rescore_of_a_wrong_shape_is_a_clear_error(bfcl_dir, tmp_path, stored, message):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(stored))
    with pytest.raises(SystemExit, match=message):
        ev.main(["--rescore", str(path), "--bfcl-dir", bfcl_dir])


def test_heldout_of_an_empty_file_is_an_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(SystemExit, match="no records to evaluate"):
        ev.main(["--model", "unused", "--data", str(tmp_path / "empty.jsonl")])


def test_acebench_end_to_end_on_hand_made_data(tiny, tmp_path, capsys):
    from test_acebench import _write_fixture
    root = _write_fixture(str(tmp_path / "ace"))
    out = str(tmp_path / "ace.json")
    result = ev.main(["--model", tiny[0], "--bench", "acebench", "--acebench-dir", root, "--max-new-tokens", "4",
                      "--out", out, "--device", "cpu"])
    stored = json.load(open(out))
    assert stored["bench"] == "acebench" and len(stored["outputs"]) == 8
    assert all(o["ceiling_ok"] for o in stored["outputs"])  # the fixture's ground truths can pass
    assert stored["summary"]["overall"]["total"] == 8 and stored["summary"]["normal"]["ceiling"] == 1.0
    printed = capsys.readouterr().out
    assert "Atom + Single-turn (mean)" in printed and "normal_atom_bool" in printed
    # a right answer scores: rescoring a stored file with one output replaced by the ground truth
    stored["outputs"][0]["text"] = '<tool_call>[{"name": "flight_book", "arguments": {"city": "Paris"}}]</tool_call>'
    with open(out, "w") as f:
        json.dump(stored, f)
    again = ev.main(["--rescore", out])
    assert again["outputs"][0]["ok"] and again["summary"]["categories"]["normal_atom_bool"]["accuracy"] == 1.0
    json.dump({**stored, "outputs": []}, open(out, "w"))  # an empty file rescores to dashes (it crashed printing)
    assert ev.main(["--rescore", out])["summary"]["overall"]["total"] == 0
    assert "all records" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="needs --acebench-dir"):
        ev.main(["--model", tiny[0], "--bench", "acebench"])
    with pytest.raises(SystemExit, match="no data_all/data_en"):
        ev.main(["--model", tiny[0], "--bench", "acebench", "--acebench-dir", str(tmp_path)])


def test_apibank_end_to_end_on_a_miniature_folder(tiny, tmp_path, capsys):
    from test_apibank import write_apibank
    bank = write_apibank(tmp_path / "api-bank")
    out = str(tmp_path / "ab.json")
    ev.main(["--model", tiny[0], "--bench", "apibank", "--apibank-dir", bank, "--max-new-tokens", "4",
             "--out", out, "--device", "cpu", "--per-api"])
    stored = json.load(open(out))
    assert stored["bench"] == "apibank" and stored["summary"]["total"] == 2
    assert [o["ceiling_ok"] for o in stored["outputs"]] == [True, False]  # the second needs the network
    assert "API-Bank level-1 (Call)" in capsys.readouterr().out
    stored["outputs"][0]["text"] = ('<tool_call>[{"name": "AddNote", "arguments": {"content": "buy milk today", '
                                    '"day": "2024-05-01"}}]</tool_call>')
    with open(out, "w") as f:
        json.dump(stored, f)
    again = ev.main(["--rescore", out])
    assert again["outputs"][0]["ok"] and again["summary"]["accuracy"] == 0.5
    del stored["outputs"][1]["text"]  # checked as BFCL's and ACEBench's are (it was a KeyError)
    json.dump(stored, open(out, "w"))
    with pytest.raises(SystemExit, match="has no string 'text'"):
        ev.main(["--rescore", out])
    with pytest.raises(SystemExit, match="needs --apibank-dir"):
        ev.main(["--model", tiny[0], "--bench", "apibank"])
    with pytest.raises(SystemExit, match="not an api-bank folder"):
        ev.main(["--model", tiny[0], "--bench", "apibank", "--apibank-dir", str(tmp_path)])


def test_all_three_benchmarks_in_one_run(tiny, bfcl_dir, tmp_path, capsys):
    from test_acebench import _write_fixture
    from test_apibank import write_apibank
    out = tmp_path / "all"
    result = ev.main(["--model", tiny[0], "--bench", "all", "--bfcl-dir", bfcl_dir, "--categories",
                      "simple_python,irrelevance", "--acebench-dir",
                      _write_fixture(str(tmp_path / "ace")), "--apibank-dir", write_apibank(tmp_path / "ab"),
                      "--max-new-tokens", "4", "--out", str(out), "--device", "cpu"])
    assert sorted(os.listdir(out)) == ["acebench_results.json", "apibank_results.json", "bfcl_results.json",
                                       "summary.json"]
    printed = capsys.readouterr().out
    for label in ("BFCL Non-live", "BFCL Overall", "API-Bank level-1", "ACEBench Atom + Single-turn"):
        assert label in printed
    assert result["summary"]["apibank"]["total"] == 2
    with pytest.raises(SystemExit, match="--acebench-dir"):  # a missing location fails before any model work
        ev.main(["--model", tiny[0], "--bench", "all", "--bfcl-dir", bfcl_dir, "--apibank-dir",
                 write_apibank(tmp_path / "ab2")])
