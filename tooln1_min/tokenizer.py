"""Tokenizer and chat template for Qwen-style checkpoints.

Wraps `tokenizers.Tokenizer` (tokenizer.json) and renders the checkpoint's own jinja chat template the way
transformers' `apply_chat_template` does, so every Qwen release is handled by its own template rather than a
hard-coded copy of one. Also builds small byte-level BPE tokenizers that carry Qwen's added tokens (tests and the
CPU demo train their own; nothing is downloaded).
"""
import json
import os
import re
from datetime import datetime
from functools import lru_cache

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as _HFTokenizer

from .model import read_json

# Qwen2.5's added tokens in id order (151643..151664 in the real vocabulary). The flag is the `special` bit:
# <tool_call>/</tool_call> and the FIM tokens are NOT special, so decode(skip_special_tokens=True) keeps them.
QWEN_ADDED_TOKENS = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True),
    ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True),
    ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
]
# Qwen2's pre-tokenizer split (the GPT-4-like regex with single digits).
QWEN_SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                    r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# A ChatML template with tools, written for this project (Qwen2.5's layout: tools listed as JSON lines in the
# system turn, assistant tool_calls as <tool_call> blocks, consecutive tool messages merged into one user turn).
CHATML_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] %}"
    "{%- set rest = messages[1:] %}{%- else %}{%- set system = 'You are a helpful assistant.' %}"
    "{%- set rest = messages %}{%- endif %}"
    "{{- '<|im_start|>system\\n' + system }}"
    "{%- if tools %}{{- '\\n\\n# Tools\\n\\n<tools>' }}{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}"
    "{%- endfor %}{{- '\\n</tools>' }}{%- endif %}{{- '<|im_end|>\\n' }}"
    "{%- for m in rest %}"
    "{%- if m['role'] == 'tool' %}"
    "{%- if loop.first or rest[loop.index0 - 1]['role'] != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + m['content'] + '\\n</tool_response>' }}"
    "{%- if loop.last or rest[loop.index0 + 1]['role'] != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- else %}{{- '<|im_start|>' + m['role'] + '\\n' + (m['content'] or '') }}"
    "{%- for call in m.get('tool_calls') or [] %}{%- if call.function is defined %}{%- set call = call.function %}"
    "{%- endif %}{{- '\\n<tool_call>\\n{\"name\": \"' + call.name + '\", \"arguments\": ' + (call.arguments | tojson)"
    " + '}\\n</tool_call>' }}{%- endfor %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@lru_cache(maxsize=16)
def _compile_template(source: str):
    # Same environment as transformers: sandboxed, trim/lstrip blocks, loop controls, non-escaping tojson.
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def _token_str(value):
    # tokenizer_config.json stores special tokens as plain strings or as {"content": ...} dicts.
    return value.get("content") if isinstance(value, dict) else value


class Tokenizer:
    """A checkpoint's tokenizer: `encode`, `decode`, `stop_token_ids`, `apply_chat_template`."""

    def __init__(self, tok: _HFTokenizer, config: dict | None = None, generation_config: dict | None = None,
                 path: str = "<memory>"):
        self.tok, self.config, self.path = tok, dict(config or {}), path
        self.generation_config = dict(generation_config or {})
        self.chat_template = self.config.get("chat_template")
        if isinstance(self.chat_template, list):  # multi-template form: [{"name": "default", "template": ...}]
            named = {t["name"]: t["template"] for t in self.chat_template}
            self.chat_template = named.get("default")

    @classmethod
    def from_pretrained(cls, path: str) -> "Tokenizer":
        tj = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(tj):
            raise FileNotFoundError(f"{tj} not found: the checkpoint folder needs a tokenizer.json")
        config, gen = {}, {}
        if os.path.isfile(os.path.join(path, "tokenizer_config.json")):
            config = read_json(os.path.join(path, "tokenizer_config.json"))
        if os.path.isfile(os.path.join(path, "chat_template.jinja")):  # newer transformers saves it apart,
            with open(os.path.join(path, "chat_template.jinja"), encoding="utf-8") as f:  # and prefers it
                config["chat_template"] = f.read()
        if os.path.isfile(os.path.join(path, "generation_config.json")):
            gen = read_json(os.path.join(path, "generation_config.json"))
        try:
            tok = _HFTokenizer.from_file(tj)
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception, naming no file
            raise ValueError(f"{tj}: the tokenizers library can't read it ({e})") from None
        return cls(tok, config, gen, path)

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (embedding matrices are often padded past this)."""
        return self.tok.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.tok.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        # No BOS: Qwen has none. Added tokens in the text (e.g. <|im_start|>) map to their ids.
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    @property
    def stop_token_ids(self) -> list[int]:
        """eos ids from generation_config.json (Qwen2.5-Instruct: 151645 and 151643) plus tokenizer_config's eos."""
        ids = self.generation_config.get("eos_token_id", [])
        ids = [ids] if isinstance(ids, int) else list(ids)
        eos = _token_str(self.config.get("eos_token"))
        if eos is not None and self.token_to_id(eos) is not None and self.token_to_id(eos) not in ids:
            ids.append(self.token_to_id(eos))
        if not ids:
            raise ValueError(f"{self.path}: no eos_token_id in generation_config.json and no eos_token in "
                             "tokenizer_config.json, so generation would never stop")
        return ids

    @property
    def pad_token_id(self) -> int:
        pad = _token_str(self.config.get("pad_token")) or "<|endoftext|>"
        pid = self.token_to_id(pad)
        return pid if pid is not None else self.stop_token_ids[0]

    def apply_chat_template(self, messages: list[dict], tools: list[dict] | None = None,
                            add_generation_prompt: bool = False, **kwargs) -> str:
        """Render the checkpoint's chat template exactly as transformers' apply_chat_template(tokenize=False)."""
        if not self.chat_template:
            raise ValueError(f"{self.path}: tokenizer_config.json has no chat_template; this checkpoint cannot "
                             "render conversations (use an -Instruct checkpoint or add a template)")
        special = {k: _token_str(v) for k, v in self.config.items()
                   if k.endswith("_token") and isinstance(_token_str(v), (str, type(None)))}
        return _compile_template(self.chat_template).render(
            messages=messages, tools=tools, add_generation_prompt=add_generation_prompt, **special, **kwargs)

    def save_pretrained(self, path: str):
        os.makedirs(path, exist_ok=True)
        self.tok.save(os.path.join(path, "tokenizer.json"))
        with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(self.config, f, indent=2, ensure_ascii=False)
        if self.generation_config:
            with open(os.path.join(path, "generation_config.json"), "w", encoding="utf-8") as f:
                json.dump(self.generation_config, f, indent=2)


