"""BFCL single-turn evaluation: data files, Tool-N1's output decoder, the AST checker and the scores.

The Berkeley Function Calling Leaderboard (BFCL) ships its data in the PyPI package `bfcl-eval`
(`pip install --no-deps bfcl-eval`): question files `data/BFCL_v4_<category>.json` and ground truths
`data/possible_answer/BFCL_v4_<category>.json`, both JSON lines.

The checker reproduces the rules of the official checker (bfcl_eval/eval_checker/ast_eval/ast_checker.py,
bfcl-eval 2026.3.23), quirks included, so that our numbers are comparable with published ones; the tests
compare the two on every ground truth plus thousands of perturbations. Where a rule looks odd, the comment
says that it is the official behaviour.

A model call is in BFCL's decoded form: {function_name: {param: value}}. A ground-truth call is
{function_name: {param: [acceptable values]}}, where "" among the values marks the parameter optional.
"""

import copy
import importlib.util
import json
import os
import re

from .data import read_jsonl

# ---------------------------------------------------------------------------------------------------------
# Categories

NON_LIVE_SIMPLE = ["simple_python", "simple_java", "simple_javascript"]
NON_LIVE_AST = NON_LIVE_SIMPLE + ["multiple", "parallel", "parallel_multiple"]
LIVE_AST = ["live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"]
IRRELEVANCE = ["irrelevance", "live_irrelevance"]  # pass when the model calls nothing
RELEVANCE = ["live_relevance"]  # pass when the model calls anything
CATEGORIES = NON_LIVE_AST + ["irrelevance"] + LIVE_AST + ["live_irrelevance", "live_relevance"]

FILE_PREFIX = "BFCL_v4_"  # the data version in the installed package's file names
INSTALL_HINT = "install it with `pip install --no-deps bfcl-eval` or pass the data directory"


def category_kind(category: str) -> str:
    """'ast' (checked call by call), 'irrelevance' or 'relevance'."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL category {category!r}; expected one of {CATEGORIES}")
    if category in IRRELEVANCE:
        return "irrelevance"
    if category in RELEVANCE:
        return "relevance"
    return "ast"


def is_ast(category: str) -> bool:
    return category_kind(category) == "ast"


def category_language(category: str) -> str:
    """The language whose type rules the checker applies: only the two non-live simple sets differ."""
    category_kind(category)  # validates the name
    return {"simple_java": "java", "simple_javascript": "javascript"}.get(category, "python")


# ---------------------------------------------------------------------------------------------------------
# Data files


def find_bfcl_dir(user_dir: str | None = None) -> str:
    """The directory holding BFCL_v4_<category>.json: `user_dir` if given, else the installed package's data."""
    if user_dir is not None:
        probe = os.path.join(user_dir, f"{FILE_PREFIX}simple_python.json")
        if not os.path.isfile(probe):
            raise FileNotFoundError(f"BFCL data not found in {user_dir!r}: missing {probe}; "
                                    "point it at bfcl_eval/data of the bfcl-eval package, or " + INSTALL_HINT)
        return user_dir
    spec = importlib.util.find_spec("bfcl_eval")  # locate without importing: the package pulls many deps
    if spec is None or spec.origin is None:
        raise FileNotFoundError("BFCL data not found: the package bfcl-eval is not installed; " + INSTALL_HINT)
    data_dir = os.path.join(os.path.dirname(spec.origin), "data")
    if not os.path.isfile(os.path.join(data_dir, f"{FILE_PREFIX}simple_python.json")):
        raise FileNotFoundError(f"bfcl-eval is installed but {data_dir} has no {FILE_PREFIX}*.json files "
                                "(a different data version?); " + INSTALL_HINT)
    return data_dir


def _rows(path: str) -> list:
    return [row for _, row in read_jsonl(path)]


