"""API-Bank level-1 (tooln1_min/apibank.py): the official evaluation code is imported from a folder and run. Here
a miniature api-bank folder written for these tests stands in for it (same module names and interfaces, its own
tiny API); with APIBANK_DIR=<api-bank folder> and APIBANK_JSON=<level-1-api.json>, the real one is checked too."""
import hashlib
import json
import os
import sys
import textwrap

import pytest

from tooln1_min import apibank
from tooln1_min.apibank import apibank_check, apibank_messages, load_apibank, render_calls, sample_tools

FILES = {
    "apis/__init__.py": "from .api import API\n",
    "apis/api.py": "class API:\n    description = ''\n    input_parameters = {}\n    output_parameters = {}\n",
    "apis/add_note.py": '''
        import requests  # a package level-1 scoring never uses: a stand-in must satisfy the import
        from apis.api import API

        class AddNote(API):
            description = "Adds a note for a day."
            input_parameters = {"content": {"type": "str", "description": "The note."},
                                "day": {"type": "str", "description": "Format: %Y-%m-%d"},
                                "pinned": {"type": "bool", "description": "[Optional] Pin it."}}
            output_parameters = {"status": {"type": "str", "description": "success or failed"}}
            database_name = "Notes"

            def __init__(self, init_database=None):
                self.database = init_database if init_database is not None else {}

            def call(self, content, day, pinned=False):
                inputs = {"content": content, "day": day}
                self.database[str(len(self.database))] = inputs
                return {"api_name": "AddNote", "input": inputs, "output": "success", "exception": None}

            def check_api_call_correctness(self, response, groundtruth):
                assert response["api_name"] == groundtruth["api_name"], "The API name is not correct."
                a, b = set(response["input"]["content"].split()), set(groundtruth["input"]["content"].split())
                groundtruth["input"]["content"] = "mutated"  # as some official checks do: reload per sample
                return len(a & b) / len(a | b) > 0.5 and response["input"]["day"] == groundtruth["input"]["day"]
        ''',
    "apis/web_lookup.py": '''
        import requests
        from apis.api import API

        class WebLookup(API):
            description = "Looks a word up online."
            input_parameters = {"word": {"type": "str", "description": "The word."}}
            output_parameters = {"text": {"type": "str", "description": "The definition."}}

            def call(self, word):
                return {"api_name": "WebLookup", "input": {"word": word}, "output": requests.get(word),
                        "exception": None}

            def check_api_call_correctness(self, response, groundtruth):
                return response == groundtruth
        ''',
    "tool_manager.py": '''
        import importlib, json, os
        from apis import API

        class ToolManager:
            def __init__(self):
                self.classes = {}
                for f in sorted(os.listdir("./apis")):
                    if f.endswith(".py") and f not in ("__init__.py", "api.py"):
                        module = importlib.import_module("apis." + f[:-3])
                        for v in vars(module).values():
                            if isinstance(v, type) and issubclass(v, API) and v is not API:
                                self.classes[v.__name__] = v
                self.databases = {f[:-5]: json.load(open(os.path.join("./init_database", f)))
                                  for f in os.listdir("./init_database")}

            def init_tool(self, name):
                cls = self.classes[name]
                db = getattr(cls, "database_name", None)
                return cls(self.databases[db]) if db else cls()

            def api_call(self, name, **kwargs):
                params = self.classes[name].input_parameters
                for k in kwargs:
                    assert k in params, "invalid parameter name. parameter: {}".format(k)
                kwargs = {k: (v == "True" if params[k]["type"] == "bool" else v) for k, v in kwargs.items()}
                return self.init_tool(name).call(**kwargs)
        ''',
    "api_call_extraction.py": '''
        import re

        def parse_api_call(text):
            m = re.search(r"\\[(\\w+)\\((.*)\\)\\]", text)
            return m.group(1), {k: v for k, v in re.findall(r"(\\w+)='(.+?)'", m.group(2))}
        ''',
    "utils.py": '''
        from tenacity import retry, stop_after_attempt

        @retry(stop=stop_after_attempt(3))
        def ask():
            raise RuntimeError("never called in level-1 scoring")
        ''',
    "evaluator_by_json.py": '''
        import re
        from rouge import Rouge
        from tqdm import tqdm
        from utils import ask
        from tool_manager import ToolManager
        from api_call_extraction import parse_api_call

        class Sample:
            def __init__(self, chat_history, apis, ground_truth):
                self.chat_history, self.apis, self.ground_truth = chat_history, apis, ground_truth

            @classmethod
            def from_chat_history(cls, history):
                apis = {h["api_name"] for h in history if h["role"] == "API"}
                out = []
                for i, h in enumerate(history):
                    if h["role"] == "API":
                        out += [cls(history[:i], apis, history[i]), cls(history[:i + 1], apis, history[i + 1])]
                return out

        class Evaluator:
            def __init__(self, samples):
                self.dataset = samples

            def evaluate(self, sample_id, model_output):
                manager = ToolManager()
                truth = self.dataset[sample_id].ground_truth
                name, params = parse_api_call(model_output)
                if name != truth["api_name"]:
                    return False, "API Name Mismatch: {} vs {}".format(name, truth["api_name"])
                result = manager.api_call(name, **params)
                return manager.init_tool(name).check_api_call_correctness(result, truth["result"]), result

        def get_api_call(text):
            m = re.search(r"\\[(\\w+)\\((.*)\\)\\]", text)
            return m.group(0) if m else None
        ''',
    "init_database/Notes.json": "{}",
}
TRUTH = {"role": "API", "api_name": "AddNote", "param_dict": {"content": "buy milk today", "day": "2024-05-01"},
         "result": {"api_name": "AddNote", "input": {"content": "buy milk today", "day": "2024-05-01"},
                    "output": "success", "exception": None}}
