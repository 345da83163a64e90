"""Tests for tooln1_min.reward: a table of scored cases, crash inputs, timing, variants and fuzzing."""
import json
import re
import time
from collections import Counter

import pytest

from tooln1_min.reward import (REWARDS, get_reward_fn, parse_tool_calls, strict_format, tool_call_reward)

WEATHER = {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}
EMAIL = {"name": "send_email", "arguments": {"to": "Bob", "body": "hi", "cc": ["Ann", "Eve"]}}
ONE = [WEATHER]
TWO = [WEATHER, EMAIL]


def reply(block: str, think: str = "<think>reasoning</think>") -> str:
    return f"{think}\n<tool_call>\n{block}\n</tool_call>"


def dumps(x) -> str:
    return json.dumps(x)


# (id, completion, answer, expected binary reward)
CASES = [
    # correct replies in the shapes a model produces
    ("exact", reply(dumps(ONE)), ONE, 1.0),
    ("exact-two", reply(dumps(TWO)), TWO, 1.0),
    ("single-dict", reply(dumps(WEATHER)), ONE, 1.0),
    ("double-encoded", reply(dumps(dumps(ONE))), ONE, 1.0),
    ("double-encoded-dict", reply(dumps(dumps(WEATHER))), ONE, 1.0),
    ("reordered-calls", reply(dumps([EMAIL, WEATHER])), TWO, 1.0),
    ("reordered-keys", reply('[{"arguments": {"days": 3, "city": "Paris"}, "name": "get_weather"}]'), ONE, 1.0),
    ("compact-json", "<think>x</think><tool_call>" + json.dumps(ONE, separators=(",", ":")) + "</tool_call>",
     ONE, 1.0),
    ("no-whitespace-think", reply(dumps(ONE), think="<think></think>"), ONE, 1.0),
    ("think-after-call", f"<tool_call>{dumps(ONE)}</tool_call><think>late</think>", ONE, 1.0),
    ("think-reversed-tags", f"</think> <think><tool_call>{dumps(ONE)}</tool_call>", ONE, 1.0),
    ("extra-keys-ignored", reply('[{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}, "id": 7}]'),
     ONE, 1.0),
    ("text-around", "Sure! " + reply(dumps(ONE)) + " Done.", ONE, 1.0),
    ("unicode-args", reply(dumps([{"name": "f", "arguments": {"s": "Zürich ✓"}}])),
     [{"name": "f", "arguments": {"s": "Zürich ✓"}}], 1.0),
    ("unicode-escaped-vs-raw", reply('[{"name": "f", "arguments": {"s": "Z\\u00fcrich"}}]'),
     [{"name": "f", "arguments": {"s": "Zürich"}}], 1.0),
    ("duplicate-calls", reply(dumps([WEATHER, WEATHER])), [WEATHER, WEATHER], 1.0),
    ("empty-args", reply('[{"name": "now", "arguments": {}}]'), [{"name": "now", "arguments": {}}], 1.0),
    ("nested-args", reply(dumps([{"name": "f", "arguments": {"o": {"b": [1, {"c": None}], "a": True}}}])),
     [{"name": "f", "arguments": {"o": {"a": True, "b": [1, {"c": None}]}}}], 1.0),
    # the prompt+completion form: only the text after the last assistant marker is scored
    ("after-marker", "<|im_start|>system\n<think></think><|im_end|>\n<|im_start|>assistant\n" + reply(dumps(ONE)),
     ONE, 1.0),
    ("think-only-before-marker", "<think>x</think><|im_start|>assistant\n<tool_call>" + dumps(ONE) + "</tool_call>",
     ONE, 0.0),
    ("call-only-before-marker", reply(dumps(ONE)) + "<|im_start|>assistant\n<think>x</think>", ONE, 0.0),
    ("last-marker-wins", "<|im_start|>assistant\nbad<|im_start|>assistant\n" + reply(dumps(ONE)), ONE, 1.0),
    # empty calls
    ("empty-matches-empty", reply("[]"), [], 1.0),
    ("empty-vs-call", reply("[]"), ONE, 0.0),
    ("call-vs-empty", reply(dumps(ONE)), [], 0.0),
    ("empty-block-vs-empty", reply(""), [], 0.0),
    ("double-encoded-empty-string", reply(dumps(dumps(""))), [], 1.0),
    ("double-encoded-empty-list", reply(dumps("[]")), [], 1.0),
    ("empty-dict-call", reply("{}"), [], 0.0),
    # wrong content
    ("wrong-name", reply('[{"name": "get_forecast", "arguments": {"city": "Paris", "days": 3}}]'), ONE, 0.0),
    ("wrong-value", reply('[{"name": "get_weather", "arguments": {"city": "Rome", "days": 3}}]'), ONE, 0.0),
    ("case-sensitive", reply('[{"name": "get_weather", "arguments": {"city": "paris", "days": 3}}]'), ONE, 0.0),
    ("int-vs-float", reply('[{"name": "get_weather", "arguments": {"city": "Paris", "days": 3.0}}]'), ONE, 0.0),
    ("int-vs-string", reply('[{"name": "get_weather", "arguments": {"city": "Paris", "days": "3"}}]'), ONE, 0.0),
    ("bool-vs-int", reply('[{"name": "f", "arguments": {"x": true}}]'), [{"name": "f", "arguments": {"x": 1}}], 0.0),
    ("null-vs-missing", reply('[{"name": "f", "arguments": {"x": null}}]'), [{"name": "f", "arguments": {}}], 0.0),
    ("list-order", reply(dumps([{**EMAIL, "arguments": {**EMAIL["arguments"], "cc": ["Eve", "Ann"]}}])),
     [EMAIL], 0.0),
    ("missing-arg", reply('[{"name": "get_weather", "arguments": {"city": "Paris"}}]'), ONE, 0.0),
    ("extra-arg", reply(dumps([{"name": "get_weather", "arguments": {"city": "Paris", "days": 3, "u": "C"}}])),
     ONE, 0.0),
    ("missing-call", reply(dumps(ONE)), TWO, 0.0),
    ("extra-call", reply(dumps(TWO)), ONE, 0.0),
    ("duplicate-vs-single", reply(dumps([WEATHER, WEATHER])), ONE, 0.0),
    ("args-as-string", reply(dumps([{"name": "get_weather", "arguments": dumps(WEATHER["arguments"])}])), ONE, 0.0),
    # format failures
    ("no-think", f"<tool_call>{dumps(ONE)}</tool_call>", ONE, 0.0),
    ("only-open-think", f"<think>x <tool_call>{dumps(ONE)}</tool_call>", ONE, 0.0),
    ("only-close-think", f"x</think><tool_call>{dumps(ONE)}</tool_call>", ONE, 0.0),
    ("no-block", "<think>x</think> " + dumps(ONE), ONE, 0.0),
    ("unclosed-block", "<think>x</think><tool_call>" + dumps(ONE), ONE, 0.0),
    ("unopened-block", "<think>x</think>" + dumps(ONE) + "</tool_call>", ONE, 0.0),
    ("invalid-json", reply('[{"name": "get_weather", "arguments": {city: Paris}}]'), ONE, 0.0),
    ("trailing-comma", reply('[{"name": "get_weather", "arguments": {"city": "Paris", "days": 3},}]'), ONE, 0.0),
    ("python-literal", reply(str(ONE)), ONE, 0.0),
    ("missing-arguments-key", reply('[{"name": "get_weather"}]'), ONE, 0.0),
    ("missing-name-key", reply('[{"arguments": {"city": "Paris", "days": 3}}]'), ONE, 0.0),
    ("parameters-key", reply('[{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}}]'), ONE, 0.0),
    ("element-not-dict", reply(dumps([WEATHER, "x"])), ONE, 0.0),
    ("string-block", reply('"hello"'), ONE, 0.0),
    ("string-invalid-inner", reply('"{not json"'), ONE, 0.0),
    ("scalar-block", reply("5"), ONE, 0.0),
    ("null-block", reply("null"), [], 0.0),
    ("true-block", reply("true"), [], 0.0),
    ("empty-completion", "", ONE, 0.0),
    ("empty-completion-empty-answer", "", [], 0.0),
    # several blocks: the last complete one counts
    ("last-block-right", reply(dumps([EMAIL])) + reply(dumps(ONE)), ONE, 1.0),
    ("last-block-wrong", reply(dumps(ONE)) + reply(dumps([EMAIL])), ONE, 0.0),
    ("last-block-invalid", reply(dumps(ONE)) + "<tool_call>oops</tool_call>", ONE, 0.0),
    ("trailing-unclosed", reply(dumps(ONE)) + "<tool_call>" + dumps([EMAIL]), ONE, 1.0),
    ("nested-open-tag", "<think></think><tool_call>junk<tool_call>" + dumps(ONE) + "</tool_call>", ONE, 0.0),
    ("stray-close-after", reply(dumps(ONE)) + "</tool_call>", ONE, 1.0),
    ("one-block-per-call", reply(dumps(WEATHER)) + reply(dumps(EMAIL)), TWO, 0.0),
    # crash inputs of the original scorer: all 0, never raise
    ("deep-list", reply("[" * 100_000 + "]" * 100_000), ONE, 0.0),
    ("deep-string", reply(dumps("[" * 100_000 + "]" * 100_000)), ONE, 0.0),
    ("deep-args", reply('[{"name": "f", "arguments": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001 + "]"), ONE, 0.0),
    ("huge-int", reply('[{"name": "f", "arguments": {"x": ' + "9" * 5000 + "}}]"),
     [{"name": "f", "arguments": {"x": 1}}], 0.0),
    ("huge-int-scalar", reply("1" * 10_000), ONE, 0.0),
    ("unhashable-name", reply('[{"name": ["get_weather"], "arguments": {"city": "Paris", "days": 3}}]'), ONE, 0.0),
    ("dict-name", reply('[{"name": {"a": 1}, "arguments": {}}]'), ONE, 0.0),
    ("nan-arg-matches-nan", reply('[{"name": "f", "arguments": {"x": NaN}}]'),
     [{"name": "f", "arguments": {"x": float("nan")}}], 1.0),
    ("infinity-arg", reply('[{"name": "f", "arguments": {"x": Infinity}}]'),
     [{"name": "f", "arguments": {"x": 1e999}}], 1.0),
    ("nan-vs-number", reply('[{"name": "f", "arguments": {"x": NaN}}]'), [{"name": "f", "arguments": {"x": 0}}], 0.0),
    ("lone-surrogate", reply('[{"name": "f", "arguments": {"x": "\\ud800"}}]'),
     [{"name": "f", "arguments": {"x": "\ud800"}}], 1.0),
    ("nul-bytes", "\x00" * 1000 + reply(dumps(ONE)), ONE, 1.0),
    ("many-open-tags", "<think></think>" + "<tool_call>" * 20_000, ONE, 0.0),
    ("many-close-tags", "<think></think>" + "</tool_call>" * 20_000, ONE, 0.0),
    ("many-markers", "<|im_start|>assistant" * 20_000 + reply(dumps(ONE)), ONE, 1.0),
    ("many-blocks", reply(dumps([EMAIL])) * 5_000 + reply(dumps(ONE)), ONE, 1.0),
    # malformed answers (the original raised KeyError): 0, never raise
    ("answer-missing-name", reply(dumps(ONE)), [{"arguments": {"city": "Paris", "days": 3}}], 0.0),
    ("answer-not-list", reply(dumps(ONE)), 5, 0.0),
    ("answer-none", reply(dumps(ONE)), None, 0.0),
    ("answer-json-string", reply(dumps(ONE)), dumps(ONE), 1.0),
    ("answer-bad-json-string", reply(dumps(ONE)), "[{", 0.0),
    ("answer-huge-int", reply('[{"name": "f", "arguments": {"x": 1}}]'),
     [{"name": "f", "arguments": {"x": 10 ** 5000}}], 0.0),
    ("answer-mixed-keys", reply('[{"name": "f", "arguments": {"1": 1}}]'),
     [{"name": "f", "arguments": {1: 1, "a": 2}}], 0.0),
    ("completion-not-str", None, ONE, 0.0),
    ("completion-bytes", reply(dumps(ONE)).encode(), ONE, 0.0),
]


def test_table_is_large_and_ids_unique():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("completion,answer,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_binary_reward_table(completion, answer, expected):
    assert tool_call_reward(completion, answer) == expected


def _reference(completion: str, answer: list) -> float:
    """The prose of the original scorer written directly with its regex (quadratic; for small inputs only).

    Raises where the original raised, so fuzzing can compare only where the original is defined.
    """
    index = completion.rfind("<|im_start|>assistant")
    text = completion[index:] if index != -1 else completion
    matches = list(re.finditer(r"<tool_call>(.*?)</tool_call>", text, flags=re.DOTALL))
    if not matches:
        return 0.0
    try:
        result = json.loads(matches[-1].group(1).strip())
    except json.JSONDecodeError:
        return 0.0
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except json.JSONDecodeError:
            return 0.0
    if isinstance(result, dict):
        result = [result]
    if result is None or "<think>" not in text or "</think>" not in text:
        return 0.0
    if any(not isinstance(c, dict) or "name" not in c or "arguments" not in c for c in result):
        return 0.0
    if len(result) == 0 or len(answer) == 0:
        return float(len(result) == len(answer))
    try:
        key = lambda calls: Counter((c["name"], json.dumps(c["arguments"], sort_keys=True)) for c in calls)  # noqa
        return float(key(result) == key(answer))
    except TypeError:
        return 0.0


@pytest.mark.parametrize("completion,answer,expected", [c[1:] for c in CASES if len(str(c[1])) < 20_000
                                                        and isinstance(c[1], str) and isinstance(c[2], list)],
                         ids=[c[0] for c in CASES if len(str(c[1])) < 20_000
                              and isinstance(c[1], str) and isinstance(c[2], list)])
def test_table_agrees_with_reference_where_reference_is_defined(completion, answer, expected):
    try:
        ref = _reference(completion, answer)
    except Exception:  # the original crashed here; we return 0 instead
        assert expected == 0.0
        return
    assert ref == expected


def test_adversarial_megabyte_is_fast():
    answer = ONE
    inputs = [
        "<tool_call>" * 100_000,  # quadratic for a findall regex
        "<think></think>" + "<tool_call>x" * 90_000 + "</tool_call>",
        "<think></think><tool_call>" + "[" * 1_000_000 + "</tool_call>",
        "<think></think><tool_call>" + "9" * 1_000_000 + "</tool_call>",
        "<|im_start|>assistant" * 50_000,
        "<think>" * 150_000 + "</tool_call>" * 10_000,
        reply(dumps(ONE)) * 15_000,
        "a" * 1_000_000,
    ]
    for text in inputs:
        assert len(text) >= 900_000
        start = time.perf_counter()
        for fn in REWARDS.values():
            assert fn(text, answer) in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
        assert time.perf_counter() - start < 2.0, text[:40]


def test_parse_tool_calls_shapes():
    assert parse_tool_calls(f"<tool_call>{dumps(WEATHER)}</tool_call>") == [WEATHER]
    assert parse_tool_calls("<tool_call> [] </tool_call>") == []
    assert parse_tool_calls("no block") is None
    assert parse_tool_calls("<tool_call>5</tool_call>") is None
    assert parse_tool_calls("<tool_call>[1, 2]</tool_call>") == [1, 2]  # elements are checked later


# --- variants -------------------------------------------------------------------------------------------------

def test_get_reward_fn():
    assert get_reward_fn() is tool_call_reward
    assert get_reward_fn("binary") is tool_call_reward
    assert set(REWARDS) == {"binary", "format_partial", "name_partial", "strict"}
    with pytest.raises(ValueError, match="unknown reward 'nope'.*binary"):
        get_reward_fn("nope")


WRONG_ARGS = [{"name": "get_weather", "arguments": {"city": "Rome", "days": 3}}]
WRONG_NAME = [{"name": "get_forecast", "arguments": {"city": "Paris", "days": 3}}]


@pytest.mark.parametrize("completion,fp,np_", [
    (reply(dumps(ONE)), 1.0, 1.0),                               # all right
    (reply(dumps(WRONG_ARGS)), 0.2, 0.4),                        # think + names
    (reply(dumps(WRONG_NAME)), 0.2, 0.2),                        # think only
    (f"<tool_call>{dumps(ONE)}</tool_call>", 0.8, 0.8),          # right call, no think
    (f"<tool_call>{dumps(WRONG_ARGS)}</tool_call>", 0.0, 0.2),   # names only
    # the 0.2 pays for the think tags alone, whatever the call, as Tool-N1's compute_score_v3 / _v4 do
    (reply('[{"name": "get_weather"}]'), 0.2, 0.2),              # malformed call
    ("<think>x</think> no call", 0.2, 0.2),
    (reply("{}"), 0.2, 0.2),
    (reply("[" * 100_000), 0.2, 0.2),
    ("no think, no call", 0.0, 0.0),
])
def test_partial_rewards(completion, fp, np_):
    assert get_reward_fn("format_partial")(completion, ONE) == fp
    assert get_reward_fn("name_partial")(completion, ONE) == np_


def test_partial_rewards_empty_answer():
    assert get_reward_fn("name_partial")(reply("[]"), []) == 1.0
    assert get_reward_fn("name_partial")(reply(dumps(ONE)), []) == 0.2
    assert get_reward_fn("format_partial")(reply("[]"), ONE) == 0.2


@pytest.mark.parametrize("completion,expected", [
    ("<think>ok</think>\n<tool_call>\n" + dumps(ONE) + "\n</tool_call>", 1.0),
    ("  \n<think>ok</think><tool_call>" + dumps(ONE) + "</tool_call>\n<|im_end|>", 1.0),
    ("<|im_start|>system\nx<|im_end|><|im_start|>assistant\n<think></think><tool_call>" + dumps(ONE)
     + "</tool_call><|im_end|><|endoftext|>", 1.0),
    ("Sure. <think>ok</think><tool_call>" + dumps(ONE) + "</tool_call>", 0.0),          # text before
    ("<think>ok</think> so: <tool_call>" + dumps(ONE) + "</tool_call>", 0.0),           # text between
    ("<think>ok</think><tool_call>" + dumps(ONE) + "</tool_call> done", 0.0),           # text after
    ("<tool_call>" + dumps(ONE) + "</tool_call><think>ok</think>", 0.0),                # wrong order
    ("<think>a</think><think>b</think><tool_call>" + dumps(ONE) + "</tool_call>", 0.0),  # two thinks
    ("<think>a</think>" + ("<tool_call>" + dumps(ONE) + "</tool_call>") * 2, 0.0),      # two calls
    ("<think>ok</think><tool_call>" + dumps(WRONG_ARGS) + "</tool_call>", 0.0),         # right layout, wrong call
])
def test_strict_reward(completion, expected):
    assert get_reward_fn("strict")(completion, ONE) == expected


def test_strict_format_helper():
    assert strict_format("<think></think><tool_call></tool_call>")
    assert not strict_format("<think></think>")
    # the call inside the think block, its "</think>" in an argument: not the layout (it passed)
    assert not strict_format('<think>so <tool_call>[{"name": "say", "arguments": {"t": "</think>"}}]</tool_call>')


# --- fuzzing --------------------------------------------------------------------------------------------------

FRAGMENTS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<|im_start|>assistant", "\n", " ", "[", "]",
             "{", "}", ",", ":", '"', '"name"', '"arguments"', '"get_weather"', '"city"', '"Paris"', "3", "3.0",
             "true", "null", "NaN", "[]", "{}", dumps(WEATHER), dumps(ONE), dumps(dumps(ONE)), "\\", "x"]


def test_fuzz_never_raises_and_agrees_with_reference():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    texts = st.one_of(st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join), st.text(max_size=200))
    answers = st.one_of(st.just(ONE), st.just(TWO), st.just([]), st.just([{"name": "get_weather"}]))

    @hypothesis.settings(max_examples=400, deadline=None, derandomize=True)
    @hypothesis.given(texts, answers)
    def check(text, answer):
        scores = {name: fn(text, answer) for name, fn in REWARDS.items()}
        assert scores["binary"] in (0.0, 1.0)
        assert scores["strict"] in (0.0, 1.0) and scores["strict"] <= scores["binary"]
        assert scores["format_partial"] in (0.0, 0.2, 0.8, 1.0)
        assert scores["name_partial"] in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
        assert (scores["binary"] == 1.0) == (scores["format_partial"] == 1.0) == (scores["name_partial"] == 1.0)
        try:
            ref = _reference(text, answer)
        except Exception:
            assert scores["binary"] == 0.0
        else:
            assert scores["binary"] == ref

    check()


def test_fuzz_arbitrary_json_never_raises():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
        max_leaves=12)

    @hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
    @hypothesis.given(json_values, json_values)
    def check(predicted, answer):
        completion = reply(json.dumps(predicted))
        for fn in REWARDS.values():
            assert 0.0 <= fn(completion, answer) <= 1.0
        # a prediction always matches itself when it is a well-formed call list
        if isinstance(predicted, list) and all(isinstance(c, dict) and {"name", "arguments"} <= set(c)
                                               and isinstance(c["name"], str)
                                               for c in predicted):
            assert tool_call_reward(completion, json.loads(json.dumps(predicted))) == 1.0

    check()


