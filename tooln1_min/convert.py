"""Converters to the record schema (data.py): xLAM function-calling-60k, ToolACE, already-unified JSONL (their
command line: `python -m tooln1_min.data`).

Converters never stop halfway through a file: a bad row is skipped and counted by reason in the returned `stats`,
which the CLI prints in the shape of the paper's Table 1 (raw -> kept, single- vs multi-turn).
"""
import ast
import copy
import json
import keyword
import re

from .data import ROLES, validate_record

# ----------------------------------------------------------------------------------------------------------------
# Converter plumbing: per-reason drop counts instead of crashes


class RowError(ValueError):
    """A row that cannot become a record; `reason` is the short key it is counted under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def _new_stats() -> dict:
    return {"raw": 0, "kept": 0, "single_turn": 0, "multi_turn": 0, "dropped": {}, "examples": {}}


def _drop(stats: dict, reason: str, where: str):
    stats["dropped"][reason] = stats["dropped"].get(reason, 0) + 1
    stats["examples"].setdefault(reason, where)  # the first offender, so the reader can go and look


def _keep(stats: dict, records: list, record: dict):
    validate_record(record)  # a converter bug must not write records that load_records would refuse
    records.append(record)
    stats["kept"] += 1
    single = len(record["messages"]) == 1 and record["messages"][0]["role"] == "user"
    stats["single_turn" if single else "multi_turn"] += 1


def format_stats(name: str, stats: dict) -> str:
    lines = [f"{name}: {stats['raw']} raw rows -> {stats['kept']} records "
             f"({stats['single_turn']} single-turn, {stats['multi_turn']} multi-turn)"]
    for reason, count in sorted(stats["dropped"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  dropped {count:6d}  {reason}  (first: {stats['examples'][reason]})")
    return "\n".join(lines)


def _read_rows(path) -> list:
    """A JSON array file (as xLAM and ToolACE ship) or JSONL; whole-file problems raise, naming the file."""
    with open(path, encoding="utf-8-sig") as f:  # a leading byte-order mark is not part of the JSON
        text = f.read()
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except RecursionError:  # one absurdly nested row: read the array row by row, that row counted as bad
            return [_parse_row(element, f"{path} element {i}") for i, element in enumerate(_array_elements(text))]
        except ValueError as e:
            raise ValueError(f"{path}: not a valid JSON array ({e})") from None
    # split at "\n" only: str.splitlines also cuts at U+2028, U+0085 and the like, which JSON strings hold raw
    return [_parse_row(line, f"{path}:{lineno}") for lineno, line in enumerate(text.split("\n"), 1) if line.strip()]


def _parse_row(text: str, where: str):
    try:
        return json.loads(text)
    except RecursionError:
        return RowError("JSON nested too deeply", where)  # counted by the converter
    except ValueError:
        return RowError("invalid JSON line", where)


def _array_elements(text: str):
    """The source text of each top-level element of a JSON array, found by one scan (strings and escapes
    respected), so each can be parsed, and fail, alone."""
    depth, start, in_string, escaped = 0, None, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if depth == 1 and start is None and not ch.isspace() and ch not in ",]":
            start = i  # an element begins
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:  # the array's own end
                if start is not None:
                    yield text[start:i]
                return
        elif ch == "," and depth == 1 and start is not None:
            yield text[start:i]
            start = None


def _reason(e: Exception, default: str) -> str:
    return "JSON nested too deeply" if isinstance(e, RecursionError) else getattr(e, "reason", default)


def _json_field(row: dict, key: str):
    # xLAM stores tools/answers as JSON strings; accept already-parsed values too.
    value = row.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError) as e:
            raise RowError(f"bad {key} JSON", str(e)[:200]) from None
    if value is None:
        raise RowError(f"missing {key}")
    return value


# ----------------------------------------------------------------------------------------------------------------
# xLAM function-calling-60k: rows {id, query, tools, answers}, flat parameter dicts with Python-ish types

_PY_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "dict": "object",
             "list": "array", "any": "string"}


def _xlam_type(type_str: str) -> dict:
    base = type_str.strip()
    inner = re.fullmatch(r"(?:List|list|Sequence|Tuple|tuple)\[(.*)\]", base)
    if inner:
        return {"type": "array", "items": _xlam_type(_top_level(inner.group(1))[0])}
    optional = re.fullmatch(r"Optional\[(.*)\]", base)
    if optional:
        return _xlam_type(optional.group(1))
    if re.fullmatch(r"(?:Dict|dict)\[.*\]", base):
        return {"type": "object"}
    return {"type": _PY_TYPES.get(base.lower(), base)}  # unknown names pass through so nothing is lost


def _top_level(type_str: str) -> list[str]:
    """"Dict[str, Any], int" -> ["Dict[str, Any]", "int"]: commas inside brackets do not split."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(type_str):
        depth += (c == "[") - (c == "]")
        if c == "," and depth == 0:
            parts.append(type_str[start:i])
            start = i + 1
    return parts + [type_str[start:]]


