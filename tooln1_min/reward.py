"""Rewards for tool-calling completions: Tool-N1's binary reward and the variants of its reward study.

All reward functions share one signature, `fn(completion: str, answer: list[dict]) -> float`, where `answer` is
the ground-truth list of `{"name": ..., "arguments": {...}}` calls (`[]` means "no function applies").

`tool_call_reward` ("binary", the default) reproduces the scorer Tool-N1 trained with (its verl `toolcall`
`compute_score_v0` for Qwen prompts, paper Eq. 5: reward 1 iff the format is right AND the calls match):

1. If the text contains `<|im_start|>assistant`, only what follows its last occurrence is scored (so a whole
   decoded prompt + completion can be passed in; the system prompt's own example tags are then ignored).
2. The last `<tool_call>...</tool_call>` block, as `re.finditer(r"<tool_call>(.*?)</tool_call>", DOTALL)` would
   find it, is JSON-parsed after stripping. A string result is parsed once more; a dict becomes `[dict]`.
3. `<think>` and `</think>` must both appear somewhere in the scored text (presence only, in any order).
4. Every call must be a dict holding `name` and `arguments` (extra keys are ignored).
5. Predicted and true calls are compared as multisets of `(name, json.dumps(arguments, sort_keys=True))`:
   call order and key order don't matter, value types do (5 != 5.0, true != 1), list order matters.
   An empty prediction matches only an empty answer.

Where the original raised (a non-list JSON value such as `5`, RecursionError on deeply nested JSON, ValueError on
integers past Python's 4300-digit limit, unhashable names, a malformed answer) this returns 0.0 instead: a reward
must never take a training step down. NaN/Infinity are accepted, as `json.loads` accepts them in the original;
they compare through `json.dumps` as the strings "NaN"/"Infinity", so NaN arguments match NaN arguments.
One quirk is kept on purpose: a block holding a JSON string that itself encodes an empty string (`"\\"\\""`)
iterates as an empty call list in the original, so it matches an empty answer; here too.

The regex in the original is quadratic on text with many unclosed `<tool_call>` tags; `_last_block` finds the
same block with `str.find` in linear time, so a 1 MB adversarial completion scores in milliseconds.

Reward-study variants (paper Sec. 5.4.1; select with `get_reward_fn(name)` or `REWARDS[name]`):

- "format_partial": 0.2 * think + 0.8 * calls_match. `think` means the think tags are present (step 2 alone: as
  in Tool-N1's code, the 0.2 does not ask for a well-formed call list); `calls_match` is step 5 alone, so a right
  call without think tags still earns 0.8. Possible values: 0, 0.2, 0.8, 1.0.
- "name_partial": 0.2 * think + 0.2 * names_match + 0.6 * calls_match, where `names_match` compares the
  multisets of function names only (it also holds when both lists are empty). Possible values: 0, 0.2, 0.4,
  0.6, 0.8, 1.0.
- "strict": like "binary" but the scored text (after step 1, with trailing `<|im_end|>`/`<|endoftext|>` removed)
  must be exactly one `<think>...</think>` followed by exactly one `<tool_call>...</tool_call>`, with nothing
  but whitespace before, between and after. Values: 0 or 1.
"""
import json
from collections import Counter

ASSISTANT_MARKER = "<|im_start|>assistant"
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
END_TOKENS = ("<|im_end|>", "<|endoftext|>")


def assistant_part(completion: str) -> str:
    """What follows the last `<|im_start|>assistant`, or the whole text when there is none."""
    index = completion.rfind(ASSISTANT_MARKER)
    return completion if index == -1 else completion[index + len(ASSISTANT_MARKER):]


def _last_block(text: str) -> str | None:
    """Content of the last non-overlapping `<tool_call>(.*?)</tool_call>` match, in linear time.

    finditer starts each match at the first open tag after the previous match and ends it at the first close tag
    after that; once an open tag has no close tag after it, no later one can have one either, so we stop.
    """
    last, pos = None, 0
    while True:
        start = text.find(CALL_OPEN, pos)
        if start == -1:
            return last
        end = text.find(CALL_CLOSE, start + len(CALL_OPEN))
        if end == -1:
            return last
        last, pos = text[start + len(CALL_OPEN):end], end + len(CALL_CLOSE)


def parse_tool_calls(text: str) -> list | None:
    """The last tool_call block of `text` as a list of calls, or None when it is absent or not valid JSON.

    Follows the original: one extra json.loads for a string, a dict becomes a one-element list. Elements are not
    checked here (see `_well_formed`). Never raises.
    """
    block = _last_block(text)
    if block is None:
        return None
    try:
        value = json.loads(block.strip())
        if isinstance(value, str):
            value = json.loads(value)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; so is the int digit limit
        return None
    if isinstance(value, dict):
        return [value]
    if value == "":  # the original iterates a string: an empty one is an empty call list
        return []
    return value if isinstance(value, list) else None  # other scalars made the original crash


def _well_formed(calls) -> bool:
    return isinstance(calls, list) and all(isinstance(c, dict) and "name" in c and "arguments" in c
                                           for c in calls)


