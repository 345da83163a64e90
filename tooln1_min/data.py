"""Tool-calling records: one schema, converters from xLAM and ToolACE, Tool-N1 prompts, a synthetic task.

A record (one JSON object per line on disk):

    {"id": str, "source": str,
     "tools": [function dicts, {"name": ..., "description": ..., "parameters": ...}],
     "messages": [context turns: {"role": "user" | "tool", "content": str}
                  or {"role": "assistant", "content": str, "tool_calls": [{"name", "arguments"}] (optional)}],
     "answer": [{"name": str, "arguments": dict}],   # [] means "no function applies"
     "system": str | None,            # optional: the dataset's own system prefix (default: DEFAULT_SYSTEM)
     "allow_empty_call": bool}        # optional: the prompt says <tool_call>[]</tool_call> is a valid reply

The context ends with a user or tool turn; the model's reply to it is the `answer`. Converters never stop halfway
through a file: a bad row is skipped and counted by reason in the returned `stats`, which the CLI prints in the
shape of the paper's Table 1 (raw -> kept, single- vs multi-turn):

    python -m tooln1_min.data xlam xlam_function_calling_60k.json xlam.jsonl
    python -m tooln1_min.data toolace data.json toolace.jsonl
    python -m tooln1_min.data jsonl mine.jsonl checked.jsonl
    python -m tooln1_min.data synthetic synth.jsonl --n 2000 --seed 0
    python -m tooln1_min.data split all.jsonl --test-frac 0.1 --seed 0
"""
import argparse
import ast
import copy
import json
import keyword
import os
import random
import re

ROLES = ("user", "assistant", "tool")

# ----------------------------------------------------------------------------------------------------------------
# Records: validation and JSONL in/out


def _check_call(call, where: str):
    if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not isinstance(
            call.get("arguments"), dict):
        raise ValueError(f"{where}: expected {{'name': str, 'arguments': dict}}, got {str(call)[:80]}")


def validate_record(record) -> None:
    """Raise ValueError naming the record and the first field that breaks the schema above."""
    if not isinstance(record, dict):
        raise ValueError(f"record must be a JSON object, got {type(record).__name__}")
    rid = record.get("id", "<no id>")
    for key in ("id", "source", "tools", "messages", "answer"):
        if key not in record:
            raise ValueError(f"record {rid}: missing key {key!r}")
    if not isinstance(rid, (str, int)) or not isinstance(record["source"], str):
        raise ValueError(f"record {rid}: 'id' must be a string or int and 'source' a string")
    tools = record["tools"]
    if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools):
        raise ValueError(f"record {rid}: 'tools' must be a list of function dicts with a string 'name'")
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"record {rid}: 'messages' must be a non-empty list of context turns")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"record {rid}: messages[{i}] must be {{'role': one of {ROLES}, 'content': str}}")
        for j, call in enumerate(m.get("tool_calls") or []):
            _check_call(call, f"record {rid}: messages[{i}].tool_calls[{j}]")
    if messages[-1]["role"] not in ("user", "tool"):
        raise ValueError(f"record {rid}: the last context turn must be user or tool, not {messages[-1]['role']}")
    if not isinstance(record["answer"], list):
        raise ValueError(f"record {rid}: 'answer' must be a list of calls")
    names = {t["name"] for t in tools}
    for j, call in enumerate(record["answer"]):
        _check_call(call, f"record {rid}: answer[{j}]")
        if call["name"] not in names:
            raise ValueError(f"record {rid}: answer[{j}] calls {call['name']!r}, which is not in 'tools'")
    if record.get("system") is not None and not isinstance(record["system"], str):
        raise ValueError(f"record {rid}: 'system' must be a string or null")
    if not isinstance(record.get("allow_empty_call", False), bool):
        raise ValueError(f"record {rid}: 'allow_empty_call' must be true or false")