def load_category(bfcl_dir: str, category: str, limit: int | None = None) -> list[dict]:
    """Entries {id, question, function[, ground_truth]}; ground_truth comes from possible_answer/ when it exists."""
    category_kind(category)
    path = os.path.join(bfcl_dir, f"{FILE_PREFIX}{category}.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BFCL question file missing: {path}")
    entries = []
    for i, r in enumerate(_rows(path)):
        missing = [k for k in ("id", "question", "function") if not isinstance(r, dict) or k not in r]
        if missing:
            raise ValueError(f"{path}: entry {i + 1} has no {', '.join(map(repr, missing))}")
        entries.append({"id": r["id"], "question": r["question"], "function": r["function"]})
    if limit is not None:
        entries = entries[:limit]
    answer_path = os.path.join(bfcl_dir, "possible_answer", f"{FILE_PREFIX}{category}.json")
    if os.path.isfile(answer_path):
        answers = {r["id"]: r["ground_truth"] for r in _rows(answer_path)}
        for entry in entries:
            if entry["id"] not in answers:
                raise ValueError(f"{answer_path} has no ground truth for {entry['id']!r}")
            entry["ground_truth"] = answers[entry["id"]]
    elif is_ast(category):
        raise FileNotFoundError(f"BFCL ground-truth file missing for an AST category: {answer_path}")
    return entries


# ---------------------------------------------------------------------------------------------------------
# Decoding Tool-N1's output

_CALL_OPEN, _CALL_CLOSE = "<tool_call>", "</tool_call>"


def _first_block(text: str) -> str | None:
    """What re.search(r"<tool_call>(.*?)</tool_call>", DOTALL) would capture, in linear time: the regex retries
    every later open tag when the first has no close after it (quadratic on hostile text), but then none has."""
    start = text.find(_CALL_OPEN)
    if start == -1:
        return None
    end = text.find(_CALL_CLOSE, start + len(_CALL_OPEN))
    return None if end == -1 else text[start + len(_CALL_OPEN):end]


def decode_tool_calls(text: str, any_name: bool = False) -> list[dict] | None:
    """The first <tool_call>...</tool_call> block as BFCL's decoded form [{name: arguments}], or None.

    As in Tool-N1's BFCL handler, the block (stripped of any whitespace, as str.strip does) holds a JSON list of
    {"name", "arguments"}; a bare object is a decode failure there (its handler iterates the object's keys), so it
    is here. None means a decode failure: no block, bad JSON, not a list, an empty list or a malformed element.
    any_name (BFCL's scoring): a name that is not a string but can be a dict key (null, a number, a boolean) is kept,
    as that handler keeps it ({None: {...}}: a call, which fails an irrelevance entry); else it is a failure.
    """
    block = _first_block(text) if isinstance(text, str) else None
    if block is None:
        return None
    try:
        payload = json.loads(block.strip())
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; absurd nesting recurses
        return None
    if not isinstance(payload, list) or not payload:
        return None
    calls = []
    for item in payload:
        if not isinstance(item, dict):
            return None
        name, arguments = item.get("name"), item.get("arguments")
        if any_name:  # the handler's dict key: a missing name, or a list or object (no dict key), fails there too
            name_ok = "name" in item and not isinstance(name, (list, dict))
        else:
            name_ok = isinstance(name, str)
        if not name_ok or not isinstance(arguments, dict):
            return None
        calls.append({name: arguments})
    return calls


# ---------------------------------------------------------------------------------------------------------
# Types: the Python type a value must have once read, per language (the official mappings)

_PYTHON_TYPES = {"string": str, "integer": int, "float": float, "boolean": bool,
                 "array": list, "tuple": list, "dict": dict, "any": str}
_JAVA_TYPES = {"byte": int, "short": int, "integer": int, "long": int, "float": float, "double": float,
               "boolean": bool, "char": str, "String": str, "any": str, "Array": list, "ArrayList": list,
               "HashMap": dict, "Hashtable": dict, "Set": set, "Queue": list, "Stack": list}
_JS_TYPES = {"String": str, "integer": int, "float": float, "Bigint": int, "Boolean": bool,
             "dict": dict, "array": list, "any": str}
_TYPES = {"python": _PYTHON_TYPES, "java": _JAVA_TYPES, "javascript": _JS_TYPES}
# Only these types have their items checked (one level deep, as in the official checker).
_LIST_TYPES = {"python": ("array", "tuple"), "java": ("Array", "ArrayList"), "javascript": ("array",)}


