"""Tests for tooln1_min.data (schema, prompts, splits), convert (converters on generated and hand-written fixtures,
the CLI) and synthetic (the demo's task)."""
import collections
import json
import random
import re

import pytest

from tooln1_min import convert, data, synthetic
from tooln1_min.convert import (convert_jsonl, convert_toolace, convert_xlam, format_bracket_calls, parse_bracket_calls,
                                schema_tool_to_xlam)
from tooln1_min.data import (DEFAULT_SYSTEM, MUST_STEPS, load_records, prompt_messages, render_prompt, render_target,
                             save_records, shuffle_records, split_records, system_prompt, validate_record)
from tooln1_min.synthetic import TOOL_LIBRARY, fill_template, synthetic_records
from tooln1_min.reward import tool_call_reward
from tooln1_min.tokenizer import train_tokenizer

CASE_TYPES = {"single", "multiple", "parallel", "no_call"}


# ---- fixture writers: records back into the datasets' own shapes (what the converters read) ----

def write_xlam(records, path) -> None:
    """Write single-turn records as an xLAM-shaped JSON array (tools/answers as JSON strings, flat params)."""
    rows = []
    for i, r in enumerate(records):
        if len(r["messages"]) != 1 or r["messages"][0]["role"] != "user":
            raise ValueError(f"record {r['id']}: xLAM rows hold one user query; this one has "
                             f"{len(r['messages'])} context turns")
        rows.append({"id": i, "query": r["messages"][0]["content"],
                     "tools": json.dumps([schema_tool_to_xlam(t) for t in r["tools"]]),
                     "answers": json.dumps(r["answer"])})
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False)


def write_toolace(records, path) -> None:
    """Write records as a ToolACE-shaped data.json. No-call records end in a plain-text reply (not a target)."""
    rows = []
    for r in records:
        system = ((r.get("system") or DEFAULT_SYSTEM) + "\nHere is a list of functions in JSON format that you can "
                  f"invoke:\n{json.dumps(r['tools'], ensure_ascii=False)}. \nShould you decide to return the "
                  "function call(s), put it in the format of [func1(params_name=params_value), func2(params)]\n")
        turns = [{"from": m["role"], "value": format_bracket_calls(m["tool_calls"])
                  if m.get("tool_calls") else m["content"]} for m in r["messages"]]
        final = format_bracket_calls(r["answer"]) if r["answer"] else "None of the given functions can help here."
        rows.append({"system": system, "conversations": turns + [{"from": "assistant", "value": final}]})
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False, indent=1)


@pytest.fixture(scope="module")
def records():
    return synthetic_records(400, seed=3)


@pytest.fixture(scope="module")
def tokenizer(records):
    texts = [json.dumps(r) for r in records[:100]] + [MUST_STEPS, DEFAULT_SYSTEM]
    return train_tokenizer(texts, vocab_size=600)


def _record(**overrides):
    base = {"id": "r1", "source": "test", "tools": [{"name": "f", "description": "", "parameters": {}}],
            "messages": [{"role": "user", "content": "hi"}], "answer": [{"name": "f", "arguments": {"x": 1}}]}
    base.update(overrides)
    return base


# --- synthetic generator --------------------------------------------------------------------------------------

def test_synthetic_is_deterministic_and_seeded():
    assert synthetic_records(50, seed=7) == synthetic_records(50, seed=7)
    assert synthetic_records(50, seed=7) != synthetic_records(50, seed=8)
    state = random.getstate()
    synthetic_records(5, seed=1)
    assert random.getstate() == state  # never touches the global generator


def test_synthetic_covers_case_types_and_validates(records):
    counts = collections.Counter(r["case"] for r in records)
    assert set(counts) == CASE_TYPES and min(counts.values()) >= 20
    for r in records:
        validate_record(r)
        names = [t["name"] for t in r["tools"]]
        assert 1 <= len(names) <= 3 and len(set(names)) == len(names)
        assert len(r["messages"][0]["content"].split()) <= 32
        assert r["allow_empty_call"] is True
        if r["case"] == "single":
            assert len(names) == 1 and len(r["answer"]) == 1
        elif r["case"] == "multiple":
            assert len(names) >= 2 and len(r["answer"]) == 1
        elif r["case"] == "parallel":
            assert len(r["answer"]) == 2 and r["answer"][0] != r["answer"][1]
        else:
            assert r["answer"] == []


