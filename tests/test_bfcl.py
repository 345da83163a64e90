"""BFCL checker tests: hand-made rule cases, the decoder, the scores, and (with bfcl-eval installed) the
oracle property on every ground truth and a case-by-case cross-check with the official checker."""

import copy
import json
import sys
import types
from collections import Counter, defaultdict

import pytest

from tooln1_min import bfcl
from tooln1_min.bfcl import ast_check, decode_tool_calls, format_table, summarize

# ---------------------------------------------------------------------------------------------------------
# Hand-made cases, one or more per rule


def fn(name, props, required=None):
    required = list(props) if required is None else required
    return {"name": name, "description": "", "parameters": {"type": "dict", "properties": props, "required": required}}


S, I, F, B, D, ANY = ({"type": t} for t in ("string", "integer", "float", "boolean", "dict", "any"))


def arr(item, kind="array"):
    return {"type": kind, "items": {"type": item}}


WEATHER = [fn("get_weather", {"city": S, "days": I, "unit": S}, required=["city"])]
WEATHER_ANS = [{"get_weather": {"city": ["San Francisco", "SF"], "days": [3], "unit": ["", "celsius"]}}]


def weather(**args):
    return [{"get_weather": args}]


def one(props, answers, value, required=None):
    """(functions, calls, answer) for a single parameter `x` with schema `props`."""
    return [fn("f", {"x": props}, required)], [{"f": {"x": value}}], [{"f": {"x": answers}}]


PAIR = [fn("area", {"r": I}), fn("volume", {"r": I, "h": I})]
PAIR_ANS = [{"area": {"r": [2]}}, {"volume": {"r": [3], "h": [4]}}]