def xlam_tool_to_schema(tool: dict) -> dict:
    """{"name","description","parameters":{p: {"type": "str, optional", ...}}} -> JSON-schema-like function."""
    properties, required = {}, []
    for pname, spec in (tool.get("parameters") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        type_str = str(spec.get("type", "str")).strip()
        optional = type_str.endswith("optional") or type_str.startswith("Optional[")
        prop = _xlam_type(type_str.rsplit(",", 1)[0] if type_str.endswith("optional") else type_str)
        prop["description"] = spec.get("description", "")
        if "default" in spec:
            prop["default"] = spec["default"]
        properties[pname] = prop
        if not optional:
            required.append(pname)
    return {"name": tool["name"], "description": tool.get("description", ""),
            "parameters": {"type": "object", "properties": properties, "required": required}}


def _schema_type_to_xlam(prop: dict) -> str:
    kind = prop.get("type", "string")
    if kind == "array":
        return f"List[{_schema_type_to_xlam(prop.get('items', {}))}]"
    return {v: k for k, v in _PY_TYPES.items() if k != "any"}.get(kind, str(kind))


def schema_tool_to_xlam(tool: dict) -> dict:
    """The inverse of xlam_tool_to_schema, used to write realistic xLAM fixtures; enums go into the text."""
    params = tool.get("parameters", {})
    required = set(params.get("required", []))
    flat = {}
    for pname, prop in params.get("properties", {}).items():
        desc = prop.get("description", "")
        if "enum" in prop:
            desc += f" One of: {', '.join(map(str, prop['enum']))}."
        flat[pname] = {"description": desc,
                       "type": _schema_type_to_xlam(prop) + ("" if pname in required else ", optional")}
        if "default" in prop:
            flat[pname]["default"] = prop["default"]
    return {"name": tool["name"], "description": tool.get("description", ""), "parameters": flat}


def _xlam_record(row, index: int, schema: bool) -> dict:
    if isinstance(row, RowError):
        raise row
    if not isinstance(row, dict):
        raise RowError("row is not an object")
    query = row.get("query")
    if not isinstance(query, str) or not query.strip():
        raise RowError("missing query")
    tools, answers = _json_field(row, "tools"), _json_field(row, "answers")
    if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools):
        raise RowError("bad tools", "expected a list of {name, ...}")
    if not isinstance(answers, list) or not all(isinstance(a, dict) and isinstance(a.get("name"), str)
                                                and isinstance(a.get("arguments"), dict) for a in answers):
        raise RowError("bad answers", "expected a list of {name, arguments}")
    names = {t["name"] for t in tools}
    if any(a["name"] not in names for a in answers):
        raise RowError("answer names a tool not in the list")
    return {"id": f"xlam-{row.get('id', index)}", "source": "xlam",
            "tools": [xlam_tool_to_schema(t) for t in tools] if schema else tools,
            "messages": [{"role": "user", "content": query}],
            "answer": [{"name": a["name"], "arguments": a["arguments"]} for a in answers]}


def convert_xlam(path, schema: bool = False) -> tuple[list[dict], dict]:
    """xLAM rows -> records: one user turn each, answer = the parsed answers.

    Tools are kept as given by default, as Tool-N1 showed them to the model; `schema=True` rewrites them as
    JSON-schema-like functions ("str, optional" -> {"type": "string"}, not required).
    """
    records, stats = [], _new_stats()
    for index, row in enumerate(_read_rows(path)):
        stats["raw"] += 1
        try:
            _keep(stats, records, _xlam_record(row, index, schema))
        except (ValueError, RecursionError) as e:  # RowError, or a record the validator refuses
            _drop(stats, _reason(e, "invalid record"), f"row {index}: {str(e)[:200]}")
    return records, stats