def read_jsonl(path):
    """Yield (line number, parsed row) for each non-blank line; a malformed line raises ValueError naming the file
    and line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e})") from None
            yield lineno, row


def load_records(path) -> list[dict]:
    """Read a JSONL file of records; the first malformed line raises ValueError naming the file and line."""
    records = []
    for lineno, record in read_jsonl(path):
        try:
            validate_record(record)
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: {e}") from None
        records.append(record)
    return records


def save_records(records, path) -> None:
    if os.path.dirname(os.fspath(path)):
        os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def shuffle_records(records, seed: int) -> list:
    """A shuffled copy of any list; the same seed gives the same order (a private Random, never the global one)."""
    out = list(records)
    random.Random(seed).shuffle(out)
    return out


def _split_group(record):
    """Records that must land on the same side of a split: the turns of one ToolACE dialogue (they share an id
    prefix), and records with the same prompt (messages and tools), so a test prompt is never a training prompt."""
    rid = record.get("id")
    if record.get("source") == "toolace" and isinstance(rid, str) and rid.count("-") >= 2:
        return rid.rsplit("-", 1)[0]
    return json.dumps([record.get("messages"), record.get("tools")], sort_keys=True)


def split_records(records, test_frac: float = 0.1, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Deterministic (train, test) split (Tool-N1 used 90/10); each part keeps the input order. The turns of one
    ToolACE dialogue and the copies of one prompt stay together, so the test split never sees a conversation or a
    prompt the policy trained on."""
    if not 0.0 <= test_frac <= 1.0:
        raise ValueError(f"test_frac must be in [0, 1], got {test_frac}")
    groups: dict = {}
    for i, r in enumerate(records):
        groups.setdefault(_split_group(r), []).append(i)
    members = list(groups.values())
    order = list(range(len(members)))
    random.Random(seed).shuffle(order)
    want, test_ids = round(len(records) * test_frac), set()
    for g in order:
        if len(test_ids) >= want:
            break
        test_ids.update(members[g])
    train = [r for i, r in enumerate(records) if i not in test_ids]
    test = [r for i, r in enumerate(records) if i in test_ids]
    return train, test


# ----------------------------------------------------------------------------------------------------------------
# Prompts: the Tool-N1 thinking template (paper Fig. 2 / Appendix E)

DEFAULT_SYSTEM = (
    "You are an expert in composing functions. You are given a question and a set of possible functions. "
    "Based on the question, you will need to make one or more function/tool calls to achieve the purpose. "
    "If none of the functions can be used, point it out and refuse to answer. "
    "If the given question lacks the parameters required by the function, also point it out.")

# The instruction sentences are the paper's prompt content; the layout around them is ours.
TOOLS_INTRO = "Here is a list of functions in JSON format that you can invoke:"
MUST_STEPS = "\n".join([
    "In each action step, you MUST:",
    "1. Think about the reasoning process in the mind and enclose your reasoning within <think> </think> XML tags.",
    "2. Then, provide a json object with function names and arguments within <tool_call></tool_call> XML tags. "
    'i.e., <tool_call>[{"name": <function-name>, "arguments": <args-json-object>}, '
    '{"name": <function-name2>, "arguments": <args-json-object2>}, ...]</tool_call>',
    "3. Make sure both the reasoning and the tool call steps are included together in one single reply.",
    "A complete reply example is: <think>To address the query, I need to send the email to Bob and then buy the "
    "banana through walmart. </think> <tool_call> [{\"name\": \"email\", \"arguments\": {\"receiver\": \"Bob\", "
    "\"content\": \"I will bug banana through walmart\"}}, {\"name\": \"walmart\", \"arguments\": "
    "{\"input\": \"banana\"}}]</tool_call>",
    "Please make sure the type of the arguments is correct."])
EMPTY_CALL_NOTE = "If none of the functions can be used, reply with an empty list: <tool_call>[]</tool_call>."


def system_prompt(tools: list[dict], prefix: str | None = None, allow_empty_call: bool = False) -> str:
    """The system turn: preamble, a "# Tool" section with one JSON line per tool, the MUST steps."""
    lines = [json.dumps({"type": "function", "function": tool}, ensure_ascii=False) for tool in tools]
    preamble = DEFAULT_SYSTEM if prefix is None else prefix.strip()
    parts = [preamble, "# Tool", TOOLS_INTRO + "\n<tools>\n" + "\n".join(lines) + "\n</tools>", MUST_STEPS]
    if allow_empty_call:
        parts.append(EMPTY_CALL_NOTE)
    return "\n\n".join(p for p in parts if p)