def test_no_call_offers_no_tool_from_the_query_domain():
    domain = {t["name"]: t["domain"] for t in TOOL_LIBRARY}
    rng = random.Random(0)
    for _ in range(200):
        query, offered, answer = synthetic._synthetic_case(rng, "no_call", 3, TOOL_LIBRARY)
        assert answer == [] and offered
    # the query's own tool and its domain siblings are excluded: check via a fixed tool
    weather = next(t for t in TOOL_LIBRARY if t["name"] == "get_weather")
    for _ in range(50):
        offered = synthetic._distractors(rng, TOOL_LIBRARY, [weather], 3, avoid_domains={"weather"})
        assert all(domain[t["name"]] != "weather" for t in offered)


def test_synthetic_knobs():
    assert {r["case"] for r in synthetic_records(100, seed=0, max_tools=1)} <= {"single", "parallel", "no_call"}
    only = synthetic_records(30, seed=0, p_parallel=0, p_no_call=0, p_multiple=0)
    assert {r["case"] for r in only} == {"single"} and not any(r["allow_empty_call"] for r in only)
    assert all(r["case"] == "parallel" for r in synthetic_records(30, seed=0, p_parallel=1, p_no_call=0,
                                                                     p_multiple=0))
    assert all(len(r["tools"]) <= 4 for r in synthetic_records(100, seed=0, max_tools=4))
    with pytest.raises(ValueError, match="sum to <= 1"):
        synthetic_records(5, p_parallel=0.6, p_no_call=0.6)
    with pytest.raises(ValueError, match="max_tools"):
        synthetic_records(5, max_tools=0)


def test_synthetic_tool_subset():
    subset = ["get_weather", "track_package", "play_music"]
    records = synthetic_records(300, seed=1, tools=subset)
    offered = {t["name"] for r in records for t in r["tools"]}
    called = {c["name"] for r in records for c in r["answer"]}
    assert offered == called == set(subset)
    assert {r["case"] for r in records} == {"single", "multiple", "parallel", "no_call"}
    assert all(len(r["tools"]) >= 1 for r in records)
    single = synthetic_records(50, seed=1, tools=["get_weather"], p_no_call=0)  # parallel = the same tool twice
    assert {c["name"] for r in single for c in r["answer"]} == {"get_weather"}
    with pytest.raises(ValueError, match="get_wether"):
        synthetic_records(5, tools=["get_wether"])
    with pytest.raises(ValueError, match="two domains"):
        synthetic_records(200, tools=["get_weather", "get_forecast"], p_no_call=0.3)


def _matches_schema(value, schema) -> bool:
    kind = schema.get("type")
    if kind == "string":
        return isinstance(value, str) and value in schema.get("enum", [value])
    if kind == "integer":
        return type(value) is int
    if kind == "number":
        return type(value) is float
    if kind == "boolean":
        return type(value) is bool
    if kind == "array":
        return isinstance(value, list) and all(_matches_schema(v, schema["items"]) for v in value)
    if kind == "object":
        return isinstance(value, dict) and all(_matches_schema(value[k], s) for k, s in schema["properties"].items())
    return False


def test_every_template_fills_with_typed_values():
    assert len(TOOL_LIBRARY) >= 24
    rng = random.Random(0)
    for tool in TOOL_LIBRARY:
        props = tool["schema"]["parameters"]["properties"]
        required = tool["schema"]["parameters"]["required"]
        assert len(tool["schema"]["description"].split()) <= 8
        for template in tool["templates"]:
            for _ in range(5):
                query, args = fill_template(rng, tool, template)
                assert "{" not in query and "  " not in query
                assert set(required) <= set(args) <= set(props), (tool["name"], template)
                assert list(args) == [p for p in props if p in args]  # schema order
                for name, value in args.items():
                    assert _matches_schema(value, props[name]), (tool["name"], name, value)


def test_values_to_compute_match_the_query():
    timer = next(t for t in TOOL_LIBRARY if t["name"] == "set_timer")
    forecast = next(t for t in TOOL_LIBRARY if t["name"] == "get_forecast")
    alarm = next(t for t in TOOL_LIBRARY if t["name"] == "set_alarm")
    rng = random.Random(1)
    for _ in range(100):
        query, args = fill_template(rng, timer, "Set a timer for {minutes}.")
        m = re.search(r"(\d+) hours", query)
        if m:
            assert args["minutes"] == 60 * int(m.group(1))
        if "half an hour" in query:
            assert args["minutes"] == 30
        query, args = fill_template(rng, forecast, "Forecast for {city} {days_ahead}.")
        assert args["city"] in query
        assert args["days_ahead"] == (1 if "tomorrow" in query else 7 if "a week" in query else
                                      14 if "two weeks" in query else int(re.search(r"in (\d+) days", query)[1]))
        query, args = fill_template(rng, alarm, "Wake me up at {time}.")
        hour, half = re.search(r"(\d+) (am|pm)", query).groups()
        assert args["time"] == f"{int(hour) % 12 + (12 if half == 'pm' else 0):02d}:00"