def _schema_types(param: str, schema: dict, language: str) -> tuple[str, type, str | None, type | None]:
    """(doc type, expected Python type, item doc type, expected item type) of one parameter's schema."""
    table = _TYPES[language]
    type_name = schema.get("type")
    if type_name not in table:
        raise ValueError(f"parameter {param!r}: type {type_name!r} is not a BFCL {language} type {sorted(table)}")
    if type_name not in _LIST_TYPES[language]:
        return type_name, table[type_name], None, None
    item_name = schema.get("items", {}).get("type")
    if item_name not in table:
        raise ValueError(f"parameter {param!r}: {type_name} items of type {item_name!r}; "
                         f"expected one of {sorted(table)}")
    return type_name, table[type_name], item_name, table[item_name]


_LANGUAGE_NAME = {"python": "Python 3", "java": "Java 8 SDK", "javascript": "JavaScript"}


def language_hints(functions: list[dict], category: str) -> list[dict]:
    """A copy of the docs as BFCL's harness shows them to every prompting model (bfcl-eval 2026.3.23).

    Java and JavaScript arguments are checked as source text, so their parameters are declared as strings and
    the real type moves into the description; without this a model writes 5 where the checker wants "5".
    """
    language = category_language(category)
    docs = copy.deepcopy(functions)
    for doc in docs:
        doc["description"] = doc.get("description", "") + \
            f" Note that the provided function is in {_LANGUAGE_NAME[language]} syntax."
        if language == "python":
            continue
        lang = "Java" if language == "java" else "JavaScript"
        for param in doc["parameters"]["properties"].values():
            kind = param["type"]
            param["description"] = param.get("description", "") + (
                f" This parameter can be of any type of {lang} object in string representation." if kind == "any"
                else f" This is {lang} {kind} type parameter in string representation.")
            if kind in _LIST_TYPES[language]:
                items = param.pop("items")
                param["description"] += f" The list elements are of type {items['type']}; they are not in " \
                                        "string representation."
            if language == "javascript" and kind == "dict" and "properties" in param:
                param["description"] += " The dictionary entries have the following schema; they are not in " \
                                        "string representation. " + json.dumps(param.pop("properties"))
            param["type"] = "string"
    return docs


# ---------------------------------------------------------------------------------------------------------
# Java and JavaScript values arrive as source text; these read them the way the official converters do.
# Text that does not parse stays text, which the checker then treats as a variable name.


def _literal(text: str, pattern: str) -> str | None:
    """The literal if `text` is one, else None. The official patterns end in `$`, so one trailing newline passes."""
    core = text.removesuffix("\n")
    return core if re.fullmatch(pattern, core) else None


def _read_literal(text: str, pattern: str, convert):
    core = _literal(text, pattern)
    return text if core is None else convert(core)