# ----------------------------------------------------------------------------------------------------------------
# ToolACE: rows {system, conversations: [{from, value}]}, tools inside the system text, calls as [f(a=1)]

# The sentence that introduces the tool list; [^.\n]* reaches back to its start so the prefix ends cleanly.
_TOOLACE_INTRO = re.compile(r"[^.\n]*functions in JSON format that you can invoke\s*[:.]?\s*")
_JSON_NAMES = {"true": True, "false": False, "null": None}


def parse_toolace_system(system: str) -> tuple[str | None, list[dict]]:
    """(prefix before the tool list or None, the tool list) from a ToolACE system text."""
    match = _TOOLACE_INTRO.search(system)
    if not match:
        raise RowError("no tool list in system text")
    try:
        tools, _ = json.JSONDecoder().raw_decode(system, match.end())
    except (ValueError, RecursionError) as e:
        raise RowError("bad tool list JSON", str(e)[:200]) from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools):
        raise RowError("bad tool list", "expected a JSON list of {name, ...}")
    return system[:match.start()].strip() or None, tools


def _dotted_name(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return _dotted_name(node.value) + "." + node.attr
    raise ValueError(f"call target {ast.unparse(node)[:60]!r} is not a (dotted) name")


def _literal(node, where: str):
    """A JSON-compatible value from a literal expression (Python or JSON spelling of true/false/null)."""
    if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (str, int, float, bool)):
        return node.value
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and isinstance(
            node.operand, ast.Constant) and type(node.operand.value) in (int, float):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, where) for e in node.elts]
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values):
            key = None if k is None else _literal(k, where)
            if not isinstance(key, str):
                raise ValueError(f"{where}: dict keys must be strings, got {ast.unparse(k) if k else '**'}")
            out[key] = _literal(v, where)
        return out
    raise ValueError(f"{where}: {ast.unparse(node)[:60]!r} is not a literal value")


def _is_python_name(name: str) -> bool:
    return all(part.isidentifier() and not keyword.iskeyword(part) for part in name.split("."))


def parse_bracket_calls(text: str, tool_names=()) -> list[dict]:
    """`[Func(a=1, b="x"), math.hypot(x=3)]` -> [{"name", "arguments"}], via Python's ast (no eval).

    Names that are not Python names ("Get Movie Details", "get-weather") parse when listed in `tool_names`: each
    `name(` is swapped for a placeholder identifier first. Raises ValueError saying what is wrong.
    """
    source, aliases = text.strip(), {}
    odd_names = sorted((n for n in tool_names if not _is_python_name(n)), key=len, reverse=True)
    for i, name in enumerate(odd_names):
        if name + "(" in source:
            alias = f"__tool_{i}__"
            source, aliases[alias] = source.replace(name + "(", alias + "("), name
    try:
        body = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise ValueError(f"not a call list ({type(e).__name__}: {getattr(e, 'msg', e)}): {text[:80]!r}") from None
    calls = []
    for node in body.elts if isinstance(body, (ast.List, ast.Tuple)) else [body]:
        if not isinstance(node, ast.Call):
            raise ValueError(f"expected name(key=value, ...), got {ast.unparse(node)[:60]!r}")
        name = _dotted_name(node.func)
        name = aliases.get(name, name)
        if node.args or any(kw.arg is None for kw in node.keywords):
            raise ValueError(f"{name}: only keyword arguments are supported, got {ast.unparse(node)[:80]!r}")
        arguments = {kw.arg: _literal(kw.value, name) for kw in node.keywords}
        calls.append({"name": name, "arguments": _unalias(arguments, aliases) if aliases else arguments})
    return calls


def _unalias(value, aliases: dict):
    """Undo the placeholder swap inside string values ("call Get Weather(x)" was rewritten too)."""
    if isinstance(value, str):
        for alias, name in aliases.items():
            value = value.replace(alias + "(", name + "(")
        return value
    if isinstance(value, list):
        return [_unalias(v, aliases) for v in value]
    if isinstance(value, dict):
        return {_unalias(k, aliases): _unalias(v, aliases) for k, v in value.items()}
    return value


def _py_literal(value) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_py_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_py_literal(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)  # str, int, float: JSON spelling is valid Python