CASES = [
    # name, (functions, calls, answer), category, expected
    ("exact", (WEATHER, weather(city="San Francisco", days=3), WEATHER_ANS), "simple_python", True),
    ("second accepted value", (WEATHER, weather(city="SF", days=3), WEATHER_ANS), "simple_python", True),
    ("optional given", (WEATHER, weather(city="SF", days=3, unit="celsius"), WEATHER_ANS), "simple_python", True),
    ("optional wrong", (WEATHER, weather(city="SF", days=3, unit="kelvin"), WEATHER_ANS), "simple_python", False),
    ("answer param omitted", (WEATHER, weather(city="SF"), WEATHER_ANS), "simple_python", False),
    ("required omitted", (WEATHER, weather(days=3), WEATHER_ANS), "simple_python", False),
    ("param outside schema", (WEATHER, weather(city="SF", days=3, lang="en"), WEATHER_ANS), "simple_python", False),
    ("param outside answer", ([fn("get_weather", {"city": S, "days": I, "unit": S, "lang": S}, ["city"])],
                              weather(city="SF", days=3, lang="en"), WEATHER_ANS), "simple_python", False),
    ("wrong name", (WEATHER, [{"get_forecast": {"city": "SF", "days": 3}}], WEATHER_ANS), "simple_python", False),
    ("two calls in simple", (WEATHER, weather(city="SF", days=3) * 2, WEATHER_ANS), "simple_python", False),
    ("no call in simple", (WEATHER, [], WEATHER_ANS), "simple_python", False),
    ("decode failure", (WEATHER, None, WEATHER_ANS), "simple_python", False),
    ("not decoded form", (WEATHER, [{"get_weather": {"city": "SF"}, "x": {}}], WEATHER_ANS), "simple_python", False),
    # strings: case and ,./-_*^ and spaces ignored, ' read as "
    ("string case/punct", (WEATHER, weather(city="san-francisco.", days=3), WEATHER_ANS), "simple_python", True),
    ("string upper", (WEATHER, weather(city="SAN FRANCISCO", days=3), WEATHER_ANS), "simple_python", True),
    ("string other", (WEATHER, weather(city="San Fran", days=3), WEATHER_ANS), "simple_python", False),
    ("string quotes", one(S, ["it's"], 'IT"S'), "simple_python", True),
    ("any is a string", one(ANY, ["x_y"], "X Y"), "simple_python", True),
    # strict types
    ("int for float", one(F, [2.0], 2), "simple_python", True),
    ("float for int", one(I, [3], 3.0), "simple_python", False),
    ("bool for int", one(I, [1], True), "simple_python", False),
    ("int for bool", one(B, [True], 1), "simple_python", False),
    ("text for int", one(I, [3], "3"), "simple_python", False),
    ("int answer for float param", one(F, [5], 5.0), "simple_python", True),
    # lists: order-sensitive, strings normalised element-wise
    ("list exact", one(arr("string"), [["a b", "c"]], ["A-B", "c"]), "simple_python", True),
    ("list order", one(arr("string"), [["a", "b"]], ["b", "a"]), "simple_python", False),
    ("list alternative", one(arr("string"), [["a", "b"], ["b", "a"]], ["b", "a"]), "simple_python", True),
    ("list item type", one(arr("integer"), [[1, 2]], ["1", "2"]), "simple_python", False),
    # an item of the wrong type fails the parameter, even where it compares equal (officially: the variable
    # branch after a failed item check keeps it invalid); ints are promoted to float only at the top level
    ("ints in float list", one(arr("float"), [[1.0, 2.5]], [1, 2.5]), "simple_python", False),
    ("tuple", one(arr("float", "tuple"), [[1.0, 2.0]], [1.0, 2.0]), "simple_python", True),
    ("empty list vs optional", one(arr("string"), ["", ["a"]], [], required=[]), "simple_python", True),
    # dicts: keys against the answer's, values normalised, missing keys must be optional
    ("dict", one(D, [{"name": ["John"], "age": ["", 30]}], {"name": "JOHN"}), "simple_python", True),
    ("dict optional key", one(D, [{"name": ["John"], "age": ["", 30]}], {"name": "John", "age": 30}),
     "simple_python", True),
    ("dict wrong value", one(D, [{"name": ["John"], "age": ["", 30]}], {"name": "John", "age": 31}),
     "simple_python", False),
    ("dict extra key", one(D, [{"name": ["John"]}], {"name": "John", "x": 1}), "simple_python", False),
    ("dict missing key", one(D, [{"name": ["John"], "age": [30]}], {"name": "John"}), "simple_python", False),
    ("dict nested value", one(D, [{"pos": [{"x": 1.5, "y": 2}]}], {"pos": {"x": 1.5, "y": 2}}), "simple_python", True),
    ("list of dicts", one(arr("dict"), [[{"item": ["burger"], "n": [5]}, {"item": ["wings"], "n": [6]}]],
                          [{"item": "Burger", "n": 5}, {"item": "wings", "n": 6}]), "simple_python", True),
    ("list of dicts order", one(arr("dict"), [[{"item": ["burger"], "n": [5]}, {"item": ["wings"], "n": [6]}]],
                                [{"item": "wings", "n": 6}, {"item": "burger", "n": 5}]), "simple_python", False),
    # a string answer for a non-string parameter is a variable name: compared exactly
    ("variable", one(arr("string"), ["my_list"], "my_list"), "simple_python", True),
    ("variable case", one(arr("string"), ["my_list"], "My_List"), "simple_python", False),
    ("null answer", one(S, ["", None], None, required=["x"]), "live_simple", True),
    # multiple: the doc named by the answer, exactly one call
    ("multiple", (PAIR, [{"volume": {"r": 3, "h": 4}}], PAIR_ANS[1:]), "multiple", True),
    ("multiple wrong fn", (PAIR, [{"area": {"r": 3}}], PAIR_ANS[1:]), "multiple", False),
    ("multiple two calls", (PAIR, [{"volume": {"r": 3, "h": 4}}] * 2, PAIR_ANS[1:]), "live_multiple", False),
    # parallel: same count, any order
    ("parallel", (PAIR, [{"area": {"r": 2}}, {"volume": {"r": 3, "h": 4}}], PAIR_ANS), "parallel", True),
    ("parallel reordered", (PAIR, [{"volume": {"r": 3, "h": 4}}, {"area": {"r": 2}}], PAIR_ANS),
     "parallel_multiple", True),
    ("parallel missing", (PAIR, [{"area": {"r": 2}}], PAIR_ANS), "live_parallel", False),
    ("parallel extra", (PAIR, [{"area": {"r": 2}}, {"volume": {"r": 3, "h": 4}}, {"area": {"r": 2}}], PAIR_ANS),
     "parallel", False),
    ("parallel same fn", ([PAIR[0]], [{"area": {"r": 3}}, {"area": {"r": 2}}],
                          [{"area": {"r": [2]}}, {"area": {"r": [3]}}]), "parallel", True),
    # official quirk: greedy matching. Expected call 0 takes the first call it accepts (r=1), leaving r=2
    # for expected call 1, which only accepts r=1, although the other assignment would have matched.
    ("parallel greedy", ([PAIR[0]], [{"area": {"r": 1}}, {"area": {"r": 2}}],
                         [{"area": {"r": [1, 2]}}, {"area": {"r": [1]}}]), "parallel", False),
    # Java: arguments are source text, read with the official converter's rules
    ("java int", one({"type": "integer"}, [5], "5"), "simple_java", True),
    ("java int not text", one({"type": "integer"}, [5], 5), "simple_java", False),
    ("java long", one({"type": "long"}, [5], "5L"), "simple_java", True),
    ("java long no suffix", one({"type": "long"}, [5], "5"), "simple_java", False),
    ("java float", one({"type": "float"}, [0.5], "0.5f"), "simple_java", True),
    ("java double", one({"type": "double"}, [0.5], "0.5"), "simple_java", True),
    ("java boolean", one({"type": "boolean"}, [True], "true"), "simple_java", True),
    ("java boolean case", one({"type": "boolean"}, [True], "True"), "simple_java", False),
    ("java String", one({"type": "String"}, ["Hello World"], "hello-world"), "simple_java", True),
    ("java Array", one(arr("integer", "Array"), [[1, 2]], "new int[]{1, 2}"), "simple_java", True),
    ("java ArrayList", one(arr("String", "ArrayList"), [["a", "b"]],
                           'new ArrayList<String>(Arrays.asList("a", "b"))'), "simple_java", True),
    ("java ArrayList add", one(arr("long", "ArrayList"), [[1, 2]],
                               "new ArrayList<Long>() {{ add(1L); add(2L); }}"), "simple_java", True),
    # official quirk: Array<String> elements keep their quotes (ArrayList's lose them), so only bare ones match
    ("java Array quoted", one(arr("String", "Array"), [["a", "b"]], 'new String[]{"a", "b"}'), "simple_java", False),
    ("java Array bare", one(arr("String", "Array"), [["a", "b"]], "new String[]{a, b}"), "simple_java", True),
    ("java HashMap", one({"type": "HashMap"}, [{"k": ["v"], "n": [2]}],
                         'new HashMap<String, Object>() {{ put("k", "V"); put("n", 2); }}'), "simple_java", True),
    ("java variable", one({"type": "HashMap"}, ["myMap"], "myMap"), "simple_java", True),
    # JavaScript
    ("js String quoted", one({"type": "String"}, ["abc"], "'ABC'"), "simple_javascript", True),
    ("js integer", one({"type": "integer"}, [3], "3"), "simple_javascript", True),
    ("js float from int", one({"type": "float"}, [4.0], "4"), "simple_javascript", True),
    ("js Boolean", one({"type": "Boolean"}, [False], "false"), "simple_javascript", True),
    ("js array", one(arr("String"), [["a", "b"]], "['a', 'b']"), "simple_javascript", True),
    ("js array float", one(arr("float"), [[60, 30]], "[60, 30]"), "simple_javascript", True),
    ("js dict", one({"type": "dict"}, [{"key": ["value"], "on": [True]}], "{key: 'value', on: true}"),
     "simple_javascript", True),
    ("js not text", one({"type": "integer"}, [3], 3), "simple_javascript", False),
    # irrelevance passes when nothing is called; relevance when anything is
    ("irrelevance decode failure", (WEATHER, None, None), "irrelevance", True),
    ("irrelevance empty", (WEATHER, [], None), "live_irrelevance", True),
    ("irrelevance call", (WEATHER, weather(city="SF"), None), "irrelevance", False),
    ("relevance call", (WEATHER, weather(city="SF"), None), "live_relevance", True),
    ("relevance nothing", (WEATHER, None, None), "live_relevance", False),
]


