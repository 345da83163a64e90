"""Tokenizer wrapper and chat template rendering, checked against transformers' apply_chat_template.

Set TOOLN1_TOKENIZER_DIR=<a Qwen checkpoint folder> to also check that checkpoint's official template.
"""
import os

import pytest

from tooln1_min.tokenizer import CHATML_TEMPLATE, QWEN_ADDED_TOKENS, Tokenizer, train_tokenizer

CORPUS = ["Hello world, get the weather in Paris tomorrow.", "<think>reason</think> numbers 12345 ünïcödé 天气",
          '{"name": "get_weather", "arguments": {"city": "Paris"}}'] * 20

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city, ünï",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string"}}, "required": ["city"]}}},
         {"type": "function", "function": {"name": "math.hypot", "parameters": {}}}]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 3}}}
CONVERSATIONS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "天气?"}],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "", "tool_calls": [CALL]},
     {"role": "tool", "content": '{"temp": 3}'}, {"role": "tool", "content": "second"},
     {"role": "assistant", "content": "It is 3 degrees."}, {"role": "user", "content": "thanks"}],
    [{"role": "system", "content": "sys"}, {"role": "user", "content": "a"},
     {"role": "assistant", "content": "thinking", "tool_calls": [CALL, CALL]}, {"role": "tool", "content": "x"}],
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CORPUS, vocab_size=400)


def _templates(tmp_path_factory, tok):
    out = [("project-chatml", tok)]
    official = os.environ.get("TOOLN1_TOKENIZER_DIR")
    if official:
        out.append(("official", Tokenizer.from_pretrained(official)))
    return out


def test_added_tokens_and_flags(tok):
    for content, special in QWEN_ADDED_TOKENS:
        i = tok.token_to_id(content)
        assert i is not None and tok.encode(content) == [i]
        assert (tok.decode([i], skip_special_tokens=True) == "") == special, content
    text = "<think>ok</think><tool_call>[]</tool_call><|im_end|>"
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(text), skip_special_tokens=True) == "<think>ok</think><tool_call>[]</tool_call>"
    assert tok.stop_token_ids == [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]


def test_save_load_and_transformers_agree(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(str(tmp_path))
    text = "Call get_weather for Paris <tool_call>[1]</tool_call> 天气 123"
    assert again.encode(text) == tok.encode(text)
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf.encode(text, add_special_tokens=False) == tok.encode(text)
    assert hf.decode(tok.encode(text)) == tok.decode(tok.encode(text))


@pytest.mark.parametrize("i", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("with_tools", [False, True])
@pytest.mark.parametrize("gen", [False, True])
def test_chat_template_matches_transformers(tok, tmp_path_factory, i, with_tools, gen):
    transformers = pytest.importorskip("transformers")
    for label, t in _templates(tmp_path_factory, tok):
        d = tmp_path_factory.mktemp(label)
        t.save_pretrained(d)
        hf = transformers.AutoTokenizer.from_pretrained(str(d))
        tools = TOOLS if with_tools else None
        ours = t.apply_chat_template(CONVERSATIONS[i], tools=tools, add_generation_prompt=gen)
        ref = hf.apply_chat_template(CONVERSATIONS[i], tools=tools, add_generation_prompt=gen, tokenize=False)
        assert ours == ref, label


def test_a_chat_template_jinja_file_wins_over_the_config_copy(tok, tmp_path):
    """As in transformers: with both, chat_template.jinja is the template (the config's copy was taken)."""
    tok.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").write_text("JINJA{{ messages[0]['content'] }}")
    msgs = [{"role": "user", "content": "hi"}]
    assert Tokenizer.from_pretrained(str(tmp_path)).apply_chat_template(msgs) == "JINJAhi"
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf.apply_chat_template(msgs, tokenize=False) == "JINJAhi"


def test_missing_template_and_files(tok, tmp_path):
    bare = Tokenizer(tok.tok, {"eos_token": "<|im_end|>"}, {}, path="bare")
    with pytest.raises(ValueError, match="chat_template"):
        bare.apply_chat_template([{"role": "user", "content": "x"}])
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Tokenizer.from_pretrained(str(tmp_path))
    assert CHATML_TEMPLATE in tok.config["chat_template"]


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json", "generation_config.json"])
def test_unreadable_tokenizer_files_are_named(tok, tmp_path, name):
    """A tokenizer file cut short is an error naming it (they were a bare JSONDecodeError, or the tokenizers
    library's 'EOF while parsing' with no file at all)."""
    tok.save_pretrained(tmp_path)
    path = tmp_path / name
    path.write_text(path.read_text()[:-5])
    why = "the tokenizers library can't read it" if name == "tokenizer.json" else "not valid JSON"
    with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}: {why}"):
        Tokenizer.from_pretrained(str(tmp_path))


def test_non_ascii_templates_round_trip_under_an_ascii_locale(tok, tmp_path):
    """tokenizer_config.json is written with ensure_ascii=False (as transformers does), so its files are UTF-8 whatever
    the locale: under LC_ALL=C without UTF-8 mode, open()'s default encoding is ASCII and a template with '¡' failed
    to save (UnicodeEncodeError), and a chat_template.jinja with one failed to load."""
    import subprocess
    import sys
    template = "¡Hola, {{ messages[0]['content'] }}! 工具"
    code = (f"import sys; sys.path.insert(0, {os.getcwd()!r})\n"
            "from tooln1_min.tokenizer import Tokenizer\n"
            f"t = Tokenizer.from_pretrained({str(tmp_path / 'a')!r})\n"
            f"t.config['chat_template'] = {ascii(template)}\n"
            f"t.save_pretrained({str(tmp_path / 'b')!r})\n"
            f"open({str(tmp_path / 'a' / 'chat_template.jinja')!r}, 'w', encoding='utf-8').write({ascii(template)})\n"
            f"for d in ('a', 'b'):\n"
            f"    u = Tokenizer.from_pretrained({str(tmp_path)!r} + '/' + d)\n"
            "    print(u.apply_chat_template([{'role': 'user', 'content': 'x'}]))\n")
    tok.save_pretrained(tmp_path / "a")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONIOENCODING": "utf-8"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, encoding="utf-8")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["¡Hola, x! 工具"] * 2
