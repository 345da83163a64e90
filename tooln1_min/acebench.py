"""ACEBench, Normal "Atom + Single-turn" (paper Table 2): Tool-N1's prompt, and the verdict of ACEBench's own
normal checker (its model_eval/checker.py behind eval_main.py's normal_single_turn_eval), quirks included, so
that scores compare with its leaderboard.

Data (users clone the public ACEBench repository; nothing is downloaded): `data_all/data_<lang>/data_<category>.json`
and `.../possible_answer/data_<category>.json`, JSON Lines, matched by `id`. 500 English records.

The verdict, rule by rule (written from reading the official code; the surprising ones marked *):
- * The official pipeline deletes every whitespace character from the raw output before decoding, string values
  included, so the decoded calls lose theirs too (names, keys, strings at any depth). Ground truths keep theirs.
- The model must make as many calls as the ground truth has entries, with the same multiset of names once the
  ground truth's `_1`, `_2` suffixes are stripped. * Matching is not one-to-one: a ground-truth call passes when
  any model call of its name passes the function check. * Its description is the first function whose name is a
  substring of the unsuffixed key.
- Function check: both parameter sets empty passes, one empty fails; * a ground truth equal to the schema's
  `properties` passes; required parameters must be present; every model parameter must be in the schema and in
  the ground truth (ground-truth parameters the model omits are not checked).
- Types: the schema type maps to a Python type (* `number` -> int, * `enum` -> a type nothing has); an int passes
  for `float`; the strings "true"/"false" become booleans; * a mismatched type still passes when it is the ground
  truth's type or equals it (`1 == True`), and * whenever the ground truth's own type differs from the schema's,
  no value check follows. * Typed lists (array/tuple/list(...)/object/objectArray) with an empty ground-truth list
  fail.
- Values: * strings pass when the standardised ground truth is a substring of the standardised output (spaces and
  `,./-_*^` dropped, lowercased, `'` -> `"`); lists must be equal element by element after standardising
  strings; dicts need the same number of keys and each leaf passes when `str(gt) in str(value)`, nested dicts
  recursively; lists of dicts pair up in order; * int/float/bool/enum values are never compared.
- * Where the official code raises (an `objectArray` parameter with a non-empty value, a ground-truth entry with
  no matching description, a schema without `required`), its run aborts; here the answer is wrong, with the reason.
A record whose ground truth is a list of alternatives passes when any one does.
"""
import json
import os
import re

CATEGORIES = ("normal_atom_bool", "normal_atom_enum", "normal_atom_list", "normal_atom_number",
              "normal_atom_object_deep", "normal_atom_object_short", "normal_single_turn_single_function",
              "normal_single_turn_parallel_function")
ATOM, SINGLE_TURN = CATEGORIES[:6], CATEGORIES[6:]
_TYPES = {"string": str, "integer": int, "float": float, "boolean": bool, "array": list, "tuple": list, "dict": dict,
          "any": str, "list": list, "object": dict, "objectArray": list, "list(string)": list, "list(enum)": list,
          "int": int, "number": int, "enum": type("Enum", (), {})}  # enum: no value has this type
_NESTED = ("array", "tuple", "list(string)", "list(enum)", "object", "objectArray")
_SUFFIX = re.compile(r"_\d+$")
_STANDARDISE = re.compile(r"[ ,./\-_*^]")


class _Wrong(Exception):
    """A failed check, with its reason."""


def ace_check(functions, model_calls, ground_truth, category) -> tuple[bool, str]:
    """(ok, reason) as ACEBench's normal checker decides. model_calls: decoded calls [{name: {param: value}}]
    (None: decode failure; []: no call: both wrong); ground_truth: the possible-answer record's `ground_truth` (a
    dict, or a list of alternative dicts)."""
    if model_calls is None:
        return False, "no decodable <tool_call> block"
    if not model_calls:
        return False, "no call"
    try:
        calls = [{_squeeze(name): _squeeze(params)} for call in model_calls for name, params in call.items()]
    except RecursionError:  # absurdly nested arguments (json decodes deeper than this recurses): officially, output
        return False, "arguments nested too deeply to read"  # it can't parse, one wrong answer
    reasons = []
    for answer in ground_truth if isinstance(ground_truth, list) else [ground_truth]:
        try:
            _check_calls(functions, calls, answer, category)
            return True, ""
        except _Wrong as e:
            reasons.append(str(e))
        except Exception as e:  # noqa: BLE001 - where the official checker raises, its run aborts: wrong
            return False, f"the official checker raises here ({type(e).__name__}: {str(e)[:200]}): counted wrong"
    return False, reasons[0] if reasons else "no ground truth"