HISTORY = [{"role": "User", "text": "Note: buy milk today, for May 1st 2024."}, {"role": "AI", "text": "Sure."},
           TRUTH, {"role": "AI", "text": "Done."},
           {"role": "User", "text": "What does 'ephemeral' mean?"},
           {"role": "API", "api_name": "WebLookup", "param_dict": {"word": "ephemeral"},
            "result": {"api_name": "WebLookup", "input": {"word": "ephemeral"}, "output": "short-lived",
                       "exception": None}}, {"role": "AI", "text": "Short-lived."}]
DESCRIPTIONS = "\n".join(json.dumps({"name": n, "description": d, "input_parameters": p,
                                     "output_parameters": {}}) for n, d, p in [
    ("AddNote", "Adds a note for a day.", {"content": {"type": "str", "description": "The note."},
                                           "day": {"type": "str", "description": "Format: %Y-%m-%d"},
                                           "pinned": {"type": "bool", "description": "[Optional] Pin it."}}),
    ("WebLookup", "Looks a word up online.", {"word": {"type": "str", "description": "The word."}})])
SAMPLES = [
    {"file": "dialog.jsonl", "id": 0, "instruction": "Generate an API request.\nAPI descriptions:\n" + DESCRIPTIONS,
     "input": "User: Note: buy milk today, for May 1st 2024.\nAI: Sure.\nGenerate API Request:\n",
     "expected_output": "API-Request: [AddNote(content='buy milk today', day='2024-05-01')]"},
    {"file": "dialog.jsonl", "id": 2, "instruction": "Generate an API request.\nAPI descriptions:\n" + DESCRIPTIONS,
     "input": "User: Note: buy milk today, for May 1st 2024.\nAI: Sure.\nAPI-Request: [AddNote(content='buy milk "
              "today', day='2024-05-01')]->success\nAI: Done.\nUser: What does 'ephemeral' mean?\n"
              "Generate API Request:\n",
     "expected_output": "API-Request: [WebLookup(word='ephemeral')]"},
]


def write_apibank(root) -> str:
    for path, text in FILES.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(textwrap.dedent(text).lstrip())
    samples_dir = os.path.join(root, "lv1-lv2-samples", "level-1-given-desc")
    os.makedirs(samples_dir)
    with open(os.path.join(samples_dir, "dialog.jsonl"), "w") as f:
        f.writelines(json.dumps(h) + "\n" for h in HISTORY)
    os.makedirs(os.path.join(root, "json_test_data"))
    with open(os.path.join(root, "json_test_data", "level-1-api.json"), "w") as f:
        json.dump(SAMPLES, f)
    return str(root)