def _read_number(text: str):
    """An untyped literal's number (int first, then float), or the text."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


_JAVA_SCALARS = {  # type -> (literal pattern, conversion)
    "byte": (r"-?\d+", int), "short": (r"-?\d+", int), "integer": (r"-?\d+", int),
    "long": (r"-?\d+[lL]", lambda s: int(s[:-1])),
    "float": (r"-?\d+(\.\d+)?([eE][+-]?\d+)?[fF]", lambda s: float(s[:-1])),
    "double": (r"-?\d+(\.\d+)?([eE][+-]?\d+)?", float),
}


def _java_value(text: str, type_name: str, item_type: str | None = None):
    if type_name in _JAVA_SCALARS:
        return _read_literal(text, *_JAVA_SCALARS[type_name])
    if type_name == "boolean":
        return {"true": True, "false": False}.get(text, text)
    if type_name in ("String", "any", "char"):
        return text  # the official char pattern can never match, so chars stay text as well
    if type_name == "Array":
        return _java_array(text, item_type)
    if type_name == "ArrayList":
        return _java_arraylist(text, item_type)
    if type_name == "HashMap":
        return _java_hashmap(text)
    raise ValueError(f"Java type {type_name!r} is not supported by the BFCL checker")


def _java_untyped(text: str):
    """A literal inside a collection whose element type is unknown (HashMap values)."""
    if text in ("true", "false"):
        return text == "true"
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    for pattern, convert in (_JAVA_SCALARS["long"], _JAVA_SCALARS["float"]):
        core = _literal(text, pattern)
        if core is not None:
            return convert(core)
    return _read_number(text)


def _java_array(text: str, item_type: str | None):
    match = re.search(r"new\s+\w+\[\]\s*\{(.*?)\}", text)
    if match is None:
        return text
    parts = [p.strip() for p in match.group(1).split(",") if p.strip()]
    # Official quirk: elements are read as their own type, so String elements keep their quotes.
    return [_java_value(p, item_type) if item_type else _java_untyped(p) for p in parts]


def _java_arraylist(text: str, item_type: str | None):
    # Three spellings, tried in this order: Arrays.asList(...), double-brace add(...)s, empty.
    as_list = re.search(r"new\s+ArrayList<\w*>\(Arrays\.asList\((.+?)\)\)", text)
    if as_list:
        parts = [p.strip() for p in as_list.group(1).split(",")]
    else:
        double_brace = re.search(r"new\s+ArrayList<\w*>\(\)\s*\{\{\s*(.+?)\s*\}\}", text, re.DOTALL)
        if double_brace:
            parts = [p.strip() for p in re.findall(r"add\((.+?)\)", double_brace.group(1))]
        elif re.search(r"new\s+ArrayList<\w*>\(\)", text):
            return []
        else:
            return text
    if item_type in ("String", "char"):
        return [p[1:-1] for p in parts]  # unlike Array, ArrayList drops the quotes (unchecked, as officially)
    return [_java_value(p, item_type) if item_type else _java_untyped(p) for p in parts]


def _java_hashmap(text: str):
    body = re.search(r"new\s+HashMap<.*?>\s*\(\)\s*\{\s*\{?\s*(.*?)\s*\}?\s*\}", text, re.DOTALL)
    if body:
        puts = re.findall(r'put\("(.*?)",\s*(.*?)\)', body.group(1))
        return {key: _java_untyped(value.strip()) for key, value in puts}
    return {} if re.search(r"new\s+HashMap<.*?>\s*\(\)", text) else text


_JS_SCALARS = {
    "integer": (r"-?\d+", int),
    "float": (r"-?\d+(\.\d+)?", float),
    "Bigint": (r"-?\d+n", lambda s: int(s[:-1])),
}


def _js_value(text: str, type_name: str, item_type: str | None = None):
    if type_name in _JS_SCALARS:
        return _read_literal(text, *_JS_SCALARS[type_name])
    if type_name == "String":
        return _unquote(text)
    if type_name == "Boolean":
        return {"true": True, "false": False}.get(text, text)
    if type_name == "any":
        return text
    if type_name == "array":
        return _js_array(text, item_type)
    if type_name == "dict":
        return _js_object(text)
    raise ValueError(f"JavaScript type {type_name!r} is not supported by the BFCL checker")


def _is_quoted(text: str) -> bool:
    return any(text.startswith(q) and text.endswith(q) for q in "\"'")


def _unquote(text: str) -> str:
    return text[1:-1] if _is_quoted(text) else text


def _js_untyped(text: str):
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    return text[1:-1] if _is_quoted(text) else _read_number(text)


_JS_ARRAY_2D = re.compile(r"\[\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\]|\bnew\s+Array\(\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\)")
_JS_ARRAY = re.compile(r"\[(.*?)\]|\bnew\s+Array\((.*?)\)")


def _js_array(text: str, item_type: str | None):
    code = text.strip()  # official: text that does not parse comes back stripped
    nested = _JS_ARRAY_2D.match(code)
    if nested:
        rows = [row.strip() for row in re.findall(r"\[(.*?)\]", nested.group(0))]
        rows[0] = rows[0].removeprefix("[")  # the first row's match starts at the outer bracket
        return [[_js_untyped(e) for e in row.split(",")] for row in rows]
    flat = _JS_ARRAY.match(code)
    if flat is None:
        return code
    body = (flat.group(1) if flat.group(1) is not None else flat.group(2)).strip()
    parts = [p.strip() for p in body.split(",")] if body else []
    if not item_type:
        return [_js_untyped(p) for p in parts]
    # Official: a quoted element of an array-of-arrays is read as an array of Strings.
    return [_js_value(p, item_type, "String" if p.startswith(("'", '"')) else None) for p in parts]


def _js_object(text: str):
    code = text.strip()
    if code == "{}":
        return {}
    match = re.match(r"\{(.*?)\}", code)  # non-greedy: nested objects are cut at their first "}", as officially
    if match is None:
        return code
    obj = {}
    for key, raw in re.findall(r"([^:]+):\s*(.*?)(?:,\s*(?=[^,]+:)|$)", match.group(1)):
        key, raw = key.strip().strip("'\""), raw.strip()
        if raw.startswith("[") and raw.endswith("]"):
            obj[key] = _js_array(raw, None)
        elif raw.startswith("{") and raw.endswith("}"):
            obj[key] = _js_object(raw)
        else:
            obj[key] = _js_untyped(raw.strip("'\""))  # official: quotes go first, so '5' reads as the number 5
    return obj


# ---------------------------------------------------------------------------------------------------------
# Comparing one value with its acceptable answers


def standardize(text: str) -> str:
    """BFCL's string normal form: no spaces or ,./-_*^ punctuation, lower case, ' read as "."""
    return re.sub(r"[ ,./\-_*^]", "", text).lower().replace("'", '"')