@pytest.mark.parametrize("text, fmt", [
    ("<think></think><tool_call>[1]</tool_call>", False),           # parseable, not a call list: not the format
    ("<think>x</think><tool_call>[]</tool_call>", True),
    ('<think></think><tool_call>[{"name": "f", "arguments": {}}]</tool_call>', True),
    ('<tool_call>[{"name": "f", "arguments": {}}]</tool_call>', False),  # no think tags
    ("<think></think><tool_call>[{\"name\": \"f\"}]</tool_call>", False),  # a call without arguments
    ("<think></think><tool_call>not json</tool_call>", False),
    ("<think></think>", False),
    (None, False),
])
def test_logged_format_rate_is_the_rewards_format_component(text, fmt, monkeypatch):
    """One format test: the per-step `format` column (rollout's Episode.format_ok) is the binary reward's format
    half (they disagreed on `[1]` before)."""
    import tooln1_min.rollout as ro
    from tooln1_min.reward import format_ok, tool_call_reward
    from tooln1_min.sampler import Sample
    assert format_ok(text) is fmt
    right = [{"name": "f", "arguments": {}}]
    assert tool_call_reward(text, right) == (1.0 if fmt and text and '"f"' in text else 0.0)
    wrong = [{"name": "other", "arguments": {"x": 1}}]
    if text is None:
        return

    class Tok:  # decodes every sample to `text`
        stop_token_ids, vocab_size = [], 10

        def decode(self, ids, skip_special_tokens=False):
            return text
    monkeypatch.setattr(ro, "generate", lambda *a, **k: [[Sample([1])]])
    (ep,), _ = ro.rollout(None, Tok(), [{"answer": wrong}], [[1]], n=1, max_new_tokens=1, temperature=0.0)
    assert ep.format_ok is fmt  # what train.py's `format` column averages


# ---- found by mutating reward.py (each survived the tests above) ----

def test_the_last_assistant_header_starts_the_reply():
    """A think block before the last "<|im_start|>assistant" belongs to an earlier turn: no format, no reward."""
    call = json.dumps([{"name": "f", "arguments": {}}])
    text = f"<|im_start|>assistant\n<think>x</think><|im_start|>assistant\n<tool_call>{call}</tool_call>"
    assert tool_call_reward(text, [{"name": "f", "arguments": {}}]) == 0.0


def test_name_partial_counts_names_as_a_multiset():
    """Two calls of f against one: the names do not match (a set would say they do)."""
    text = "<think>x</think><tool_call>" + json.dumps([{"name": "f", "arguments": {"a": 1}}] * 2) + "</tool_call>"
    assert get_reward_fn("name_partial")(text, [{"name": "f", "arguments": {"a": 2}}]) == 0.2