def test_two_slots_of_one_kind_differ():
    flight = next(t for t in TOOL_LIBRARY if t["name"] == "book_flight")
    rng = random.Random(2)
    for _ in range(100):
        _, args = fill_template(rng, flight, flight["templates"][0])
        assert args["origin"] != args["destination"]


# --- prompts --------------------------------------------------------------------------------------------------

def test_system_prompt_contents(records):
    tools = records[0]["tools"] + [{"name": "Zürich tool", "description": "ü"}]
    text = system_prompt(tools)
    assert text.startswith(DEFAULT_SYSTEM)
    assert "# Tool" in text and "Here is a list of functions in JSON format that you can invoke:" in text
    block = text[text.index("<tools>\n") + len("<tools>\n"):text.index("\n</tools>")]
    assert block.split("\n") == [json.dumps({"type": "function", "function": t}, ensure_ascii=False)
                                 for t in tools]
    for phrase in ["In each action step, you MUST", "1. Think about the reasoning process",
                   "<think> </think> XML tags", "2. Then, provide a json object with function names and arguments",
                   "<tool_call></tool_call> XML tags", '{"name": <function-name>, "arguments": <args-json-object>}',
                   "3. Make sure both the reasoning and the tool call steps are included together in one single reply",
                   "A complete reply example is: <think>", "Please make sure the type of the arguments is correct."]:
        assert phrase in text, phrase
    assert "<tool_call>[]</tool_call>" not in text
    assert "<tool_call>[]</tool_call>" in system_prompt(tools, allow_empty_call=True)
    custom = system_prompt(tools, prefix="You are ToolBot.\n")
    assert custom.startswith("You are ToolBot.\n\n# Tool") and DEFAULT_SYSTEM not in custom
    assert system_prompt([], prefix="").startswith("# Tool")


def test_prompt_messages_and_render(records, tokenizer):
    record = records[0]
    messages = prompt_messages(record)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == system_prompt(record["tools"], None, True)
    prompt = render_prompt(tokenizer, record)
    assert prompt.startswith("<|im_start|>system\n" + DEFAULT_SYSTEM)
    assert prompt.endswith(record["messages"][0]["content"] + "<|im_end|>\n<|im_start|>assistant\n")


def test_multi_turn_context_renders_calls_as_replies():
    call = {"name": "f", "arguments": {"x": 1}}
    record = _record(messages=[{"role": "user", "content": "do f"},
                               {"role": "assistant", "content": "", "tool_calls": [call]},
                               {"role": "tool", "content": '{"ok": true}'}], system="Be brief.")
    messages = prompt_messages(record)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[0]["content"].startswith("Be brief.\n\n# Tool")
    assert messages[2]["content"] == render_target({"answer": [call]})
    assert "tool_calls" not in messages[2]


def test_render_target_scores_one(records, tokenizer):
    for record in records[:60]:
        target = render_target(record)
        assert target == f"<think></think>\n<tool_call>\n{json.dumps(record['answer'])}\n</tool_call>"
        assert tool_call_reward(target, record["answer"]) == 1.0
        assert tool_call_reward(render_prompt(tokenizer, record) + target + "<|im_end|>", record["answer"]) == 1.0
        assert tool_call_reward(render_target(record, think="Use the tool."), record["answer"]) == 1.0
        # the prompt alone (whose example holds think and tool_call tags) must not score
        assert tool_call_reward(render_prompt(tokenizer, record), record["answer"]) == 0.0


# --- records: jsonl, validation, split, shuffle ---------------------------------------------------------------

def test_jsonl_round_trip(records, tmp_path):
    path = tmp_path / "sub" / "r.jsonl"
    save_records(records, path)
    assert load_records(path) == records