def _std(value):
    return standardize(value) if type(value) is str else value


def _answer_type(answers) -> type | None:
    """The type of the first non-optional answer; None when only "" is accepted."""
    for answer in answers:
        if answer != "":
            return type(answer)
    return None


def _items_typed(value: list, answers: list, item_type: type) -> bool:
    """One level of item type checking; passes if the items fit any one answer."""
    for answer in answers:
        if type(answer) is not list:
            return True  # official: a non-list answer (the optional marker "") imposes no item type
        answer_item_type = _answer_type(answer)
        if all(type(v) is item_type or type(v) is answer_item_type for v in value):
            return True
    return False


def _type_check(value, answers, expected: type, item_type: type | None) -> tuple[bool, bool]:
    """(type ok, compare as a variable).

    BFCL writes variable names as strings in the answers (e.g. a list parameter answered "my_list"). When the
    answers' type differs from the schema's, the value is compared exactly, without string normalisation.
    """
    answer_type = _answer_type(answers)
    if type(value) is expected:
        if item_type is None or _items_typed(value, answers, item_type):
            return True, answer_type is not None and answer_type is not expected
        return False, False  # official: a failed item check stays failed ([1, 3] for float items), variable or not
    if answer_type is not None and type(value) is answer_type:
        return True, True
    return False, False


def _list_match(value: list, answers: list) -> bool:
    # Order-sensitive; strings normalised one level deep. Iterating the optional marker "" gives [],
    # so an empty list matches an optional parameter, as officially.
    candidates = [[_std(x) for x in a] for a in answers if isinstance(a, (list, str))]
    return [_std(v) for v in value] in candidates


def _dict_fits(value: dict, answer: dict) -> bool:
    """Each key of `value` is in the answer with an accepted value; each missing key is optional."""
    for key, v in value.items():
        if key not in answer or _std(v) not in [_std(a) for a in answer[key]]:
            return False
    return all(key in value or "" in accepted for key, accepted in answer.items())


def _dict_match(value, answers: list) -> bool:
    return isinstance(value, dict) and any(isinstance(a, dict) and _dict_fits(value, a) for a in answers)


def _dict_list_match(value: list, answers: list) -> bool:
    """A list of dicts, order-sensitive, each dict against the answer's dict at the same position."""
    for answer in answers:
        if isinstance(answer, (list, str)) and len(answer) == len(value):
            if all(_dict_match(v, [a]) for v, a in zip(value, answer)):
                return True
    return False