@pytest.mark.parametrize("name,case,category,expected", CASES, ids=[c[0] for c in CASES])
def test_rules(name, case, category, expected):
    functions, calls, answer = case
    ok, reason = ast_check(functions, calls, answer, category)
    assert ok is expected, reason
    assert isinstance(reason, str) and reason


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown BFCL category"):
        ast_check(WEATHER, [], WEATHER_ANS, "simple")
    functions, calls, answer = one({"type": "number"}, [1], 1)
    with pytest.raises(ValueError, match="'number' is not a BFCL python type"):
        ast_check(functions, calls, answer, "simple_python")
    with pytest.raises(ValueError, match="not among the functions"):
        ast_check(PAIR, [{"area": {"r": 2}}], [{"perimeter": {"r": [2]}}], "multiple")
    with pytest.raises(ValueError, match="ground truth"):
        ast_check(WEATHER, [], None, "simple_python")


def test_category_helpers():
    assert len(bfcl.CATEGORIES) == 13
    assert [c for c in bfcl.CATEGORIES if bfcl.is_ast(c)] == bfcl.NON_LIVE_AST + bfcl.LIVE_AST
    assert bfcl.category_kind("live_irrelevance") == "irrelevance"
    assert bfcl.category_kind("live_relevance") == "relevance"
    assert bfcl.category_language("simple_java") == "java"
    assert bfcl.category_language("simple_javascript") == "javascript"
    assert bfcl.category_language("live_simple") == "python"


# ---------------------------------------------------------------------------------------------------------
# Decoder