@pytest.mark.parametrize("record,message", [
    ([1, 2], "must be a JSON object"),
    ({k: v for k, v in _record().items() if k != "answer"}, "missing key 'answer'"),
    (_record(tools=[{"description": "no name"}]), "'tools' must be a list"),
    (_record(messages=[]), "non-empty list"),
    (_record(messages=[{"role": "robot", "content": "x"}]), r"messages\[0\]"),
    (_record(messages=[{"role": "user", "content": 5}]), r"messages\[0\]"),
    (_record(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]), "last context"),
    (_record(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [{}]},
                       {"role": "tool", "content": "r"}]), r"tool_calls\[0\]"),
    (_record(answer={"name": "f", "arguments": {}}), "'answer' must be a list"),
    (_record(answer=[{"name": "f", "arguments": "{}"}]), r"answer\[0\]"),
    (_record(answer=[{"name": "g", "arguments": {}}]), "'g', which is not in 'tools'"),
    (_record(system=5), "'system'"),
    (_record(allow_empty_call="yes"), "allow_empty_call"),
])
def test_validate_record_errors(record, message):
    with pytest.raises(ValueError, match=message):
        validate_record(record)


def test_load_records_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_record()) + "\n\n" + "{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: not valid JSON"):
        load_records(path)
    path.write_text(json.dumps(_record()) + "\n" + json.dumps(_record(answer=[{"name": "zz", "arguments": {}}])))
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: record r1: answer\[0\] calls 'zz'"):
        load_records(path)


def test_jsonl_encodings(tmp_path):
    """A byte-order mark is read past; text that is not UTF-8 and a lone surrogate escape (half an emoji: no
    tokenizer reads it, it crashed later with no record named) are errors naming the file and line."""
    path = tmp_path / "enc.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_record()).encode() + b"\n")
    assert len(load_records(path)) == 1
    path.write_bytes(json.dumps(_record()).encode() + b"\n" + b'{"id": "caf\xe9"}\n')  # latin-1
    with pytest.raises(ValueError, match=r"enc\.jsonl:2: not UTF-8 text"):
        load_records(path)
    # a surrogate pair in the escapes: one character
    good = json.dumps(_record(messages=[{"role": "user", "content": "smile \U0001F600"}]))
    assert "\\ud83d\\ude00" in good.lower()
    path.write_text(good + "\n" + good.replace("\\ude00", "") + "\n")
    with pytest.raises(ValueError, match=r"enc\.jsonl:2: a lone surrogate escape"):
        load_records(path)


def test_split_and_shuffle_are_deterministic(records):
    train, test = split_records(records, test_frac=0.1, seed=5)
    assert (train, test) == split_records(records, test_frac=0.1, seed=5)
    assert split_records(records, 0.1, seed=6)[1] != test
    assert len(test) == 40 and len(train) == 360
    assert sorted(r["id"] for r in train + test) == sorted(r["id"] for r in records)
    assert [r["id"] for r in train] == [r["id"] for r in records if r in train]  # input order kept
    assert split_records(records, 0.0)[1] == [] and split_records(records, 1.0)[0] == []
    with pytest.raises(ValueError, match="test_frac"):
        split_records(records, 1.5)
    shuffled = shuffle_records(records, seed=1)
    assert shuffled == shuffle_records(records, seed=1) != records
    assert sorted(r["id"] for r in shuffled) == sorted(r["id"] for r in records)


def test_split_keeps_a_toolace_dialogue_on_one_side():
    records = [{"id": f"toolace-{d}-{t}", "source": "toolace"} for d in range(40) for t in range(d % 4 + 1)]
    records += [{"id": f"xlam-{i}", "source": "xlam", "messages": [{"role": "user", "content": f"q{i}"}]}
                for i in range(60)]
    for seed in range(5):
        train, test = split_records(records, test_frac=0.2, seed=seed)
        train_dialogues = {r["id"].rsplit("-", 1)[0] for r in train if r["source"] == "toolace"}
        assert not any(r["id"].rsplit("-", 1)[0] in train_dialogues for r in test if r["source"] == "toolace")
        assert len(train) + len(test) == len(records) and abs(len(test) - 0.2 * len(records)) <= 3
        assert any(r["source"] == "toolace" for r in test) and any(r["source"] == "xlam" for r in test)


def test_split_keeps_copies_of_a_prompt_on_one_side():
    """The synthetic generator repeats some prompts (a small template space): a held-out prompt must never also be
    a training prompt, or the held-out accuracy partly measures memorisation."""
    records = synthetic_records(600, seed=3)
    key = lambda r: json.dumps([r["messages"], r["tools"]], sort_keys=True)
    assert len({key(r) for r in records}) < len(records)  # the generator does repeat prompts
    for seed in range(3):
        train, test = split_records(records, test_frac=0.2, seed=seed)
        assert not {key(r) for r in train} & {key(r) for r in test}
        assert len(train) + len(test) == len(records) and abs(len(test) - 120) <= 5