def _read_source(value, type_name: str, item_name: str | None, language: str):
    """Python values pass through (with the int->float and tuple->list allowances); Java/JS text is read."""
    if language == "python":
        if type_name == "float" and type(value) is int:
            return float(value)  # Python's int->float promotion
        return list(value) if type_name == "tuple" and type(value) is tuple else value
    read = _java_value if language == "java" else _js_value
    return read(value, type_name, item_name)


def _check_param(param: str, value, schema: dict, answers: list, language: str) -> tuple[bool, str]:
    type_name, expected, item_name, item_type = _schema_types(param, schema, language)
    if language != "python" and type(value) is not str:
        return False, f"parameter {param!r}: {language} arguments must be source text, got {type(value).__name__}"
    value = _read_source(value, type_name, item_name, language)
    typed, as_variable = _type_check(value, answers, expected, item_type)
    if not typed:
        return False, f"parameter {param!r}: expected {type_name}, got {type(value).__name__} {value!r}"
    if as_variable:
        ok = value in answers
    elif expected is dict:
        ok = _dict_match(value, answers)
    elif expected is list and item_type is dict:
        ok = _dict_list_match(value, answers)
    elif expected is str:
        ok = standardize(value) in [standardize(a) for a in answers if type(a) is str]
    elif expected is list:
        ok = _list_match(value, answers)
    else:
        ok = value in answers
    return ok, "ok" if ok else f"parameter {param!r}: {value!r} is not one of {answers!r}"


# ---------------------------------------------------------------------------------------------------------
# Checking calls


def _check_call(doc: dict, call: dict, answer: dict, language: str) -> tuple[bool, str]:
    """One model call {name: args} against one ground-truth call, using the function doc `doc`."""
    name = doc["name"]
    if name not in call:
        return False, f"expected a call to {name!r}, got {next(iter(call))!r}"
    args = call[name]
    accepted = next(iter(answer.values()))  # the doc's name is what counts, as officially
    properties = doc["parameters"]["properties"]
    for param in doc["parameters"].get("required", []):
        if param not in args:
            return False, f"{name}: missing required parameter {param!r}"
    for param, value in args.items():
        if param not in properties or param not in accepted:
            return False, f"{name}: unexpected parameter {param!r}"
        ok, reason = _check_param(param, value, properties[param], accepted[param], language)
        if not ok:
            return False, f"{name}: {reason}"
    for param, values in accepted.items():
        if param not in args and "" not in values:
            return False, f"{name}: missing parameter {param!r} (the answer does not mark it optional)"
    return True, "ok"


def _doc_for(functions: list[dict], answer: dict) -> dict:
    name = next(iter(answer))
    for doc in functions:
        if doc["name"] == name:
            return doc
    raise ValueError(f"ground truth calls {name!r}, which is not among the functions {[f['name'] for f in functions]}")


def _check_any_order(functions, calls, answers, language) -> tuple[bool, str]:
    """Parallel categories: each expected call, in turn, takes the first unused model call that matches.

    Greedy like the official checker, not a maximum matching: with two interchangeable calls it can miss.
    """
    unused = list(range(len(calls)))
    for i, answer in enumerate(answers):
        doc = _doc_for(functions, answer)
        reasons = []
        for j in unused:
            ok, reason = _check_call(doc, calls[j], answer, language)
            if ok:
                unused.remove(j)
                break
            reasons.append(reason)
        else:
            return False, f"no model call matches expected call {i} ({doc['name']}): {'; '.join(reasons)}"
    return True, "ok"


def _is_decoded_form(calls) -> bool:
    """BFCL's format check: a list of {name: {param: value}} with exactly one name per element."""
    return isinstance(calls, list) and all(
        isinstance(c, dict) and len(c) == 1 and isinstance(next(iter(c.values())), dict) for c in calls)