CALL = '{"name": "f", "arguments": {"x": 1}}'
DECODE_CASES = [
    (f"<tool_call>[{CALL}]</tool_call>", [{"f": {"x": 1}}]),
    (f"<think>hm</think>\n<tool_call>\n[{CALL}]\n</tool_call>", [{"f": {"x": 1}}]),
    (f"<tool_call>\u00a0[{CALL}]\f</tool_call>", [{"f": {"x": 1}}]),  # stripped as str.strip does, not as JSON
    # a bare object: Tool-N1's handler iterates its keys and fails to decode (irrelevance then passes)
    (f"<think>hm</think>\n<tool_call>\n{CALL}\n</tool_call>", None),
    (f'<tool_call>[{CALL}, {{"name": "g", "arguments": {{}}}}]</tool_call>', [{"f": {"x": 1}}, {"g": {}}]),
    (f'<tool_call>[{CALL}]</tool_call><tool_call>[{{"name": "g", "arguments": {{}}}}]</tool_call>',
     [{"f": {"x": 1}}]),  # only the first block
    (f"<tool_call>[{CALL}]</tool_call><tool_call>oops</tool_call>", [{"f": {"x": 1}}]),
    ("<tool_call>oops</tool_call><tool_call>[" + CALL + "]</tool_call>", None),  # the first block is bad
    ("no call here", None),
    (f"<tool_call>[{CALL}]", None),  # unclosed
    ("<tool_call>[]</tool_call>", None),
    ("<tool_call></tool_call>", None),
    ("<tool_call>[1]</tool_call>", None),
    ('<tool_call>"f"</tool_call>', None),
    ('<tool_call>[{"name": "f"}]</tool_call>', None),  # no arguments
    ('<tool_call>[{"name": "f", "arguments": "{\\"x\\": 1}"}]</tool_call>', None),  # arguments as text
    ('<tool_call>[{"name": 3, "arguments": {}}]</tool_call>', None),
    (f"<tool_call>[{CALL}, 5]</tool_call>", None),  # one malformed element spoils the block
    ("<tool_call>" + "[" * 100000 + "</tool_call>", None),
    (None, None),
]


@pytest.mark.parametrize("text,expected", DECODE_CASES, ids=range(len(DECODE_CASES)))
def test_decode_tool_calls(text, expected):
    assert decode_tool_calls(text) == expected


# ---------------------------------------------------------------------------------------------------------
# Scores


def test_summarize_and_table():
    results = {
        "simple_python": [True, False], "simple_java": [True], "simple_javascript": [False],
        "multiple": [True, True], "parallel": [False, False], "parallel_multiple": [True],
        "irrelevance": [True, True, True, False],
        "live_simple": [True, False, False], "live_multiple": [True] * 5, "live_parallel": [False],
        "live_parallel_multiple": [True], "live_irrelevance": [False, False], "live_relevance": [True],
    }
    s = summarize(results)
    assert s["categories"]["simple_python"] == {"accuracy": 0.5, "correct": 1, "total": 2}
    assert s["non_live_simple"] == pytest.approx(0.5)
    assert s["non_live"] == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    assert s["live"] == pytest.approx(7 / 10)
    assert s["live_6"] == pytest.approx(8 / 13)
    assert s["overall"] == pytest.approx((0.625 + 0.7) / 2)
    assert s["irrelevance"] == pytest.approx(0.75)
    table = format_table(s)
    assert "live_parallel_multiple" in table and " 62.50" in table and "Overall" in table

    partial = summarize({"live_simple": [True]})
    assert partial["live"] is None and partial["overall"] is None and partial["non_live"] is None
    assert "     -" in format_table(partial)
    with pytest.raises(ValueError, match="unknown BFCL category"):
        summarize({"simple": [True]})


# ---------------------------------------------------------------------------------------------------------
# Data files


