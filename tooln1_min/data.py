"""Tool-calling records: the one schema every dataset is converted to, JSONL in/out, and Tool-N1's prompt.

A record (one JSON object per line on disk):

    {"id": str, "source": str,
     "tools": [function dicts, {"name": ..., "description": ..., "parameters": ...}],
     "messages": [context turns: {"role": "user" | "tool", "content": str}
                  or {"role": "assistant", "content": str, "tool_calls": [{"name", "arguments"}] (optional)}],
     "answer": [{"name": str, "arguments": dict}],   # [] means "no function applies"
     "system": str | None,            # optional: the dataset's own system prefix (default: DEFAULT_SYSTEM)
     "allow_empty_call": bool,        # optional: the prompt says <tool_call>[]</tool_call> is a valid reply
     "case": str}                     # optional: one of CASES (synthetic records), for per-case accuracy

The context ends with a user or tool turn; the model's reply to it is the `answer`. Converters from xLAM, ToolACE
and JSONL live in convert.py, the synthetic task in synthetic.py; `python -m tooln1_min.data ...` is their
command line (data.main):

    python -m tooln1_min.data xlam xlam_function_calling_60k.json xlam.jsonl
    python -m tooln1_min.data toolace data.json toolace.jsonl
    python -m tooln1_min.data jsonl mine.jsonl checked.jsonl
    python -m tooln1_min.data synthetic synth.jsonl --n 2000 --seed 0
    python -m tooln1_min.data split all.jsonl --test-frac 0.1 --seed 0
"""
import argparse
import json
import os
import random

ROLES = ("user", "assistant", "tool")
CASES = ("single", "multiple", "parallel", "no_call")  # record["case"] of synthetic records

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
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a leading byte-order mark is fine
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not UTF-8 text ({e})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e})") from None
            except RecursionError:
                raise ValueError(f"{path}:{lineno}: JSON nested too deeply to read") from None
            if "\\ud" in line.lower():  # an escape "\ud83d" alone is half a character: no tokenizer reads it
                try:
                    json.dumps(row, ensure_ascii=False).encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(f"{path}:{lineno}: a lone surrogate escape (half of a surrogate pair) "
                                     "is not text") from None
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


def split_group(record):
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
        groups.setdefault(split_group(r), []).append(i)
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

# The instruction sentences follow the paper's template (Fig. 2 / Appendix E); the layout around them is ours, and
# the official repository's scripts word and lay it out somewhat differently (README, "Prompts").
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


def eval_messages(functions: list[dict], turn: list[dict]) -> list[dict]:
    """Tool-N1's evaluation prompt, shared by the benchmarks: its system template with the no-call note (benchmarks
    hold irrelevance cases) over `functions`, then the turn's messages. Tool-N1's handler replaced the system
    message, so a turn's own system message is dropped, not merged."""
    rest = [{"role": m["role"], "content": m["content"]} for m in turn if m["role"] != "system"]
    return [{"role": "system", "content": system_prompt(functions, allow_empty_call=True)}] + rest


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
# Command line: python -m tooln1_min.data ...


def _save_and_report(name: str, records, stats, out):
    from .convert import format_stats
    save_records(records, out)
    print(format_stats(name, stats))
    print(f"wrote {len(records)} records to {out}")


def main(argv=None):
    from .convert import convert_jsonl, convert_toolace, convert_xlam  # convert imports this module
    from .synthetic import synthetic_records
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