# For the CPU demo: pieces may span words (only newlines, single digits and the `keep_whole` strings are cut out),
# so BPE learns the fixed Tool-N1 instructions as a handful of tokens and a tiny model sees ~200-token prompts
# instead of ~500. The demo keeps every argument value of its corpus whole, so a value reads as the same token in
# the query and in the answer: copying it is copying one token, as a real model's word-level vocabulary allows.
CHUNK_SPLIT_REGEX = r'\n|\d'


def chunk_split_regex(keep_whole=()) -> str:
    """The demo's pre-tokenizer pattern: CHUNK_SPLIT_REGEX plus each keep_whole string as a whole word. The words
    are one group behind a single word boundary, so the regex tries them only where a word starts (a prompt encodes
    3x faster than with one `\\bword\\b` alternative each; the same pieces)."""
    words = sorted({w for w in keep_whole if w.strip()}, key=lambda w: (-len(w), w))  # longest first wins
    if not words:
        return CHUNK_SPLIT_REGEX
    return CHUNK_SPLIT_REGEX + r"|\b(?:" + "|".join(re.escape(w) for w in words) + r")\b"


def train_tokenizer(texts, vocab_size: int = 2000, chat_template: str = CHATML_TEMPLATE,
                    split: str = "qwen", keep_whole=()) -> Tokenizer:
    """Train a small byte-level BPE with Qwen2.5's added tokens and special flags.

    split="qwen" uses Qwen2's pre-tokenizer regex; split="chunks" the demo's cross-word pieces (above), with the
    keep_whole strings (e.g. a corpus's argument values) always cut out as their own pieces.
    The added tokens come right after the learned vocabulary (so ids are small, unlike Qwen's 151643+).
    Used by the tests and by the CPU demo; a real run loads the checkpoint's own tokenizer.json.
    """
    if split not in ("qwen", "chunks"):
        raise ValueError(f"split must be 'qwen' or 'chunks', got {split!r}")
    tok = _HFTokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX if split == "qwen" else chunk_split_regex(keep_whole)),
                             behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    n_added = len(QWEN_ADDED_TOKENS)
    trainer = trainers.BpeTrainer(vocab_size=max(vocab_size - n_added, 257), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    for content, special in QWEN_ADDED_TOKENS:  # one by one so ids follow the list order
        tok.add_tokens([AddedToken(content, normalized=False, special=special)])
    im_end, eot = tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")
    config = {"add_bos_token": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
              "unk_token": None, "chat_template": chat_template, "model_max_length": 131072,
              # Qwen2Tokenizer would rebuild Qwen's own pre-tokenizer in some transformers versions; the generic
              # fast class loads tokenizer.json exactly as written.
              "tokenizer_class": "Qwen2Tokenizer" if split == "qwen" else "PreTrainedTokenizerFast",
              "clean_up_tokenization_spaces": False, "errors": "replace", "split_special_tokens": False}
    gen = {"bos_token_id": eot, "pad_token_id": eot, "eos_token_id": [im_end, eot]}
    return Tokenizer(tok, config, gen)