def _digest(root):
    h = hashlib.sha256()
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            h.update(path.encode() + open(path, "rb").read())
    return h.hexdigest()


@pytest.fixture()
def bank(tmp_path):
    return write_apibank(tmp_path / "api-bank")


def test_verdicts_run_the_official_code_and_never_raise(bank):
    before, cwd, modules = _digest(bank), os.getcwd(), set(sys.modules)
    note = SAMPLES[0]
    assert apibank_check(note, [{"AddNote": {"content": "buy milk today", "day": "2024-05-01"}}], bank) == (True, "")
    assert apibank_check(note, [{"AddNote": {"content": "buy milk", "day": "2024-05-01"}}], bank)[0]  # fuzzy
    # the check mutates the ground truth: it is re-read for every sample, so the same answer passes again
    assert apibank_check(note, [{"AddNote": {"content": "buy milk today", "day": "2024-05-01"}}], bank)[0]
    ok, reason = apibank_check(note, [{"AddNote": {"content": "sell cars", "day": "2024-05-01"}}], bank)
    assert not ok and "result differs" in reason
    ok, reason = apibank_check(note, [{"WebLookup": {"word": "x"}}], bank)
    assert not ok and "API Name Mismatch" in reason
    ok, reason = apibank_check(note, [{"AddNote": {"text": "buy milk today", "day": "2024-05-01"}}], bank)
    assert not ok and "invalid parameter name" in reason
    assert apibank_check(note, None, bank) == (False, "no decodable <tool_call> block")
    assert apibank_check(note, [], bank) == (False, "no call")
    ok, reason = apibank_check(SAMPLES[1], [{"WebLookup": {"word": "ephemeral"}}], bank)  # needs the network
    assert not ok and "not available here" in reason
    assert not apibank_check(note, [{"AddNote": "not an object"}], bank)[0]
    assert not apibank_check(note, [{"AddNote": {"content": "x"}}], "/nonexistent")[0]
    assert _digest(bank) == before and os.getcwd() == cwd  # nothing written (no bytecode), cwd restored
    assert not {"utils", "apis", "tool_manager", "evaluator_by_json"} & (set(sys.modules) - modules)


def test_rendered_text_is_the_datasets_form():
    assert render_calls([{"A": {"x": 1, "y": "b c"}}, {"B": {}}]) == "[A(x='1', y='b c'), B()]"


def test_prompt_tools_and_turns(bank):
    samples = load_apibank(os.path.join(bank, "json_test_data", "level-1-api.json"))
    tools = sample_tools(samples[0])
    assert [t["name"] for t in tools] == ["AddNote", "WebLookup"]
    assert tools[0]["parameters"]["properties"]["pinned"]["type"] == "boolean"
    assert tools[0]["parameters"]["required"] == ["content", "day"]
    msgs = apibank_messages(samples[1])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "assistant", "tool", "assistant", "user"]
    assert msgs[3]["content"].startswith("<tool_call>[{\"name\": \"AddNote\"") and msgs[4]["content"] == "success"
    assert "Generate API Request" not in json.dumps(msgs)
    with pytest.raises(SystemExit, match="5c38bb7d"):
        load_apibank(os.path.join(bank, "none.json"))


def test_real_api_bank_ceiling():
    root, path = os.environ.get("APIBANK_DIR"), os.environ.get("APIBANK_JSON")
    if not (root and path):
        pytest.skip("set APIBANK_DIR (api-bank folder) and APIBANK_JSON (level-1-api.json) to check the real one")
    before = _digest(root)
    samples = load_apibank(path)
    ceiling = sum(apibank.ceiling_ok(s, root) for s in samples)
    print(f"API-Bank ceiling offline: {ceiling}/{len(samples)}")
    assert len(samples) == 399 and ceiling == 337 and _digest(root) == before


def test_a_relative_folder_works(bank, monkeypatch):
    """The official code runs inside the folder: a relative path must still find the dialogue files."""
    monkeypatch.chdir(os.path.dirname(bank))
    answer = [{"AddNote": {"content": "buy milk today", "day": "2024-05-01"}}]
    assert apibank_check(SAMPLES[0], answer, os.path.basename(bank)) == (True, "")
    assert apibank.ceiling_ok(SAMPLES[0], os.path.basename(bank))