# --- xLAM ------------------------------------------------------------------------------------------------------

def test_xlam_round_trip_from_synthetic(records, tmp_path):
    path = tmp_path / "xlam.json"
    write_xlam(records, path)
    rows = json.loads(path.read_text())
    assert isinstance(rows[0]["tools"], str) and isinstance(rows[0]["answers"], str)
    converted, stats = convert_xlam(path)
    assert stats["raw"] == stats["kept"] == stats["single_turn"] == len(records) and not stats["dropped"]
    assert [r["answer"] for r in converted] == [r["answer"] for r in records]
    assert [r["messages"] for r in converted] == [r["messages"] for r in records]
    assert converted[0]["tools"] == json.loads(rows[0]["tools"])  # kept as given by default
    as_schema, _ = convert_xlam(path, schema=True)
    for new, old in zip(as_schema, records):
        for t_new, t_old in zip(new["tools"], old["tools"]):
            p_new, p_old = t_new["parameters"], t_old["parameters"]
            assert p_new["required"] == p_old["required"]
            assert {k: v["type"] for k, v in p_new["properties"].items()} == \
                   {k: v["type"] for k, v in p_old["properties"].items()}


def test_xlam_tool_types():
    tool = {"name": "t", "description": "d", "parameters": {
        "ids": {"description": "", "type": "List[int]", "default": [1]},
        "q": {"description": "", "type": "str, optional", "default": ""},
        "m": {"description": "", "type": "Dict[str, Any]"}, "x": {"description": "", "type": "float"},
        "weird": {"description": "", "type": "Callable"}}}
    props = convert.xlam_tool_to_schema(tool)["parameters"]
    assert props["required"] == ["ids", "m", "x", "weird"]
    assert props["properties"]["ids"] == {"type": "array", "items": {"type": "integer"}, "description": "",
                                          "default": [1]}
    assert props["properties"]["q"]["type"] == "string" and props["properties"]["m"]["type"] == "object"
    assert props["properties"]["x"]["type"] == "number" and props["properties"]["weird"]["type"] == "Callable"
    # nested generics split at top-level commas only ('Dict[str' before); Optional[...] is optional
    tool = {"name": "t", "parameters": {"rows": {"type": "List[Dict[str, Any]]"}, "n": {"type": "Optional[int]"},
                                        "u": {"type": "List[Union[int, float]]"}}}
    props = convert.xlam_tool_to_schema(tool)["parameters"]
    assert props["properties"]["rows"]["items"] == {"type": "object"} and props["properties"]["n"]["type"] == "integer"
    assert props["properties"]["u"]["items"] == {"type": "Union[int, float]"} and props["required"] == ["rows", "u"]


def test_xlam_bad_rows_are_counted(tmp_path):
    tools = json.dumps([{"name": "f", "description": "", "parameters": {"a": {"type": "int", "description": ""}}}])
    good = {"id": 1, "query": "q", "tools": tools, "answers": json.dumps([{"name": "f", "arguments": {"a": 1}}])}
    rows = [good,
            {**good, "tools": "[{broken"},
            {**good, "answers": "not json"},
            {**good, "query": ""},
            {**good, "answers": json.dumps([{"name": "g", "arguments": {}}])},
            {**good, "answers": json.dumps([{"name": "f", "arguments": "a=1"}])},
            {**good, "tools": json.dumps({"name": "f"})},
            {k: v for k, v in good.items() if k != "answers"},
            "a string row",
            {**good, "tools": json.loads(tools), "answers": [{"name": "f", "arguments": {"a": 2}}]}]
    path = tmp_path / "x.json"
    path.write_text(json.dumps(rows))
    records, stats = convert_xlam(path)
    assert stats["raw"] == 10 and stats["kept"] == 2 and sum(stats["dropped"].values()) == 8
    assert stats["dropped"] == {"bad tools JSON": 1, "bad answers JSON": 1, "missing query": 1,
                                "answer names a tool not in the list": 1, "bad answers": 1, "bad tools": 1,
                                "missing answers": 1, "row is not an object": 1}
    assert records[0]["id"] == "xlam-1" and records[1]["answer"] == [{"name": "f", "arguments": {"a": 2}}]
    assert "row 1" in stats["examples"]["bad tools JSON"]
    assert "dropped" in convert.format_stats("xlam", stats)


def test_write_xlam_refuses_multi_turn(tmp_path):
    record = _record(messages=[{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}])
    with pytest.raises(ValueError, match="record r1: xLAM rows hold one user query"):
        write_xlam([record], tmp_path / "x.json")