def _reply_text(calls: list[dict], think: str = "") -> str:
    return f"<think>{think}</think>\n<tool_call>\n{json.dumps(calls)}\n</tool_call>"


def prompt_messages(record: dict) -> list[dict]:
    """System turn + context turns, ready for a chat template.

    Earlier assistant calls are written as text in the reply format the model is asked to produce (empty think +
    tool_call block), so the context shows the model its own format and needs no template tool_call support.
    """
    system = system_prompt(record["tools"], record.get("system"), record.get("allow_empty_call", False))
    messages = [{"role": "system", "content": system}]
    for m in record["messages"]:
        content = m["content"]
        if m["role"] == "assistant" and m.get("tool_calls"):
            content = (content + "\n" if content else "") + _reply_text(m["tool_calls"])
        messages.append({"role": m["role"], "content": content})
    return messages


def render_prompt(tokenizer, record: dict) -> str:
    """The prompt text, ending with the assistant header the completion follows."""
    return tokenizer.apply_chat_template(prompt_messages(record), add_generation_prompt=True)


def render_target(record: dict, think: str = "") -> str:
    """SFT target in the paper's no-reason format; scores 1.0 under reward.tool_call_reward."""
    return _reply_text(record["answer"], think)


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
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except ValueError as e:
            raise ValueError(f"{path}: not a valid JSON array ({e})") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                rows.append(RowError("invalid JSON line", f"{path}:{lineno}"))  # counted by the converter
    return rows


def _json_field(row: dict, key: str):
    # xLAM stores tools/answers as JSON strings; accept already-parsed values too.
    value = row.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as e:
            raise RowError(f"bad {key} JSON", str(e)) from None
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
        return {"type": "array", "items": _xlam_type(inner.group(1).split(",")[0])}
    if re.fullmatch(r"(?:Dict|dict)\[.*\]", base):
        return {"type": "object"}
    return {"type": _PY_TYPES.get(base.lower(), base)}  # unknown names pass through so nothing is lost


