"""API-Bank level-1 "Call" (paper Fig. 3): Tool-N1's prompt, and the verdict of API-Bank's own execution-based
evaluation, obtained by running its code (imported from a folder the user points at; nothing of it is copied).

Data (users clone the public AlibabaResearch/DAMO-ConvAI repository; nothing is downloaded): its `api-bank/`
folder (`apis/`, `init_database/`, `tool_manager.py`, `api_call_extraction.py`, `evaluator_by_json.py`,
`lv1-lv2-samples/level-1-given-desc/`), and the 399-sample test set `api-bank/json_test_data/level-1-api.json`,
which exists only at commit 5c38bb7d of that repository (`git show 5c38bb7d:api-bank/json_test_data/level-1-api.json`).

How a sample is judged (as evaluator_by_json.py's main loop does): the decoded calls are written as the dataset's
text `[Name(key='value', ...), ...]` (each value as str(value)); the official regex reads one call from it, greedily:
the first call's name with everything up to the last `)` as its arguments, so a reply of several calls is read as
the first API given all of their arguments (a repeated key keeps the last value), as it would be had the model
written API-Bank's own format; a fresh ToolManager executes that API against the initial databases; the API's own
check_api_call_correctness compares the result with the ground truth, which is the dialogue file's turn at the
sample's id (evaluator_by_json.Sample). Every exception in the official code, including those that abort its own
run, makes the answer wrong with the reason given.

Offline: the official modules import packages level-1 scoring does not need (sentence_transformers, rank_bm25,
nltk, googletrans, requests, rouge, tenacity, tqdm). Stand-ins that raise when used replace them, so the
network-backed APIs (Dictionary, Translate, SearchEngine, ToolSearcher) fail, as they would offline anywhere. The
official code runs with the folder as its working directory (it reads ./apis and ./init_database), writes nothing
into it (no bytecode), and the ground truth is re-read for every sample (some checks mutate it).
"""
import contextlib
import importlib
import json
import os
import re
import sys
import types

_OFFICIAL = ("apis", "tool_manager", "api_call_extraction", "evaluator_by_json", "utils")
_NEEDED = ("tool_manager.py", "api_call_extraction.py", "evaluator_by_json.py", "apis", "init_database",
           os.path.join("lv1-lv2-samples", "level-1-given-desc"))
_cache: dict[str, dict] = {}  # folder -> the official modules once imported (sys.modules entries)


def apibank_check(sample: dict, model_calls, apibank_dir: str) -> tuple[bool, str]:
    """(ok, reason): API-Bank's official verdict on one level-1 sample for the decoded calls
    [{name: {param: value}}] (None or []: wrong). Never raises."""
    if not model_calls:
        return False, "no decodable <tool_call> block" if model_calls is None else "no call"
    apibank_dir = os.path.abspath(apibank_dir)  # the official code runs with the folder as working directory
    try:
        text = render_calls(model_calls)
        with official_code(apibank_dir) as ev:
            truth = ground_truth(ev, apibank_dir, sample)
            api_call = ev.get_api_call(text)
            if api_call is None:
                return False, "no API call found in " + text[:200]
            correct, result = ev.Evaluator([truth]).evaluate(0, api_call)
    except Exception as e:  # noqa: BLE001 - every failure inside the official code is a wrong answer
        return False, f"{type(e).__name__}: {str(e)[:300]}"
    if isinstance(result, str):  # 'API Name Mismatch: ...' or 'KeyError...'
        return False, result[:300]
    return bool(correct), "" if correct else f"result differs: {str(result)[:300]}"


def render_calls(model_calls) -> str:
    """The dataset's text form of the calls: [Name(key='value', ...), ...], every value as str(value)."""
    parts = []
    for call in model_calls:
        for name, args in call.items():
            if not isinstance(args, dict):
                raise ValueError(f"arguments of {name!r} are not an object")
            parts.append(f"{name}(" + ", ".join(f"{k}='{v}'" for k, v in args.items()) + ")")
    return "[" + ", ".join(parts) + "]"


def ground_truth(ev, apibank_dir: str, sample: dict):
    """The official Sample at the sample's id in its dialogue file (read anew: checks may mutate it)."""
    path = os.path.join(apibank_dir, "lv1-lv2-samples", "level-1-given-desc", sample["file"])
    with open(path, encoding="utf-8") as f:
        history = [json.loads(line) for line in f if line.strip()]
    return ev.Sample.from_chat_history(history)[sample["id"]]


def check_folder(apibank_dir: str):
    missing = [p for p in _NEEDED if not os.path.exists(os.path.join(apibank_dir or "", p))]
    if missing:
        raise FileNotFoundError(f"{apibank_dir!r} is not an api-bank folder (missing {', '.join(missing)}); "
                                "clone AlibabaResearch/DAMO-ConvAI and pass its api-bank folder")