def _squeeze(x):
    """What deleting every whitespace character from the raw output does to a decoded value."""
    if isinstance(x, str):
        return "".join(x.split())
    if isinstance(x, dict):
        return {_squeeze(k): _squeeze(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_squeeze(v) for v in x]
    return x


def _check_calls(functions, calls, answer: dict, category):
    if len(calls) != len(answer):
        raise _Wrong(f"{len(calls)} calls for {len(answer)} expected")
    expected = [(key, _SUFFIX.sub("", key), params) for key, params in answer.items()]
    made = sorted(next(iter(c)) for c in calls)
    if made != sorted(name for _, name, _ in expected):
        raise _Wrong(f"called {made}, expected {sorted(name for _, name, _ in expected)}")
    for key, name, params in expected:
        doc = next((f for f in functions if f["name"] in key), None) if isinstance(functions, list) else functions
        reason = "no call passes"
        for call in calls:
            if next(iter(call)) != name:
                continue
            try:
                _check_function(doc, call, params, category)
                break
            except _Wrong as e:
                reason = str(e)
        else:
            raise _Wrong(f"{name}: {reason}")


def _check_function(doc, call: dict, expected: dict, category):
    given = next(iter(call.values()))
    schema = doc["parameters"]
    if given == {} or schema == {}:
        if given == {} and schema == {}:
            return
        raise _Wrong("parameters missing on one side")
    if expected == schema["properties"]:
        return
    if expected == {}:
        raise _Wrong("the ground truth has no parameters")
    if doc["name"] not in call:
        raise _Wrong(f"wrong function name {next(iter(call))!r}")
    properties = schema["properties"]
    for param in schema["required"]:
        if param not in given:
            raise _Wrong(f"missing required parameter {param!r}")
    for param, value in given.items():
        if param not in properties or param not in expected:
            raise _Wrong(f"unexpected parameter {param!r}")
        kind = properties[param]["type"]
        want = _TYPES[kind]
        inner = None
        if kind in _NESTED:
            item = properties[param].get("items", {}).get("type") if isinstance(properties[param].get("items"),
                                                                                 dict) else None
            if item is None:
                item = "string" if "string" in kind else "enum" if "enum" in kind else "dict"
            inner = _TYPES[item]
        if kind == "float" and type(value) is int:
            value = float(value)
        ok, variable = _type_ok(value, expected[param], want, inner)
        if not ok:
            raise _Wrong(f"{param!r}: wrong type {type(value).__name__} for {kind}")
        if variable:
            continue  # typed by the ground truth rather than the schema: no value check
        if want is dict:
            _check_dict(param, value, expected[param])
        elif want is list and inner is dict:
            if kind == "objectArray" and len(value) == len(expected[param]) and value:
                raise TypeError("objectArray item check")  # the official code calls dict_checker wrongly here
            if len(value) != len(expected[param]):
                raise _Wrong(f"{param!r}: {len(value)} items, expected {len(expected[param])}")
            for v, e in zip(value, expected[param]):
                _check_dict(param, v, e)
        elif want is str:
            if category_is_agent(category):
                if _std(value) != _std(expected[param]):
                    raise _Wrong(f"{param!r}: {value!r} is not {expected[param]!r}")
            elif _std(expected[param]) not in _std(value):
                raise _Wrong(f"{param!r}: {expected[param]!r} not in {value!r}")
        elif want is list:
            if [_std(v) if type(v) is str else v for v in value] != \
                    [_std(v) if type(v) is str else v for v in expected[param]]:
                raise _Wrong(f"{param!r}: {value!r} is not {expected[param]!r}")


def category_is_agent(category: str) -> bool:
    return "agent" in category


def _gt_type(expected):
    return None if expected == "" else type(expected)  # "" marks an optional parameter


def _type_ok(value, expected, want, inner) -> tuple[bool, bool]:
    """The official type check -> (ok, typed by the ground truth: no value check follows). The schema's type
    (items one level down, against ground-truth items that are lists), else the ground truth's type or value."""
    gt_type = _gt_type(expected)
    variable = gt_type is not None and gt_type is not want
    if value == "true":
        value = True
    elif value == "false":
        value = False
    if type(value) is want:
        if inner is None:
            return True, variable
        for gt_item in expected:  # passes at the first ground-truth item that is not a list, or whose ...
            if type(gt_item) is not list or all(_type_ok(v, gt_item, inner, None)[0] for v in value):
                return True, variable  # ... items all type-check
        return False, True  # no item passed (an empty ground-truth list too): the official check fails
    return gt_type is not None and (type(value) is gt_type or expected == value), True


def _std(s: str) -> str:
    return _STANDARDISE.sub("", s).lower().replace("'", '"')


def _check_dict(param, value, expected: dict):
    if not isinstance(value, dict):
        raise _Wrong(f"{param!r}: {value!r} is not an object")
    if len(value) != len(list(expected.keys())):  # .keys(): a non-dict ground truth raises, as officially
        raise _Wrong(f"{param!r}: {len(value)} keys, expected {len(expected)}")
    for key, v in value.items():
        if v == "true":
            v = True
        elif v == "false":
            v = False
        if key not in expected:
            raise _Wrong(f"{param!r}: unexpected key {key!r}")
        if isinstance(expected[key], dict):
            _check_dict(param, v, expected[key])
            continue
        want = _std(expected[key]) if type(expected[key]) is str else expected[key]
        got = _std(v) if type(v) is str else v
        if str(want) not in str(got):
            raise _Wrong(f"{param!r}.{key}: {expected[key]!r} not in {v!r}")


# ---- data and prompt ----

def load_acebench(root: str, lang: str = "en", categories=CATEGORIES) -> list[dict]:
    """[{category, id, record, ground_truth}] from an ACEBench checkout, in file order."""
    base = os.path.join(root, "data_all", f"data_{lang}")
    if not os.path.isdir(base):
        raise SystemExit(f"--acebench-dir {root!r}: no data_all/data_{lang} folder (clone the ACEBench repository)")
    out = []
    for category in categories:
        if category not in CATEGORIES:
            raise SystemExit(f"unknown ACEBench category {category!r}; expected some of {list(CATEGORIES)}")
        records = _jsonl(os.path.join(base, f"data_{category}.json"))
        answers = {a["id"]: a["ground_truth"] for a in _jsonl(os.path.join(base, "possible_answer",
                                                                          f"data_{category}.json"))}
        for r in records:
            if r["id"] not in answers:
                raise SystemExit(f"ACEBench {category}: {r['id']} has no possible answer")
            out.append({"category": category, "id": r["id"], "record": r, "ground_truth": answers[r["id"]]})
    return out


def _jsonl(path):
    if not os.path.isfile(path):
        raise SystemExit(f"ACEBench file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def acebench_messages(record: dict) -> list[dict]:
    """Tool-N1's evaluation prompt: its system template over the record's functions (distractors keep their own
    {name, description, arguments, ...} shape), the record's time sentence, then the dialogue: `user:` turns as
    user messages, `system:` turns (the assistant's earlier replies) as assistant messages."""
    from .data import system_prompt
    system = system_prompt(record["function"], allow_empty_call=True)
    if record.get("time"):
        system += "\n\n" + record["time"]
    turns = []
    for line in record["question"].split("\n"):
        m = re.match(r"(user|system):\s?(.*)", line)
        if m:
            turns.append({"role": "user" if m.group(1) == "user" else "assistant", "content": m.group(2)})
        elif turns and line.strip():
            turns[-1]["content"] += "\n" + line
    return [{"role": "system", "content": system}] + turns


def ground_truth_calls(ground_truth) -> list[dict]:
    """The (first) ground truth as decoded calls, suffixes stripped: what a perfect model would answer."""
    answer = ground_truth[0] if isinstance(ground_truth, list) else ground_truth
    return [{_SUFFIX.sub("", k): v} for k, v in answer.items()]


def acebench_report(outputs: list[dict]) -> dict:
    """Per-category accuracy, Atom (mean of its 6 categories), Single-turn (mean of 2), their mean, the plain
    accuracy over all records; each beside the ceiling (the ground truth through the same checker). As in the
    official summary, a category's accuracy is rounded to 3 decimals and a group's mean is taken of those rounded
    figures, then rounded again (so a printed 0.1% digit is the official one); "all records" is not rounded."""
    def rate(key, cats):
        rows = [o for o in outputs if o["category"] in cats]
        return sum(o[key] for o in rows) / len(rows) if rows else None

    per = {c: {"accuracy": round(rate("ok", [c]), 3), "ceiling": round(rate("ceiling_ok", [c]), 3),
               "total": sum(o["category"] == c for o in outputs)} for c in CATEGORIES
           if any(o["category"] == c for o in outputs)}

    def mean(cats, key):
        vals = [per[c][key] for c in cats if c in per]
        return round(sum(vals) / len(vals), 3) if vals else None
    summary = {"categories": per}
    for name, cats in (("atom", ATOM), ("single_turn", SINGLE_TURN)):
        summary[name] = {"accuracy": mean(cats, "accuracy"), "ceiling": mean(cats, "ceiling")}
    parts = [summary[k] for k in ("atom", "single_turn") if summary[k]["accuracy"] is not None]
    summary["normal"] = {k: round(sum(p[k] for p in parts) / len(parts), 3) if parts else None
                         for k in ("accuracy", "ceiling")}
    summary["overall"] = {"accuracy": rate("ok", CATEGORIES), "ceiling": rate("ceiling_ok", CATEGORIES),
                          "total": len(outputs)}
    return summary