def test_find_and_load_user_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip install --no-deps bfcl-eval"):
        bfcl.find_bfcl_dir(str(tmp_path))
    rows = [{"id": f"simple_python_{i}", "question": [[{"role": "user", "content": "q"}]], "function": []}
            for i in range(3)]
    (tmp_path / "BFCL_v4_simple_python.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "BFCL_v4_irrelevance.json").write_text(json.dumps(rows[0]) + "\n")
    (tmp_path / "possible_answer").mkdir()
    answers = [{"id": r["id"], "ground_truth": [{"f": {}}]} for r in reversed(rows)]  # order must not matter
    (tmp_path / "possible_answer" / "BFCL_v4_simple_python.json").write_text(
        "\n".join(json.dumps(a) for a in answers))
    assert bfcl.find_bfcl_dir(str(tmp_path)) == str(tmp_path)
    entries = bfcl.load_category(str(tmp_path), "simple_python", limit=2)
    assert [e["id"] for e in entries] == ["simple_python_0", "simple_python_1"]
    assert entries[0]["ground_truth"] == [{"f": {}}]
    assert "ground_truth" not in bfcl.load_category(str(tmp_path), "irrelevance")[0]
    with pytest.raises(FileNotFoundError, match="BFCL_v4_multiple.json"):
        bfcl.load_category(str(tmp_path), "multiple")


def test_installed_package_data():
    pytest.importorskip("bfcl_eval")
    data = bfcl.find_bfcl_dir()
    sizes = {c: len(bfcl.load_category(data, c)) for c in bfcl.CATEGORIES}
    assert sizes["simple_python"] == 400 and sizes["live_simple"] == 258 and sizes["live_relevance"] == 16
    assert all(n > 0 for n in sizes.values())
    assert len(bfcl.load_category(data, "live_multiple", limit=5)) == 5


# ---------------------------------------------------------------------------------------------------------
# With bfcl-eval: the oracle property and the cross-check with the official checker

# Ground truths that no output can satisfy, under the official checker and ours alike.
UNSATISFIABLE = {
    "simple_java_36": "ArrayList<any> elements stay raw text (the official converter returns text for `any`), "
                      "so they never equal the answer's 42 and True",
    "simple_java_65": "ArrayList<any> elements stay raw text, so they never equal the answer's True",
    "live_simple_106-63-0": "a required parameter's list of acceptable values is empty",
    "live_simple_112-68-0": "a required parameter's list of acceptable values is empty",
    "live_multiple_507-149-4": "required parameter 'origin_airport' only accepts \"\" (omitted)",
    "live_multiple_862-181-3": "the answer passes 'journey_start_time', which Trains_1_FindTrains does not declare",
    "live_multiple_964-207-0": "the answer names parameter 'question'; the schema's required one is 'statement'",
}

# Cases where we knowingly differ from the official checker: none so far.
ALLOWED_DISAGREEMENTS: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def dataset():
    pytest.importorskip("bfcl_eval")
    data = bfcl.find_bfcl_dir()
    return {c: bfcl.load_category(data, c) for c in bfcl.CATEGORIES if bfcl.is_ast(c)}


def _accepted(values):
    return [v for v in values if v != ""]


def _plain(answer):
    """A dict answer {key: [acceptable values]} as the dict a model would pass: first values, optional keys out."""
    return {k: _accepted(vs)[0] for k, vs in answer.items() if "" not in vs and _accepted(vs)}


def _java_source(value, type_name, item=None, alt=False):
    """Java source for `value`; alt=True spells it another valid way (which may still fail, officially)."""
    if isinstance(value, str) and type_name not in ("String", "any", "char"):
        return value  # a variable name
    if type_name in ("byte", "short", "integer"):
        return str(value)
    if type_name == "long":
        return f"{value}{'l' if alt else 'L'}"
    if type_name == "float":
        return f"{float(value)!r}f"
    if type_name == "double":
        return repr(float(value))
    if type_name == "boolean":
        return "true" if value else "false"
    if type_name in ("String", "any", "char"):
        return str(value)
    if type_name == "Array":
        # Bare String elements: the official reader keeps the quotes of Array<String> elements, so only
        # bare ones match. The alternative spelling quotes them, as Java would.
        quote = '"%s"' if alt else "%s"
        items = [quote % x if item in ("String", "any", "char") else _java_source(x, item) for x in value]
        return "new Object[]{" + ", ".join(items) + "}"
    if type_name == "ArrayList":
        items = [f'"{x}"' if item in ("String", "char") else _java_literal(x) if item == "any"
                 else _java_source(x, item, alt) for x in value]
        if alt:
            return "new ArrayList<Object>() {{ " + " ".join(f"add({x});" for x in items) + " }}"
        return "new ArrayList<>(Arrays.asList(" + ", ".join(items) + "))" if items else "new ArrayList<>()"
    if type_name == "HashMap":
        puts = (" " if alt else "").join(f'put("{k}", {_java_literal(v)});' for k, v in _plain(value).items())
        return "new HashMap<>() {{" + puts + "}}" if alt else "new HashMap<String, Object>() {{ " + puts + " }}"
    raise AssertionError(f"no Java encoder for {type_name}")


def _java_literal(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _js_source(value, type_name, item=None, alt=False):
    """JavaScript source for `value`; alt=True spells it another valid way."""
    if isinstance(value, str) and type_name not in ("String", "any"):
        return value  # a variable name
    if type_name == "Boolean":
        return "true" if value else "false"
    if type_name == "String" and alt:
        return f'"{value}"'
    if type_name in ("String", "any", "integer", "float"):
        return str(value)
    if type_name == "array":
        items = ", ".join(_js_literal(v, alt) for v in value)
        return f"new Array({items})" if alt else f"[{items}]"
    if type_name == "dict":
        key = '"%s"' if alt else "%s"
        return "{" + ", ".join(f"{key % k}: {_js_literal(v, alt)}" for k, v in _plain(value).items()) + "}"
    raise AssertionError(f"no JavaScript encoder for {type_name}")


def _js_literal(value, alt=False):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if alt else f"'{value}'"
    if isinstance(value, list):
        return "[" + ", ".join(_js_literal(v, alt) for v in value) + "]"
    return str(value)


def _encode(value, schema, language, alt=False):
    """A ground-truth value as the model would pass it in `language`."""
    if schema is None:
        return value
    type_name, item = schema["type"], schema.get("items", {}).get("type")
    if language == "java":
        return _java_source(value, type_name, item, alt)
    if language == "javascript":
        return _js_source(value, type_name, item, alt)
    if isinstance(value, dict) and type_name == "dict":
        return _plain(value)
    if isinstance(value, list) and item == "dict":
        return [_plain(v) if isinstance(v, dict) else v for v in value]
    return value


def _doc(entry, name):
    return next((f for f in entry["function"] if f["name"] == name), None)


def oracle_calls(entry, language, fill_optional=False, alt=False):
    """The calls a perfect model makes: the first acceptable value of each parameter; optional ones left
    out unless the schema requires them (or fill_optional)."""
    calls = []
    for expected in entry["ground_truth"]:
        (name, params), = expected.items()
        doc = _doc(entry, name)
        props = doc["parameters"]["properties"] if doc else {}
        required = doc["parameters"].get("required", []) if doc else []
        args = {}
        for param, values in params.items():
            optional = "" in values and param not in required
            if not _accepted(values) or (optional and not fill_optional):
                continue
            args[param] = _encode(_accepted(values)[0], props.get(param), language, alt)
        calls.append({name: args})
    return calls


def test_oracle_scores_full_marks(dataset):
    failures = {}
    for category, entries in dataset.items():
        language = bfcl.category_language(category)
        for entry in entries:
            ok, reason = ast_check(entry["function"], oracle_calls(entry, language), entry["ground_truth"], category)
            if not ok:
                failures[entry["id"]] = reason
    assert set(failures) == set(UNSATISFIABLE), failures


# --- perturbations


def _case_punct(value):
    """Upper case, spaces as dashes, a trailing dot: invisible to BFCL's string normalisation."""
    if isinstance(value, str):
        return value.upper().replace(" ", "-") + "."
    if isinstance(value, list):
        return [_case_punct(v) for v in value]
    if isinstance(value, dict):
        return {k: _case_punct(v) for k, v in value.items()}
    return value


def _wrong_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "1"  # for Java/JS text too: "5" -> "51", "true" -> "true1"
    if isinstance(value, list):
        return list(reversed(value)) if len(value) > 1 and value != value[::-1] else value + ["zz"]
    if isinstance(value, dict):
        return dict(list(value.items())[1:]) if value else {"zz": 1}
    return "zz"


def _swap_type(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return bool(value) if value in (0, 1) else float(value)  # 1 == True: only the type tells them apart
    if isinstance(value, float):
        return int(value)  # an integral float comes back as an int, which BFCL promotes
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value[0] if value else {}
    if isinstance(value, dict):
        return [value]
    return 0


def _swap_item_types(value):
    """A list's numbers and booleans as another type each ([1.0, 3.0] -> [1, 3]): the item check must see it."""
    return [_swap_type(v) if isinstance(v, (bool, int, float)) else v for v in value] if isinstance(value, list) \
        else value


def _as_text(value):
    return value if isinstance(value, str) else json.dumps(value)


PARAM_PERTURBATIONS = {"drop": None, "case_punct": _case_punct, "wrong_value": _wrong_value,
                       "swap_type": _swap_type, "swap_item_types": _swap_item_types, "as_text": _as_text}


def perturbations(entry, language):
    """(kind, calls) pairs: the oracle itself, then call-level and per-parameter changes."""
    base = oracle_calls(entry, language)
    yield "oracle", base
    yield "fill_optional", oracle_calls(entry, language, fill_optional=True)
    if language != "python":
        yield "alt_syntax", oracle_calls(entry, language, fill_optional=True, alt=True)
    first_name = next(iter(base[0]))
    yield "wrong_name", [{first_name + "_v2": base[0][first_name]}] + base[1:]
    yield "extra_call", base + [copy.deepcopy(base[0])]
    yield "missing_call", base[:-1]
    if len(base) > 1:
        yield "reorder", base[::-1]
    yield "extra_param", [{first_name: {**base[0][first_name], "zz_extra": 1}}] + base[1:]
    for i, call in enumerate(base):
        (name, args), = call.items()
        for param in args:
            for kind, change in PARAM_PERTURBATIONS.items():
                if kind == "as_text" and language != "python":
                    continue
                changed = copy.deepcopy(base)
                if change is None:
                    del changed[i][name][param]
                else:
                    changed[i][name][param] = change(changed[i][name][param])
                if json.dumps(changed) != json.dumps(base):  # not ==, for which 1 == 1.0 == True
                    yield kind, changed


@pytest.fixture(scope="module")
def official_ast_checker():
    """The official checker, imported without its model registry (which pulls every SDK)."""
    pytest.importorskip("bfcl_eval")
    key = "bfcl_eval.constants.model_config"
    saved = sys.modules.get(key)
    stub = types.ModuleType(key)
    # Only read for names with a dot, to decide whether the model saw them with "_": Tool-N1 sees them as is.
    stub.MODEL_CONFIG_MAPPING = defaultdict(lambda: types.SimpleNamespace(underscore_to_dot=False))
    sys.modules[key] = stub
    try:
        from bfcl_eval.constants.enums import Language
        from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    finally:
        if saved is None:
            del sys.modules[key]
        else:
            sys.modules[key] = saved
    languages = {"python": Language.PYTHON, "java": Language.JAVA, "javascript": Language.JAVASCRIPT}

    def check(entry, calls, category):
        language = languages[bfcl.category_language(category)]
        return ast_checker(entry["function"], calls, entry["ground_truth"], language, category, "tooln1")["valid"]
    return check


def _verdict(check, *args):
    try:
        return bool(check(*args))
    except Exception as e:  # a crash is a verdict too; it must match ours
        return f"raised {type(e).__name__}"


def test_cross_check_with_official(dataset, official_ast_checker):
    stats = defaultdict(Counter)
    per_entry = Counter()
    disagreements = []
    for category, entries in dataset.items():
        language = bfcl.category_language(category)
        for entry in entries:
            for kind, calls in perturbations(entry, language):
                ours = _verdict(lambda: ast_check(entry["function"], calls, entry["ground_truth"], category)[0])
                theirs = _verdict(official_ast_checker, entry, calls, category)
                stats[category]["cases"] += 1
                per_entry[entry["id"]] += 1
                stats[category]["official_pass"] += theirs is True
                if ours == theirs or (entry["id"], kind) in ALLOWED_DISAGREEMENTS:
                    stats[category]["agree"] += 1
                else:
                    disagreements.append((entry["id"], kind, ours, theirs, calls))
    print("\ncategory                 cases   agree  official passes")
    for category, s in stats.items():
        print(f"{category:<24}{s['cases']:>6}  {s['agree']:>6}  {s['official_pass']:>6}")
    total = sum(s["cases"] for s in stats.values())
    print(f"{'all':<24}{total:>6}  {sum(s['agree'] for s in stats.values()):>6}")
    assert not disagreements, disagreements[:10]
    assert min(per_entry.values()) >= 3  # every entry: the oracle and at least two perturbations


# The readers of Java and JavaScript source text against the official converters, on tricky spellings.
JAVA_SOURCES = [
    ("5", "integer"), ("-5", "integer"), ("5L", "integer"), ("x", "integer"), ("5\n", "integer"),
    ("5L", "long"), ("5l", "long"), ("5", "long"), ("0.5f", "float"), ("1e3F", "float"), ("0.5", "float"),
    ("0.5", "double"), ("1.5e-3", "double"), ("1.", "double"), ("true", "boolean"), ("TRUE", "boolean"),
    ("'a'", "char"), ("abc", "String"), ('"abc"', "String"), ("12", "any"),
    ("new int[]{1, 2, 3}", "Array", "integer"), ("new int[] { }", "Array", "integer"),
    ('new String[]{"a", "b"}', "Array", "String"), ("new long[]{1L, 2}", "Array", "long"),
    ("arr", "Array", "integer"), ("new Object[]{1, x}", "Array", "any"),
    ('new ArrayList<>(Arrays.asList("a", "b"))', "ArrayList", "String"),
    ("new ArrayList<Integer>(Arrays.asList(1, 2))", "ArrayList", "integer"),
    ("new ArrayList<Long>() {{ add(1L); add(2L); }}", "ArrayList", "long"),
    ("new ArrayList<>()", "ArrayList", "integer"), ("list", "ArrayList", "String"),
    ('new ArrayList<>(Arrays.asList(1, "a", true))', "ArrayList", "any"),
    ('new HashMap<String, Object>() {{ put("a", 1); put("b", "x"); put("c", true); put("d", 2L); }}', "HashMap"),
    ("new HashMap<>()", "HashMap"), ("new HashMap<>() {{ }}", "HashMap"), ("map", "HashMap"),
    ('new HashMap<String, Double>() {{ put("a", 1.5f); put("b", 2.5); }}', "HashMap"),
]
JS_SOURCES = [
    ("3", "integer"), ("3.0", "integer"), ("-3", "integer"), ("3", "float"), ("3.5", "float"), ("1e3", "float"),
    ("5n", "Bigint"), ("5", "Bigint"), ("true", "Boolean"), ("yes", "Boolean"), ("'a'", "String"),
    ('"a"', "String"), ("a", "String"), ("'a\"", "String"), ("x", "any"),
    ("[1, 2]", "array", "integer"), ("['a', \"b\"]", "array", "String"), ("[]", "array", "float"),
    ("new Array(1.5, 2)", "array", "float"), ("[[1, 2], [3, 4]]", "array", "array"),
    ("[ [1, 'a'] ]", "array", "array"), ("list", "array", "String"), ("  [1, x]  ", "array", "integer"),
    ("{}", "dict"), ("{a: 1, b: 'x', c: true}", "dict"), ("{'a': [1, 2], b: {c: 1}}", "dict"),
    ("{a: '5'}", "dict"), ("obj", "dict"), (" {a: 1} ", "dict"), ("{a: [1, 2], b: 3}", "dict"),
]


def test_source_readers_match_official():
    pytest.importorskip("bfcl_eval")
    from bfcl_eval.eval_checker.ast_eval.type_convertor.java_type_converter import java_type_converter
    from bfcl_eval.eval_checker.ast_eval.type_convertor.js_type_converter import js_type_converter

    for ours, theirs, sources in [(bfcl._java_value, java_type_converter, JAVA_SOURCES),
                                  (bfcl._js_value, js_type_converter, JS_SOURCES)]:
        for text, *types_ in sources:
            mine, official = ours(text, *types_), theirs(text, *types_)
            assert (type(mine), mine) == (type(official), official), (text, types_)


def _tool_n1_decode(text):
    """Tool-N1's BFCL handler (eval/bfcl_handler.py), restated: the first block's JSON (None when there is none or
    it is bad JSON), then decode_ast's [{call["name"]: call["arguments"]}]; any exception is a decode failure."""
    import re
    m = re.search(r"<tool_call>(.*?)</tool_call>", text, flags=re.DOTALL)
    try:
        payload = json.loads(m.group(1).strip()) if m else None
    except json.JSONDecodeError:
        payload = None
    return [{c["name"]: c["arguments"]} for c in payload]  # raises on None, a bare object's keys, ...


RELEVANCE_OUTPUTS = [
    '[{"name": "f", "arguments": {"x": 1}}]', '[{"name": null, "arguments": {}}]', '[{"name": 3, "arguments": {}}]',
    '[{"name": true, "arguments": {"a": 1}}]', '[{"name": ["f"], "arguments": {}}]', '[{"name": {}, "arguments": {}}]',
    '[{"name": "f", "arguments": "{\\"x\\": 1}"}]', '[{"name": null, "arguments": null}]', '[{"name": "f"}]',
    '[{"arguments": {}}]', '[{"name": "f", "arguments": {}}, {"name": null, "arguments": {}}]',
    '[{"name": null, "arguments": {}}, {"name": "g", "arguments": 1}]', '[]', '[{}]', '{"name": "f", "arguments": {}}',
    '"f"', "oops", '[{"name": "f", "arguments": {}, "extra": 1}]', '[{"name": NaN, "arguments": {}}]']


@pytest.mark.parametrize("block", RELEVANCE_OUTPUTS, ids=range(len(RELEVANCE_OUTPUTS)))
def test_relevance_verdicts_match_the_official_path(block):
    """(Ir)relevance entries pass or fail on whether the output holds a call, as bfcl-eval decides it: the handler's
    decode_ast, then is_empty_output. A null or numeric name is a call there ({None: {...}}), so it fails an
    irrelevance entry (it passed here when every non-string name was a decode failure)."""
    pytest.importorskip("bfcl_eval")
    from bfcl_eval.utils import is_empty_output
    text = f"<think>t</think><tool_call>{block}</tool_call>"
    try:
        official_calls = not is_empty_output(_tool_n1_decode(text))
    except Exception:  # noqa: BLE001 (any decode error is "no call" officially)
        official_calls = False
    ours = decode_tool_calls(text, any_name=True)
    assert ast_check([], ours, None, "irrelevance")[0] == (not official_calls), ours
    assert ast_check([], ours, None, "live_relevance")[0] == official_calls, ours


def test_decoder_is_linear_on_unclosed_tags():
    """The regex retried every open tag (100k unclosed tags: minutes); a 1 MB hostile completion now decodes in
    well under a second, with the regex's answers on ordinary text."""
    import re
    import time
    from tooln1_min.bfcl import decode_tool_calls
    hostile = "<tool_call>" * 100_000 + "x" * 10
    t = time.perf_counter()
    assert decode_tool_calls(hostile) is None and decode_tool_calls(hostile + "</tool_call>") is None
    assert time.perf_counter() - t < 1.0
    regex = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
    call = '[{"name": "f", "arguments": {"a": 1}}]'
    for text in (f"<tool_call>{call}</tool_call>", f"a<tool_call>\n{call}\n</tool_call><tool_call>[]</tool_call>",
                 f"<tool_call><tool_call>{call}</tool_call>", f"<tool_call>{call}", f"</tool_call><tool_call>{call}"
                 "</tool_call>"):
        m = regex.search(text)
        want = None
        if m:
            try:
                payload = json.loads(m.group(1))
                want = [{c["name"]: c["arguments"]} for c in payload] if payload else None
            except ValueError:
                want = None
        assert decode_tool_calls(text) == want, text


# ---- found by mutating bfcl.py (each survived the tests above) ----

def test_a_list_of_dicts_must_have_every_item():
    xs = {"type": "array", "items": {"type": "dict"}}
    doc = {"name": "f", "parameters": {"type": "dict", "properties": {"xs": xs}, "required": ["xs"]}}
    answer = [{"f": {"xs": [[{"a": [1]}, {"a": [2]}]]}}]
    assert not ast_check([doc], [{"f": {"xs": [{"a": 1}]}}], answer, "simple_python")[0]  # a prefix is not it
    assert ast_check([doc], [{"f": {"xs": [{"a": 1}, {"a": 2}]}}], answer, "simple_python")[0]


def test_a_decoded_call_names_one_function():
    doc = {"name": "f", "parameters": {"type": "dict", "properties": {}, "required": []}}
    assert not ast_check([doc], [{"f": {}, "g": {}}], [{"f": {}}], "simple_python")[0]