def xlam_tool_to_schema(tool: dict) -> dict:
    """{"name","description","parameters":{p: {"type": "str, optional", ...}}} -> JSON-schema-like function."""
    properties, required = {}, []
    for pname, spec in (tool.get("parameters") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        type_str = str(spec.get("type", "str"))
        optional = type_str.endswith("optional")
        prop = _xlam_type(type_str.rsplit(",", 1)[0] if optional else type_str)
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
        except ValueError as e:  # RowError, or a record the validator refuses
            _drop(stats, getattr(e, "reason", "invalid record"), f"row {index}: {e}")
    return records, stats


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
    except ValueError as e:
        raise RowError("bad tool list JSON", str(e)) from None
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
        calls.append({"name": name, "arguments": {kw.arg: _literal(kw.value, name) for kw in node.keywords}})
    return calls


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
    given. Plain-text assistant turns stay in the context but are not targets.
    """
    records, stats = [], _new_stats()
    for index, row in enumerate(_read_rows(path)):
        stats["raw"] += 1
        try:
            _toolace_row(row, index, records, stats)
        except ValueError as e:  # RowError for the row as a whole; anything else is still counted, not fatal
            _drop(stats, getattr(e, "reason", "invalid row"), f"row {index}: {e}")
    return records, stats


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
        except ValueError as e:
            _drop(stats, "invalid record", str(e)[:200])
    return records, stats


# ----------------------------------------------------------------------------------------------------------------
# Synthetic tool-calling tasks for the CPU demo and the tests

CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Cairo", "Lima", "Oslo", "Dublin", "Vienna",
          "Prague", "Lisbon", "Athens", "Seoul", "Delhi", "Sydney", "Toronto", "Chicago", "Boston", "Denver",
          "Miami", "Austin", "Seattle", "Nairobi", "Istanbul", "Bangkok", "Hanoi", "Zurich", "Warsaw"]
NAMES = ["Anna", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jack", "Kenji", "Lena",
         "Marco", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wei", "Xena", "Yusuf",
         "Zoe", "Liam", "Maya", "Noah", "Ivy"]
PHRASES = ["running late", "see you soon", "call me back", "on my way", "happy birthday", "thanks for lunch",
           "the meeting moved", "good luck today", "dinner is ready", "I landed safely"]
EVENTS = ["team meeting", "dentist visit", "yoga class", "project review", "lunch break", "piano lesson"]
FOODS = ["pizza", "sushi", "tacos", "salad", "noodles", "burger", "soup", "curry", "pasta", "rice"]
ITEMS = ["headphones", "lamps", "backpacks", "keyboards", "socks", "mugs", "chargers", "notebooks"]
CURRENCIES = {"dollars": "USD", "euros": "EUR", "pounds": "GBP", "yen": "JPY", "francs": "CHF", "rupees": "INR"}
LANGUAGES = {"French": "fr", "Spanish": "es", "German": "de", "Italian": "it", "Japanese": "ja", "Korean": "ko"}
TICKERS = {"Apple": "AAPL", "Microsoft": "MSFT", "Amazon": "AMZN", "Tesla": "TSLA", "Nvidia": "NVDA",
           "Netflix": "NFLX", "Intel": "INTC", "IBM": "IBM"}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


# Samplers: rng -> (text in the query, argument value). Where the two differ the model has to compute or map.

def _same(pool):
    def sample(rng):
        value = rng.choice(pool)
        return value, value
    return sample


def _mapped(mapping):  # e.g. "euros" -> "EUR"
    return lambda rng: rng.choice(list(mapping.items()))


def _number(lo, hi):
    def sample(rng):
        k = rng.randint(lo, hi)
        return str(k), k
    return sample


def _price(rng):
    cents = rng.randint(100, 9999)
    return f"{cents / 100:.2f}", cents / 100  # always a float, even 12.0: argument types are scored


def _percent(rng):
    p = rng.choice([10, 12, 15, 18, 20, 25])
    return f"{p}%", p / 100


def _days(rng):
    return rng.choice([("tomorrow", 1), ("in a week", 7), ("in two weeks", 14)] +
                      [(f"in {k} days", k) for k in range(2, 10)])


def _minutes(rng):
    h, m = rng.randint(2, 5), rng.randint(5, 59)
    return rng.choice([(f"{h} hours", 60 * h), (f"{m} minutes", m), ("an hour", 60), ("half an hour", 30)])


def _date(rng):
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    return f"{MONTHS[month - 1]} {day}", f"2025-{month:02d}-{day:02d}"


def _time(rng):
    hour, half = rng.randint(1, 12), rng.choice(["am", "pm"])
    return f"{hour} {half}", f"{hour % 12 + (12 if half == 'pm' else 0):02d}:00"


def _email(rng):
    name = rng.choice(NAMES)
    return name, name.lower() + "@example.com"


def _pair(pool):
    def sample(rng):
        a, b = rng.sample(pool, 2)
        return f"{a} and {b}", [a, b]
    return sample


def _flight(rng):
    code = rng.choice(["AA", "BA", "LH", "AF", "UA"]) + str(rng.randint(100, 999))
    return code, code


def _guests(rng):
    adults, kids = rng.randint(1, 4), rng.randint(0, 3)
    return f"{adults} adults" + (f" and {kids} kids" if kids else ""), {"adults": adults, "children": kids}


def _contact(rng):
    name, phone = rng.choice(NAMES), f"555-{rng.randint(1000, 9999)}"
    return f"{name}, phone {phone}", {"name": name, "phone": phone}


STRING, INTEGER, NUMBER = {"type": "string"}, {"type": "integer"}, {"type": "number"}
STRINGS = {"type": "array", "items": STRING}
# kind -> (sampler, JSON schema of the value; a "description" here is a format hint added to the parameter's)
KINDS = {
    "city": (_same(CITIES), STRING), "name": (_same(NAMES), STRING), "email": (_email, STRING),
    "phrase": (_same(PHRASES), STRING), "event": (_same(EVENTS), STRING), "food": (_same(FOODS), STRING),
    "item": (_same(ITEMS), STRING), "flight": (_flight, STRING),
    "int": (_number(1, 100), INTEGER), "small": (_number(1, 9), INTEGER), "year": (_number(1980, 2024), INTEGER),
    "days": (_days, INTEGER), "minutes": (_minutes, INTEGER), "price": (_price, NUMBER), "percent": (_percent, NUMBER),
    "date": (_date, {"type": "string", "description": "YYYY-MM-DD"}),
    "time": (_time, {"type": "string", "description": "HH:MM, 24h"}),
    "currency": (_mapped(CURRENCIES), {"type": "string", "description": "ISO code"}),
    "language": (_mapped(LANGUAGES), {"type": "string", "description": "ISO 639-1 code"}),
    "ticker": (_mapped(TICKERS), STRING),
    "names2": (_pair(NAMES), STRINGS), "foods2": (_pair(FOODS), STRINGS),
    "guests": (_guests, {"type": "object", "properties": {"adults": INTEGER, "children": INTEGER}}),
    "contact": (_contact, {"type": "object", "properties": {"name": STRING, "phone": STRING}}),
}

# (name, domain, description, "param[?]:kind:description; ...", query templates). `?` marks an optional param.
# Templates name params as {param}, or fix a value with {param=<json>} (no text). Tools of one domain overlap in
# meaning, so a no-call case never offers a tool from the query's own domain.
TOOL_SPECS = [
    ("get_weather", "weather", "Get the current weather in a city.",
     "city:city:City name; unit?:enum(celsius,fahrenheit):Temperature unit",
     ["What's the weather in {city}?", "Weather in {city} in {unit}, please.", "Is it raining in {city} now?"]),
    ("get_forecast", "weather", "Get the weather forecast for a future day.",
     "city:city:City name; days_ahead:days:Days from today",
     ["What will the weather be in {city} {days_ahead}?", "Forecast for {city} {days_ahead}."]),
    ("convert_currency", "money", "Convert an amount between currencies.",
     "amount:price:Amount; from_currency:currency:Source code; to_currency:currency:Target code",
     ["Convert {amount} {from_currency} to {to_currency}.", "How many {to_currency} is {amount} {from_currency}?"]),
    ("get_stock_price", "money", "Get the latest stock price.", "symbol:ticker:Ticker symbol",
     ["What is {symbol} stock trading at?", "Show me the share price of {symbol}."]),
    ("calculate_tip", "money", "Compute a restaurant tip.", "bill:price:Bill amount; rate:percent:Tip rate 0-1",
     ["What is a {rate} tip on {bill}?", "Tip {rate} on a bill of {bill}."]),
    ("book_flight", "travel", "Book a flight.",
     "origin:city:From; destination:city:To; date:date:Day; cabin?:enum(economy,business):Cabin",
     ["Book a flight from {origin} to {destination} on {date}.",
      "Fly me {cabin} from {origin} to {destination} on {date}."]),
    ("check_flight_status", "travel", "Check a flight's status.", "flight_number:flight:Flight code",
     ["Is flight {flight_number} on time?", "Status of flight {flight_number}?"]),
    ("book_hotel", "travel", "Reserve a hotel room.",
     "city:city:City; nights:small:Nights; guests:guests:Guest counts; breakfast?:bool:Include breakfast",
     ["Book a hotel in {city} for {nights} nights for {guests}.",
      "I need a room in {city}, {nights} nights, {guests}, with breakfast{breakfast=true}."]),
    ("get_directions", "travel", "Get route directions.",
     "origin:city:Start; destination:city:End; mode?:enum(driving,walking,transit):Travel mode",
     ["How do I get from {origin} to {destination}?", "Directions from {origin} to {destination} by {mode}."]),
    ("send_email", "messaging", "Send an email.", "to:email:Address; subject:phrase:Subject line",
     ["Email {to} with subject {subject}.", "Send {to} an email titled {subject}."]),
    ("send_message", "messaging", "Send a text message.", "recipient:name:Contact name; text:phrase:Message",
     ["Text {recipient}: {text}.", "Tell {recipient} {text}."]),
    ("create_contact", "messaging", "Save a new contact.", "contact:contact:Name and phone",
     ["Add a contact: {contact}.", "Save {contact} to my contacts."]),
    ("set_timer", "clock", "Start a countdown timer.", "minutes:minutes:Duration in minutes",
     ["Set a timer for {minutes}.", "Start a {minutes} timer."]),
    ("set_alarm", "clock", "Set an alarm.", "time:time:Alarm time; label?:phrase:Label",
     ["Wake me up at {time}.", "Set an alarm for {time} called {label}."]),
    ("create_event", "calendar", "Add a calendar event.", "title:event:Title; date:date:Day; time?:time:Start",
     ["Add {title} to my calendar on {date}.", "Schedule {title} on {date} at {time}."]),
    ("schedule_meeting", "calendar", "Invite people to a meeting.",
     "attendees:names2:People; date:date:Day; duration?:minutes:Minutes",
     ["Set up a meeting with {attendees} on {date}.", "Book {duration} with {attendees} on {date}."]),
    ("create_reminder", "calendar", "Create a reminder.", "text:phrase:What; days_from_now:days:When",
     ["Remind me {days_from_now} that {text}.", "Set a reminder {days_from_now}: {text}."]),
    ("translate_text", "language", "Translate text.", "text:phrase:Text; target_language:language:Language code",
     ["Translate '{text}' into {target_language}.", "How do you say '{text}' in {target_language}?"]),
    ("search_restaurants", "food", "Find restaurants.",
     "city:city:City; cuisine:enum(italian,chinese,mexican,indian,thai):Cuisine; max_results?:small:Limit",
     ["Find {cuisine} restaurants in {city}.", "Show {max_results} {cuisine} places in {city}."]),
    ("order_food", "food", "Order food for delivery.", "dishes:foods2:Dishes; quantity?:small:Portions each",
     ["Order {dishes} for delivery.", "Get me {quantity} portions each of {dishes}."]),
    ("search_recipes", "food", "Find recipes.", "ingredient:food:Main ingredient; max_minutes?:minutes:Time limit",
     ["Find a recipe with {ingredient}.", "A {ingredient} recipe under {max_minutes}, please."]),
    ("add_to_cart", "shopping", "Add a product to the cart.", "item:item:Product; quantity:small:Count",
     ["Add {quantity} {item} to my cart.", "Put {item} in the cart, quantity {quantity}."]),
    ("track_package", "shopping", "Track a package.", "order_id:int:Order number",
     ["Where is my order {order_id}?", "Track order number {order_id}."]),
    ("play_music", "media", "Play music.", "genre:enum(jazz,rock,pop,classical,hiphop):Genre; volume?:int:0-100",
     ["Play some {genre}.", "Play {genre} at volume {volume}."]),
    ("find_movies", "media", "Search movies.", "genre:enum(comedy,drama,horror,action):Genre; year?:year:Year",
     ["Recommend a {genre} movie.", "Find {genre} movies from {year}."]),
    ("get_news", "media", "Get news headlines.",
     "topic:enum(sports,politics,tech,science):Topic; count?:small:How many",
     ["Any {topic} news today?", "Give me {count} {topic} headlines."]),
    ("set_thermostat", "home", "Set the thermostat.", "temperature:int:Degrees; room?:enum(bedroom,kitchen):Room",
     ["Set the heating to {temperature} degrees.", "Make the {room} {temperature} degrees."]),
    ("turn_on_lights", "home", "Turn on lights.", "room:enum(bedroom,kitchen,garage):Room; brightness?:int:Percent",
     ["Turn on the {room} lights.", "Lights in the {room} at {brightness}% please."]),
    ("get_population", "facts", "Get a city's population.", "city:city:City name",
     ["How many people live in {city}?", "Population of {city}?"]),
    ("get_distance", "facts", "Distance between two cities in km.", "origin:city:From; destination:city:To",
     ["How far is {origin} from {destination}?", "Distance from {origin} to {destination}?"]),
]


def _parse_params(spec: str) -> dict:
    params = {}
    for part in spec.split(";"):
        name, kind, desc = (s.strip() for s in part.split(":", 2))
        params[name.rstrip("?")] = {"kind": kind, "description": desc, "required": not name.endswith("?")}
    return params


def _param_schema(param: dict) -> dict:
    kind = param["kind"]
    if kind.startswith("enum("):
        schema = {"type": "string", "enum": kind[5:-1].split(",")}
    elif kind == "bool":
        schema = {"type": "boolean"}
    else:
        schema = dict(KINDS[kind][1])
    note = schema.pop("description", None)  # a format hint from KINDS, e.g. YYYY-MM-DD
    schema["description"] = param["description"] + (f" ({note})" if note else "")
    return schema


def _build_library() -> list[dict]:
    library = []
    for name, domain, desc, spec, templates in TOOL_SPECS:
        params = _parse_params(spec)
        schema = {"name": name, "description": desc, "parameters": {
            "type": "object", "properties": {p: _param_schema(v) for p, v in params.items()},
            "required": [p for p, v in params.items() if v["required"]]}}
        library.append({"name": name, "domain": domain, "params": params, "templates": templates, "schema": schema})
    return library


TOOL_LIBRARY = _build_library()
_SLOT = re.compile(r"\{(\w+)(?:=([^{}]*))?\}")


def fill_template(rng: random.Random, tool: dict, template: str) -> tuple[str, dict]:
    """(query, arguments): each {param} gets a sampled value; two slots of one kind never share a value."""
    args, used = {}, set()

    def fill(match):
        pname, fixed = match.group(1), match.group(2)
        if fixed is not None:
            args[pname] = json.loads(fixed)
            return ""
        kind = tool["params"][pname]["kind"]
        for _ in range(20):
            sample = _same(kind[5:-1].split(",")) if kind.startswith("enum(") else KINDS[kind][0]
            text, value = sample(rng)
            if json.dumps(value) not in used:
                break
        used.add(json.dumps(value))
        args[pname] = value
        return text

    query = _SLOT.sub(fill, template)
    args = {p: args[p] for p in tool["params"] if p in args}  # schema order, so SFT targets read consistently
    return re.sub(r"\s+([,.?!])", r"\1", " ".join(query.split())), args


def _sample_call(rng, tool) -> tuple[str, dict]:
    query, args = fill_template(rng, tool, rng.choice(tool["templates"]))
    return query, {"name": tool["name"], "arguments": args}


def _distractors(rng, library, needed: list[dict], k: int, avoid_domains=()) -> list[dict]:
    names = {t["name"] for t in needed}
    pool = [t for t in library if t["name"] not in names and t["domain"] not in avoid_domains]
    return rng.sample(pool, min(k, len(pool)))


def _join(q1: str, q2: str, rng) -> str:
    return f"{q1} {rng.choice(['Also,', 'And', 'Then'])} {q2[0].lower() + q2[1:]}"


def _synthetic_case(rng, case: str, max_tools: int, library) -> tuple[str, list[dict], list[dict]]:
    """(query, offered tools, answer) for one case type."""
    tool = rng.choice(library)
    query, call = _sample_call(rng, tool)
    if case == "no_call":
        offered = _distractors(rng, library, [tool], rng.randint(1, max_tools), avoid_domains={tool["domain"]})
        if not offered:  # a tool subset with a single domain has nothing unrelated to offer
            raise ValueError("no_call cases need tools from at least two domains; add tools or set p_no_call=0")
        return query, offered, []
    if case == "parallel":
        other = tool
        if max_tools > 1 and rng.random() >= 0.5:
            other = (_distractors(rng, library, [tool], 1) or [tool])[0]
        required = [p for p, v in tool["params"].items() if v["required"]]
        for _ in range(20):  # the same tool twice must differ in a required value, or the query reads as one call
            query2, call2 = _sample_call(rng, other)
            if other is not tool or any(call2["arguments"][p] != call["arguments"][p] for p in required):
                break
        needed = [tool] if other is tool else [tool, other]
        offered = needed + _distractors(rng, library, needed, rng.randint(0, max_tools - len(needed)))
        return _join(query, query2, rng), offered, [call, call2]
    extra = rng.randint(1, max_tools - 1) if case == "multiple" else 0
    return query, [tool] + _distractors(rng, library, [tool], extra), [call]


CASES = ("single", "multiple", "parallel", "no_call")  # synthetic_records' case types (record["case"])


def synthetic_records(n: int, seed: int = 0, max_tools: int = 3, p_parallel: float = 0.2, p_no_call: float = 0.1,
                      p_multiple: float = 0.4, tools=None) -> list[dict]:
    """n seeded tool-calling records with short queries and 1..max_tools offered tools.

    Case types, recorded in record["case"]: "single" (only the right tool offered), "multiple" (several tools,
    one right), "parallel" (two calls), "no_call" (no offered tool fits; answer []). All records carry
    allow_empty_call when p_no_call > 0, so the prompt itself does not give the no-call cases away.
    tools: names of TOOL_LIBRARY entries to draw from (default: all of them), e.g. an easier task for a tiny model.
    """
    if n < 0 or max_tools < 1:
        raise ValueError(f"need n >= 0 and max_tools >= 1, got n={n}, max_tools={max_tools}")
    library = TOOL_LIBRARY
    if tools is not None:
        known = {t["name"] for t in TOOL_LIBRARY}
        unknown = [name for name in tools if name not in known]
        if unknown or not tools:
            raise ValueError(f"unknown tool name(s) {unknown} (known: {sorted(known)})" if unknown
                             else "tools must name at least one tool")
        library = [t for t in TOOL_LIBRARY if t["name"] in set(tools)]
    probs = {"parallel": p_parallel, "no_call": p_no_call, "multiple": p_multiple if max_tools > 1 else 0.0}
    if any(p < 0 for p in probs.values()) or sum(probs.values()) > 1:
        raise ValueError(f"case probabilities must be >= 0 and sum to <= 1, got {probs}")
    probs["single"] = 1.0 - sum(probs.values())
    rng, records = random.Random(seed), []
    for i in range(n):
        case = rng.choices(list(probs), weights=list(probs.values()))[0]
        query, offered, answer = _synthetic_case(rng, case, max_tools, library)
        rng.shuffle(offered)
        records.append({"id": f"synthetic-{seed}-{i}", "source": "synthetic", "case": case,
                        "tools": [copy.deepcopy(t["schema"]) for t in offered],
                        "messages": [{"role": "user", "content": query}], "answer": answer,
                        "allow_empty_call": p_no_call > 0})
    return records


# ----------------------------------------------------------------------------------------------------------------
# Command line


def _save_and_report(name: str, records, stats, out):
    save_records(records, out)
    print(format_stats(name, stats))
    print(f"wrote {len(records)} records to {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tooln1_min.data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [("xlam", "xLAM function-calling-60k JSON -> records"),
                            ("toolace", "ToolACE data.json -> records"), ("jsonl", "check unified JSONL records")]:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("input")
        p.add_argument("output")
        if name == "xlam":
            p.add_argument("--schema", action="store_true", help="rewrite tools as JSON-schema-like functions")
    p = sub.add_parser("synthetic", help="write seeded synthetic tool-calling records")
    p.add_argument("output")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-tools", type=int, default=3)
    p.add_argument("--p-parallel", type=float, default=0.2)
    p.add_argument("--p-no-call", type=float, default=0.1)
    p.add_argument("--p-multiple", type=float, default=0.4)
    p = sub.add_parser("split", help="deterministic train/test split of a JSONL file")
    p.add_argument("input")
    p.add_argument("--test-frac", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", help="default: INPUT with .train.jsonl")
    p.add_argument("--test", help="default: INPUT with .test.jsonl")
    args = parser.parse_args(argv)

    if args.command in ("xlam", "toolace", "jsonl"):
        convert = {"xlam": lambda path: convert_xlam(path, schema=args.schema), "toolace": convert_toolace,
                   "jsonl": convert_jsonl}[args.command]
        records, stats = convert(args.input)
        _save_and_report(args.command, records, stats, args.output)
    elif args.command == "synthetic":
        records = synthetic_records(args.n, args.seed, args.max_tools, args.p_parallel, args.p_no_call,
                                    args.p_multiple)
        save_records(records, args.output)
        counts = {c: sum(r["case"] == c for r in records) for c in CASES}
        print(f"synthetic: {len(records)} records (seed {args.seed}): " + ", ".join(f"{k} {v}" for k, v in
                                                                                    counts.items()))
        print(f"wrote {len(records)} records to {args.output}")
    else:
        records = load_records(args.input)
        train, test = split_records(records, args.test_frac, args.seed)
        stem = args.input[:-len(".jsonl")] if args.input.endswith(".jsonl") else args.input
        for part, path in ((train, args.train or stem + ".train.jsonl"), (test, args.test or stem + ".test.jsonl")):
            save_records(part, path)
            print(f"wrote {len(part)} records to {path}")


if __name__ == "__main__":
    main()