def ast_check(functions: list[dict], model_calls: list[dict] | None, possible_answer: list[dict] | None,
              category: str) -> tuple[bool, str]:
    """Score one BFCL entry: (passed, reason). `model_calls` is None on a decode failure."""
    kind = category_kind(category)
    calls_something = _is_decoded_form(model_calls) and len(model_calls) > 0
    if kind == "irrelevance":
        return (not calls_something), ("no call" if not calls_something else "called a function")
    if kind == "relevance":
        return calls_something, ("called a function" if calls_something else "no call")
    if not possible_answer:
        raise ValueError(f"category {category!r} is checked against a ground truth; got {possible_answer!r}")
    if model_calls is None:
        return False, "decode failure"
    if not _is_decoded_form(model_calls):
        return False, "model calls are not in the decoded form [{name: {param: value}}]"
    expected_count = len(possible_answer) if "parallel" in category or "multiple" in category else 1
    if len(model_calls) != expected_count:
        return False, f"expected {expected_count} call(s), got {len(model_calls)}"
    language = category_language(category)
    if "parallel" in category:
        return _check_any_order(functions, model_calls, possible_answer, language)
    # Official: simple categories check the first function doc, multiple ones the doc named by the answer;
    # both look only at the first expected call.
    doc = functions[0] if "multiple" not in category else _doc_for(functions, possible_answer[0])
    return _check_call(doc, model_calls[0], possible_answer[0], language)


# ---------------------------------------------------------------------------------------------------------
# Scores


def _mean(values):
    return None if any(v is None for v in values) else sum(values) / len(values)


def summarize(results: dict[str, list[bool]]) -> dict:
    """Per-category accuracy and counts, and the aggregates of the leaderboard and of Tool-N1's tables.

    non_live = mean(mean(simple_python, simple_java, simple_javascript), multiple, parallel, parallel_multiple)
    live     = the 4 live AST categories pooled (count-weighted): Tool-N1's rows, and bfcl-eval 2026.3.23's
               own Live overall
    live_6   = live plus live_irrelevance and live_relevance, pooled: the 6-category Live column
    overall  = mean(non_live, live)
    An aggregate is None when one of its categories is missing.
    """
    for category in results:
        category_kind(category)
    per = {}
    for category, passed in results.items():
        correct = sum(bool(p) for p in passed)
        per[category] = {"accuracy": correct / len(passed) if passed else None,
                         "correct": correct, "total": len(passed)}

    def accuracy(category):
        return per[category]["accuracy"] if category in per else None

    def pooled(categories):
        if any(c not in per or not per[c]["total"] for c in categories):
            return None
        return sum(per[c]["correct"] for c in categories) / sum(per[c]["total"] for c in categories)

    non_live_simple = _mean([accuracy(c) for c in NON_LIVE_SIMPLE])
    non_live = _mean([non_live_simple] + [accuracy(c) for c in ("multiple", "parallel", "parallel_multiple")])
    live = pooled(LIVE_AST)
    return {"categories": per, "non_live_simple": non_live_simple, "non_live": non_live, "live": live,
            "live_6": pooled(LIVE_AST + ["live_irrelevance", "live_relevance"]),
            "overall": _mean([non_live, live]), "irrelevance": accuracy("irrelevance")}


def format_table(summary: dict) -> str:
    """The summary as a plain-text table, categories in CATEGORIES order, accuracies in percent."""
    def pct(x):
        return "     -" if x is None else f"{100 * x:6.2f}"

    lines = [f"{'category':<24}{'acc %':>7}  {'correct/total':>13}"]
    for category in CATEGORIES:
        row = summary["categories"].get(category)
        if row is not None:
            lines.append(f"{category:<24}{pct(row['accuracy']):>7}  {row['correct']:>6}/{row['total']}")
    lines.append("-" * len(lines[0]))
    for key, label in [("non_live_simple", "non-live simple (mean)"), ("non_live", "Non-live"),
                       ("live", "Live (4 AST, pooled)"), ("live_6", "Live (6, pooled)"),
                       ("overall", "Overall"), ("irrelevance", "Irrelevance")]:
        lines.append(f"{label:<24}{pct(summary[key]):>7}")
    return "\n".join(lines)