def has_think(text: str) -> bool:
    return THINK_OPEN in text and THINK_CLOSE in text


def calls_match(predicted: list, answer: list) -> bool:
    """Multiset equality of (name, canonical arguments JSON); False on anything the original would crash on."""
    if not (_well_formed(predicted) and _well_formed(answer)):
        return False
    if not predicted or not answer:
        return len(predicted) == len(answer)
    try:
        return (Counter((c["name"], json.dumps(c["arguments"], sort_keys=True)) for c in predicted)
                == Counter((c["name"], json.dumps(c["arguments"], sort_keys=True)) for c in answer))
    except (TypeError, ValueError, RecursionError):  # unhashable name, mixed-type keys, huge int, deep nesting
        return False


def names_match(predicted: list, answer: list) -> bool:
    """Multiset equality of function names only (the name-partial reward's middle term)."""
    if not (_well_formed(predicted) and _well_formed(answer)):
        return False
    try:
        return Counter(c["name"] for c in predicted) == Counter(c["name"] for c in answer)
    except TypeError:  # unhashable name
        return False


def _answer_list(answer) -> list | None:
    # verl stores the ground truth as a JSON string and the original json.loads it; accept that form too.
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except (ValueError, RecursionError):
            return None
    return answer if _well_formed(answer) else None


def format_ok(completion: str) -> bool:
    """The format half of Tool-N1's reward (steps 1-4 above): think tags present and the last tool_call block a
    well-formed call list. The per-step `format` column, the binary and the strict reward use this one test (the
    partial variants pay their 0.2 for the think tags alone, as Tool-N1's code does)."""
    if not isinstance(completion, str):
        return False
    text = assistant_part(completion)
    return _format_ok(text, parse_tool_calls(text))


def _format_ok(text: str, predicted) -> bool:
    return _well_formed(predicted) and has_think(text)


def _score_parts(completion, answer) -> tuple[bool, bool, bool, bool]:
    """(think, format_ok, names_ok, calls_ok) for one completion; all False for non-str input (the last two for a
    bad answer)."""
    if not isinstance(completion, str):
        return False, False, False, False
    text = assistant_part(completion)
    predicted, answer = parse_tool_calls(text), _answer_list(answer)
    think, fmt = has_think(text), _format_ok(text, predicted)
    if predicted is None or answer is None:
        return think, fmt, False, False
    return think, fmt, names_match(predicted, answer), calls_match(predicted, answer)


def tool_call_reward(completion: str, answer: list[dict]) -> float:
    """Tool-N1's binary reward: 1.0 iff think tags are present and the last tool_call block matches `answer`."""
    try:
        _, format_ok, _, calls_ok = _score_parts(completion, answer)
        return 1.0 if format_ok and calls_ok else 0.0
    except Exception:  # a reward must never crash a training step; every known crash is handled above
        return 0.0


def format_partial_reward(completion: str, answer: list[dict]) -> float:
    """0.2 for the think tags, plus 0.8 when the calls match."""
    try:
        think, _, _, calls_ok = _score_parts(completion, answer)
        return round(0.2 * think + 0.8 * calls_ok, 6)
    except Exception:
        return 0.0


def name_partial_reward(completion: str, answer: list[dict]) -> float:
    """0.2 for the think tags, 0.2 when the function names match, 0.6 when the whole calls match."""
    try:
        think, _, names_ok, calls_ok = _score_parts(completion, answer)
        return round(0.2 * think + 0.2 * names_ok + 0.6 * calls_ok, 6)
    except Exception:
        return 0.0


def strict_format(text: str) -> bool:
    """Exactly `<think>...</think>` then `<tool_call>...</tool_call>`, only whitespace around and between."""
    body = text.strip()
    trimmed = True
    while trimmed:  # the sampler may leave the end-of-turn token(s) in the decoded text
        trimmed = False
        for token in END_TOKENS:
            if body.endswith(token):
                body, trimmed = body[:-len(token)].rstrip(), True
    if any(body.count(tag) != 1 for tag in (THINK_OPEN, THINK_CLOSE, CALL_OPEN, CALL_CLOSE)):
        return False
    if not (body.startswith(THINK_OPEN) and body.endswith(CALL_CLOSE)):
        return False
    end_think, call = body.index(THINK_CLOSE) + len(THINK_CLOSE), body.index(CALL_OPEN)
    return end_think <= call and body[end_think:call].strip() == ""  # (a "</think>" inside the call is not one)


def strict_reward(completion: str, answer: list[dict]) -> float:
    """The binary reward with the strict single-think, single-call layout in place of tag presence."""
    try:
        if not isinstance(completion, str) or not strict_format(assistant_part(completion)):
            return 0.0
        return tool_call_reward(completion, answer)
    except Exception:
        return 0.0


REWARDS = {
    "binary": tool_call_reward,
    "format_partial": format_partial_reward,
    "name_partial": name_partial_reward,
    "strict": strict_reward,
}


def get_reward_fn(name: str = "binary"):
    """The reward function called `name`; one of REWARDS' keys."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; expected one of {sorted(REWARDS)}")
    return REWARDS[name]