@contextlib.contextmanager
def official_code(apibank_dir: str):
    """evaluator_by_json imported from apibank_dir, with the folder as working directory, stand-ins for the
    packages it needs only for other levels, and no bytecode written; sys.modules, sys.path and the working
    directory are restored afterwards (the official names such as `utils` and `apis` are generic)."""
    root = os.path.abspath(apibank_dir)
    check_folder(root)
    ours = lambda name: name in _OFFICIAL or name.startswith("apis.") or name.split(".")[0] in _STUBS  # noqa: E731
    saved = {name: mod for name, mod in sys.modules.items() if ours(name)}
    cwd, bytecode = os.getcwd(), sys.dont_write_bytecode
    try:
        for name in saved:
            del sys.modules[name]
        sys.modules.update(_stand_ins())
        sys.modules.update(_cache.get(root, {}))
        sys.path.insert(0, root)
        sys.dont_write_bytecode = True
        os.chdir(root)
        yield importlib.import_module("evaluator_by_json")
    finally:  # every step, whatever failed before it
        _cache[root] = {n: m for n, m in sys.modules.items() if n in _OFFICIAL or n.startswith("apis.")}
        for name in [n for n in sys.modules if ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
        sys.dont_write_bytecode = bytecode
        if root in sys.path:
            sys.path.remove(root)
        with contextlib.suppress(OSError):
            os.chdir(cwd)


_STUBS = ("sentence_transformers", "rank_bm25", "nltk", "googletrans", "requests", "rouge", "tenacity", "tqdm")


def _stand_ins() -> dict:
    def unavailable(name):
        def fn(*args, **kwargs):
            raise RuntimeError(f"{name}: not available here (API-Bank's level-1 scoring runs offline)")
        return fn

    def module(name, **attrs):
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        mod.__getattr__ = lambda attr: unavailable(f"{name}.{attr}")
        return mod

    def no_op_decorator(*args, **kwargs):
        return lambda fn: fn

    exceptions = module("requests.exceptions", ConnectionError=type("ConnectionError", (OSError,), {}))
    tokenize = module("nltk.tokenize")
    return {"sentence_transformers": module("sentence_transformers", util=module("sentence_transformers.util")),
            "rank_bm25": module("rank_bm25"), "nltk": module("nltk", tokenize=tokenize), "nltk.tokenize": tokenize,
            "googletrans": module("googletrans"), "requests": module("requests", exceptions=exceptions),
            "requests.exceptions": exceptions, "rouge": module("rouge"), "tqdm": module("tqdm"),
            "tenacity": module("tenacity", retry=no_op_decorator, stop_after_attempt=lambda *a, **k: None,
                               wait_random_exponential=lambda *a, **k: None,
                               retry_if_exception_type=lambda *a, **k: None)}


# ---- data and prompt ----

def load_apibank(json_path: str) -> list[dict]:
    if not os.path.isfile(json_path or ""):
        raise SystemExit(f"--apibank-json {json_path!r}: not found (level-1-api.json exists only at commit 5c38bb7d "
                         "of AlibabaResearch/DAMO-ConvAI: git show 5c38bb7d:api-bank/json_test_data/level-1-api.json)")
    with open(json_path, encoding="utf-8") as f:
        samples = json.load(f)
    if not isinstance(samples, list) or not all(isinstance(s, dict) and {"file", "id", "input", "instruction"}
                                                <= set(s) for s in samples):
        raise SystemExit(f"--apibank-json {json_path!r}: expected a JSON list of level-1 samples "
                         "({file, id, instruction, input, expected_output})")
    return samples


_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "list": "array",
          "list(str)": "array"}


def sample_tools(sample: dict) -> list[dict]:
    """The sample's API descriptions (the JSON lines after 'API descriptions:' in its instruction) as tools."""
    text = sample["instruction"].split("API descriptions:", 1)[-1]
    tools = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        api = json.loads(line)
        props = {}
        for name, p in api.get("input_parameters", {}).items():
            prop = {"type": _TYPES.get(p.get("type"), "string"), "description": p.get("description", "")}
            if p.get("type") == "list(str)":
                prop["items"] = {"type": "string"}
            props[name] = prop
        tools.append({"name": api["name"], "description": api.get("description", ""),
                      "parameters": {"type": "object", "properties": props,
                                     "required": [n for n, p in props.items()
                                                  if not p["description"].startswith("[Optional]")]}})
    return tools


_REQUEST = re.compile(r"API-Request:\s*(\[.*\])\s*->\s*(.*)$", re.S)


def apibank_messages(sample: dict) -> list[dict]:
    """Tool-N1's evaluation prompt over the sample's APIs, then its dialogue: `User:` and `AI:` lines as user and
    assistant turns, `API-Request: [call]->result` as the assistant's tool call and the tool's reply (the raw
    text when the call doesn't parse); the trailing `Generate API Request:` is dropped."""
    from .convert import parse_bracket_calls
    from .data import system_prompt
    messages = [{"role": "system", "content": system_prompt(sample_tools(sample), allow_empty_call=True)}]
    for line in sample["input"].split("\n"):
        if not line.strip() or line.strip().startswith("Generate API Request"):
            continue
        role, _, text = line.partition(": ")
        if role == "User":
            messages.append({"role": "user", "content": text})
        elif role == "AI":
            messages.append({"role": "assistant", "content": text})
        elif role == "API-Request" and _REQUEST.match(line):
            call, result = _REQUEST.match(line).groups()
            try:
                calls = parse_bracket_calls(call)
                messages.append({"role": "assistant", "content": "<tool_call>" + json.dumps(calls) + "</tool_call>"})
                messages.append({"role": "tool", "content": result})
            except ValueError:
                messages.append({"role": "assistant", "content": line})
        elif len(messages) > 1:  # a continuation line
            messages[-1]["content"] += "\n" + line
    return messages


def truth_calls(ev, apibank_dir: str, sample: dict) -> list[dict]:
    """The ground truth's call as decoded calls (for the ceiling)."""
    truth = ground_truth(ev, apibank_dir, sample).ground_truth
    return [{truth["api_name"]: truth["param_dict"]}]


def ceiling_ok(sample: dict, apibank_dir: str) -> bool:
    apibank_dir = os.path.abspath(apibank_dir)
    try:
        with official_code(apibank_dir) as ev:
            calls = truth_calls(ev, apibank_dir, sample)
    except Exception:  # noqa: BLE001
        return False
    return apibank_check(sample, calls, apibank_dir)[0]