# --- ToolACE ---------------------------------------------------------------------------------------------------

TOOLACE_TOOLS = [
    {"name": "math.hypot", "description": "Hypotenuse", "parameters": {"type": "dict", "properties": {
        "x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]}, "required": None},
    {"name": "Get Movie Details", "description": "Movie info", "parameters": {"type": "dict", "properties": {
        "title": {"type": "string"}, "filters": {"type": "dict"}}, "required": ["title"]}},
    {"name": "book", "description": "Book", "parameters": {"type": "dict", "properties": {}}},
]
TOOLACE_SYSTEM = ("You are an expert in composing functions. Please help.\nHere is a list of functions in JSON "
                  "format that you can invoke:\n" + json.dumps(TOOLACE_TOOLS) + ". \nShould you decide to return "
                  "the function call(s), put it in the format of [func1(params_name=params_value)]\n")


def test_toolace_hand_written_rows(tmp_path):
    rows = [
        {"system": TOOLACE_SYSTEM, "conversations": [  # multi-turn: call, tool output, text, call
            {"from": "user", "value": "Hypotenuse of 3 and 4? Then details of Up."},
            {"from": "assistant", "value": "[math.hypot(x=3, y=4.0)]"},
            {"from": "tool", "value": '[{"name": "math.hypot", "results": {"value": 5}}]'},
            {"from": "assistant", "value": "It is 5. Anything else?"},
            {"from": "user", "value": "Details of Up, only 2009, with cast."},
            {"from": "assistant", "value": '[Get Movie Details(title="Up", filters={"year": [2009, -1], '
                                           "'cast': true, \"note\": 'it\\'s \"ok\"', 'x': None}), book()]"},
            {"from": "tool", "value": "[]"},
            {"from": "assistant", "value": "Done."}]},
        {"system": TOOLACE_SYSTEM, "conversations": [  # unknown tool: dropped and counted
            {"from": "user", "value": "q"}, {"from": "assistant", "value": "[delete_all(force=True)]"}]},
        {"system": TOOLACE_SYSTEM, "conversations": [  # not parseable: counted
            {"from": "user", "value": "q"}, {"from": "assistant", "value": "[book(x=some_variable)]"}]},
        {"system": "No tools here.", "conversations": []},
        {"system": TOOLACE_SYSTEM.replace(json.dumps(TOOLACE_TOOLS), "[{bad json"), "conversations": []},
        {"system": TOOLACE_SYSTEM, "conversations": [{"from": "robot", "value": "x"}]},
        {"system": TOOLACE_SYSTEM, "conversations": [{"from": "user", "value": "hi"},
                                                     {"from": "assistant", "value": "Hello!"}]},
        {"conversations": []},
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows))
    records, stats = convert_toolace(path)
    assert stats["raw"] == 8 and stats["kept"] == 2
    assert stats["single_turn"] == 1 and stats["multi_turn"] == 1
    assert stats["dropped"] == {"call names a tool not in the list": 1, "unparseable call": 1,
                                "no tool list in system text": 1, "bad tool list JSON": 1,
                                "bad turn (rest of dialogue skipped)": 1, "dialogue without tool calls": 1,
                                "row lacks system text or conversations": 1}
    first, second = records
    assert first["id"] == "toolace-0-1" and first["source"] == "toolace"
    assert first["system"] == "You are an expert in composing functions. Please help."
    assert first["tools"] == TOOLACE_TOOLS
    assert first["answer"] == [{"name": "math.hypot", "arguments": {"x": 3, "y": 4.0}}]
    assert first["messages"] == [{"role": "user", "content": "Hypotenuse of 3 and 4? Then details of Up."}]
    assert second["answer"] == [
        {"name": "Get Movie Details", "arguments": {"title": "Up", "filters": {
            "year": [2009, -1], "cast": True, "note": "it's \"ok\"", "x": None}}},
        {"name": "book", "arguments": {}}]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool", "assistant", "user"]
    assert second["messages"][1] == {"role": "assistant", "content": "",
                                     "tool_calls": [{"name": "math.hypot", "arguments": {"x": 3, "y": 4.0}}]}
    assert second["messages"][3]["content"] == "It is 5. Anything else?"
    for r in records:
        validate_record(r)


def test_toolace_round_trip_from_synthetic(records, tmp_path):
    with_calls = [r for r in records if r["answer"]]
    path = tmp_path / "toolace.json"
    write_toolace(records, path)
    converted, stats = convert_toolace(path)
    assert stats["raw"] == len(records) and stats["kept"] == len(with_calls)
    assert stats["dropped"] == {"dialogue without tool calls": len(records) - len(with_calls)}
    assert [r["answer"] for r in converted] == [r["answer"] for r in with_calls]
    assert [r["tools"] for r in converted] == [r["tools"] for r in with_calls]
    assert all(r["system"] == DEFAULT_SYSTEM for r in converted)


def test_toolace_multi_turn_round_trip(tmp_path):
    record = _record(messages=[{"role": "user", "content": "a"},
                               {"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": {}}]},
                               {"role": "tool", "content": "r"}], system="Sys.")
    path = tmp_path / "t.json"
    write_toolace([record], path)
    converted, stats = convert_toolace(path)
    assert stats["kept"] == 2 and stats["multi_turn"] == 1
    assert converted[1]["messages"] == record["messages"] and converted[1]["answer"] == record["answer"]
    assert converted[1]["system"] == "Sys."