def format_bracket_calls(calls: list[dict]) -> str:
    """The inverse of parse_bracket_calls, as ToolACE writes calls."""
    return "[" + ", ".join(
        f"{c['name']}(" + ", ".join(f"{k}={_py_literal(v)}" for k, v in c["arguments"].items()) + ")"
        for c in calls) + "]"


def _looks_like_call(text: str) -> bool:
    text = text.strip()
    return text.startswith("[") and text.endswith("]") and "(" in text


def _toolace_row(row, index: int, records: list, stats: dict):
    """Append one record per assistant call turn; the turns before it are its context."""
    if isinstance(row, RowError):
        raise row
    if not isinstance(row, dict) or not isinstance(row.get("system"), str) or not isinstance(
            row.get("conversations"), list):
        raise RowError("row lacks system text or conversations")
    prefix, tools = parse_toolace_system(row["system"])
    names = {t["name"] for t in tools}
    context, targets = [], 0
    for turn_index, turn in enumerate(row["conversations"]):
        where = f"row {index} turn {turn_index}"
        role, value = (turn.get("from"), turn.get("value")) if isinstance(turn, dict) else (None, None)
        if role not in ROLES or not isinstance(value, str):
            _drop(stats, "bad turn (rest of dialogue skipped)", f"{where}: {str(turn)[:80]}")
            return
        if role != "assistant" or not _looks_like_call(value):
            context.append({"role": role, "content": value})
            continue
        targets += 1
        try:
            calls = parse_bracket_calls(value, names)
        except ValueError as e:
            _drop(stats, "unparseable call", f"{where}: {e}")
            context.append({"role": role, "content": value})
            continue
        unknown = [c["name"] for c in calls if c["name"] not in names]
        if unknown:
            _drop(stats, "call names a tool not in the list", f"{where}: {unknown}")
        elif not context or context[-1]["role"] == "assistant":
            _drop(stats, "call not preceded by a user or tool turn", where)
        else:
            record = {"id": f"toolace-{index}-{turn_index}", "source": "toolace", "system": prefix,
                      "tools": tools, "messages": copy.deepcopy(context), "answer": calls}
            try:
                _keep(stats, records, record)
            except ValueError as e:
                _drop(stats, "invalid record", f"{where}: {e}")
        context.append({"role": "assistant", "content": "", "tool_calls": calls})
    if targets == 0:
        _drop(stats, "dialogue without tool calls", f"row {index}")


def convert_toolace(path) -> tuple[list[dict], dict]:
    """ToolACE rows -> one record per assistant call turn (so `kept` can exceed `raw`).

    The system text before the tool-list sentence is kept as "system"; the text after the list (ToolACE's own
    bracket-format instructions) is dropped, as the Tool-N1 prompt asks for JSON calls instead. Tools are kept as
    given. Plain-text assistant turns stay in the context but are not targets. Calls are read as Python literals
    (parse_bracket_calls): true / false / null are JSON's values, a quoted string is whole. Tool-N1's own script
    splits the call text itself and keeps "true" / "null" as strings and cuts a string at a ", " inside its
    parentheses, so a few of its answers differ from these.
    """
    records, stats = [], _new_stats()
    for index, row in enumerate(_read_rows(path)):
        stats["raw"] += 1
        try:
            _toolace_row(row, index, records, stats)
        except (ValueError, RecursionError) as e:  # RowError for the row as a whole; anything else is counted too
            _drop(stats, _reason(e, "invalid row"), f"row {index}: {str(e)[:200]}")
    return records, stats


# ----------------------------------------------------------------------------------------------------------------
# Already-unified JSONL


def convert_jsonl(path) -> tuple[list[dict], dict]:
    """Import unified records, skipping (and counting) lines that are not valid JSON or break the schema."""
    with open(path, encoding="utf-8") as f:
        if f.read(4096).lstrip().startswith("["):
            raise ValueError(f"{path}: expected JSONL (one record per line), found a JSON array")
    records, stats = [], _new_stats()
    for row in _read_rows(path):
        stats["raw"] += 1
        if isinstance(row, RowError):
            _drop(stats, row.reason, row.detail)
            continue
        try:
            _keep(stats, records, row)
        except (ValueError, RecursionError) as e:
            _drop(stats, _reason(e, "invalid record"), str(e)[:200])
    return records, stats