@pytest.mark.parametrize("text,expected", [
    ('[f(a=1, b="x")]', [{"name": "f", "arguments": {"a": 1, "b": "x"}}]),
    ("f(a=[1, 2])", [{"name": "f", "arguments": {"a": [1, 2]}}]),
    ("[a.b.c(x=(1, 2), y=-2.5, z=+3)]", [{"name": "a.b.c", "arguments": {"x": [1, 2], "y": -2.5, "z": 3}}]),
    ("[f(x=true, y=null, z=False)]", [{"name": "f", "arguments": {"x": True, "y": None, "z": False}}]),
    ("[f(), g(s='a,b)')]", [{"name": "f", "arguments": {}}, {"name": "g", "arguments": {"s": "a,b)"}}]),
    ("[]", []),
])
def test_parse_bracket_calls(text, expected):
    assert parse_bracket_calls(text) == expected
    assert parse_bracket_calls(format_bracket_calls(expected)) == expected


@pytest.mark.parametrize("text,message", [
    ("[f(1)]", "only keyword arguments"),
    ("[f(**opts)]", "only keyword arguments"),
    ("[f(a=b)]", "'b' is not a literal"),
    ("[f(a=g())]", "is not a literal"),
    ("[f(a={1: 2})]", "dict keys must be strings"),
    ("[f(a={1, 2})]", "is not a literal"),
    ("[1, f()]", "expected name"),
    ("[f()[0]()]", "is not a \\(dotted\\) name"),
    ("[Get Movie Details(title='x')]", "not a call list"),
    ("[f(a=1]", "not a call list"),
    ("[" * 500 + "]" * 500, "not a call list"),
])
def test_parse_bracket_calls_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_bracket_calls(text)


def test_parse_bracket_calls_names_with_spaces_and_hyphens():
    names = ["Get Movie Details", "get-weather", "class"]
    assert parse_bracket_calls("[Get Movie Details(title='x'), get-weather(city='Oslo'), class(n=1)]", names) == [
        {"name": "Get Movie Details", "arguments": {"title": "x"}},
        {"name": "get-weather", "arguments": {"city": "Oslo"}}, {"name": "class", "arguments": {"n": 1}}]
    # a name( inside a string argument is text, not a call: it stays as written (it became "__tool_1__(")
    assert parse_bracket_calls('[get-weather(city="ask get-weather(x) or Get Movie Details(y)")]', names) == [
        {"name": "get-weather", "arguments": {"city": "ask get-weather(x) or Get Movie Details(y)"}}]


# --- generic JSONL and the CLI ---------------------------------------------------------------------------------

def test_convert_jsonl_counts_bad_lines(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join([json.dumps(_record()), "{oops", json.dumps(_record(answer=[{"name": "zz",
                                                                                             "arguments": {}}])),
                               json.dumps(_record(id="r2", messages=[{"role": "user", "content": "a"},
                                                                     {"role": "tool", "content": "b"}]))]))
    records, stats = convert_jsonl(path)
    assert [r["id"] for r in records] == ["r1", "r2"]
    assert stats["raw"] == 4 and stats["single_turn"] == 1 and stats["multi_turn"] == 1
    assert stats["dropped"] == {"invalid JSON line": 1, "invalid record": 1}
    array = tmp_path / "array.json"
    array.write_text("[]")
    with pytest.raises(ValueError, match="expected JSONL"):
        convert_jsonl(array)
    # what save_records writes: raw U+2028 / U+0085 inside strings (str.splitlines cut the record in pieces),
    # behind a byte-order mark (the first record was lost)
    odd = tmp_path / "odd.jsonl"
    save_records([_record(messages=[{"role": "user", "content": "a\u2028b\u0085c"}])], odd)
    odd.write_bytes(b"\xef\xbb\xbf" + odd.read_bytes())
    records, stats = convert_jsonl(odd)
    assert stats["raw"] == 1 and records[0]["messages"][0]["content"] == "a\u2028b\u0085c"


def test_cli(tmp_path, capsys):
    synth, xlam_file, xlam_out = tmp_path / "s.jsonl", tmp_path / "x.json", tmp_path / "x.jsonl"
    data.main(["synthetic", str(synth), "--n", "50", "--seed", "1"])
    assert "synthetic: 50 records" in capsys.readouterr().out
    assert load_records(synth) == synthetic_records(50, seed=1)
    write_xlam(load_records(synth), xlam_file)
    data.main(["xlam", str(xlam_file), str(xlam_out), "--schema"])
    assert "xlam: 50 raw rows -> 50 records (50 single-turn, 0 multi-turn)" in capsys.readouterr().out
    write_toolace(load_records(synth), tmp_path / "t.json")
    data.main(["toolace", str(tmp_path / "t.json"), str(tmp_path / "t.jsonl")])
    assert "toolace: 50 raw rows ->" in capsys.readouterr().out
    data.main(["jsonl", str(xlam_out), str(tmp_path / "checked.jsonl")])
    assert "jsonl: 50 raw rows -> 50 records" in capsys.readouterr().out
    data.main(["split", str(synth), "--test-frac", "0.2", "--seed", "3"])
    out = capsys.readouterr().out
    assert "wrote 40 records" in out and "wrote 10 records" in out
    train, test = load_records(tmp_path / "s.train.jsonl"), load_records(tmp_path / "s.test.jsonl")
    assert (train, test) == split_records(load_records(synth), 0.2, seed=3)


def test_fuzz_toolace_parsing_never_crashes():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    pieces = st.sampled_from(["[", "]", "(", ")", "f", "a.b", "Get Movie Details", "=", ",", "1", "-", "'x'",
                              '"y"', "{", "}", ":", "true", "None", "**", " ", "\x00", "lambda", "\\"])
    texts = st.one_of(st.lists(pieces, max_size=25).map("".join), st.text(max_size=60))

    @hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
    @hypothesis.given(texts)
    def check(text):
        try:
            calls = parse_bracket_calls(text, ["Get Movie Details"])
        except ValueError:
            return
        for call in calls:
            json.dumps(call)  # whatever parses is plain JSON data
            assert isinstance(call["name"], str) and isinstance(call["arguments"], dict)

    check()


def test_deeply_nested_rows_are_skipped_and_counted(tmp_path, records):
    """100k levels of nesting raise RecursionError inside json: one such row is counted, never aborts a file."""
    deep = "[" * 100_000 + "]" * 100_000
    good = records[:3]
    xlam_rows = [{"id": i, "query": r["messages"][0]["content"], "tools": json.dumps([schema_tool_to_xlam(t)
                  for t in r["tools"]]), "answers": json.dumps(r["answer"])} for i, r in enumerate(good)]
    text = json.dumps(xlam_rows)
    (tmp_path / "x.json").write_text(text[:-1] + ', {"id": 9, "query": "q", "tools": ' + deep + ', "answers": "[]"}]')
    converted, stats = convert_xlam(tmp_path / "x.json")
    assert len(converted) == 3 and stats["raw"] == 4 and "JSON nested too deeply" in convert.format_stats("x", stats)
    (tmp_path / "x2.json").write_text(text[:-1] + ', {"id": 9, "query": "q", "tools": ' + json.dumps(deep) +
                                      ', "answers": "[]"}]')  # nested inside a JSON string field
    assert len(convert_xlam(tmp_path / "x2.json")[0]) == 3
    lines = [json.dumps(r) for r in good] + [deep]
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    converted, stats = convert_jsonl(tmp_path / "r.jsonl")
    assert len(converted) == 3 and stats["raw"] == 4
    system = "Here is a list of functions in JSON format that you can invoke:\n" + deep
    (tmp_path / "t.json").write_text(json.dumps([{"system": system, "conversations": []}]))
    assert convert_toolace(tmp_path / "t.json")[0] == []
    with pytest.raises(ValueError, match=r"r\.jsonl:4: JSON nested too deeply"):  # training: file and line named
        load_records(tmp_path / "r.jsonl")
