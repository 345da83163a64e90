"""Evaluate a checkpoint: BFCL single-turn, ACEBench Normal or API-Bank level-1 (Tool-N1's prompts), or held-out data.

    python eval.py --model ckpt --bench bfcl                               # the 13 single-turn categories
    python eval.py --model ckpt --bench bfcl --categories simple_python,multiple --limit 50
    python eval.py --rescore bfcl_results.json                             # re-score stored outputs, no model
    python eval.py --model ckpt --data test.jsonl --out heldout.json       # exact match, format rate, length

BFCL prompts follow the structure of Tool-N1's BFCL handler (a BFCL prompting handler for Qwen with its own
_format_prompt), in the wording of the paper's template (README, "Prompts": not the handler's exact text):
  - the system turn is replaced by the Tool-N1 thinking template (data.system_prompt, with the empty-call note).
    The handler overwrote BFCL's system message wholesale, so a system message that ships with a question
    (some live entries have one) is dropped, not merged.
  - the function docs are BFCL's, names verbatim (math.hypot stays math.hypot), with the language hints that
    BFCL's harness adds before any handler sees them (Java/JavaScript parameters become strings with their real
    type in the description). --no-language-hints lists the raw docs instead. The checker always gets the raw docs.
  - the question's first turn follows, rendered by the checkpoint's chat template with the generation prompt.
Decoding is greedy; the FIRST <tool_call> block is the answer (bfcl.decode_tool_calls). A prompt that leaves no
room to generate within the model's max_position_embeddings is skipped and counted as a failure.
"""
import argparse
import json
import os
import re
import time

import torch

from tooln1_min import acebench, apibank, bfcl
from tooln1_min.bfcl import language_hints
from tooln1_min.data import CASES, eval_messages, load_records
from tooln1_min.model import Transformer
from tooln1_min.rollout import encode_prompts, heldout_eval
from tooln1_min.sampler import generate
from tooln1_min.tokenizer import Tokenizer


def log(msg: str):
    print(f"[eval] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------------------
# Model


def pick_device(device: str | None, dtype: str | None) -> tuple[str, torch.dtype]:
    """GPU when there is one; bf16 there (as the paper's runs), fp32 on CPU where bf16 matmuls are slow."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    if dtype is None:
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    return device, {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]


def load_checkpoint(path: str, device: str, dtype: torch.dtype):
    if not path:
        raise SystemExit("--model is required: a Hugging Face checkpoint folder (config.json, safetensors, "
                         "tokenizer.json)")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise SystemExit(f"--model {path!r}: not a Hugging Face checkpoint folder (no config.json)")
    t0 = time.time()
    model = Transformer.from_pretrained(path, dtype=dtype, device=device).eval().fuse_projections()
    tokenizer = Tokenizer.from_pretrained(path)
    log(f"loaded {path} ({model.num_params():,} params, {dtype}, {device}) in {time.time() - t0:.0f} s")
    return model, tokenizer


# ---------------------------------------------------------------------------------------------------------
# BFCL prompts

def bfcl_messages(entry: dict, category: str, hints: bool = True) -> list[dict]:
    """Tool-N1's evaluation prompt (data.eval_messages) over the docs as BFCL shows them, + the first turn."""
    docs = language_hints(entry["function"], category) if hints else entry["function"]
    return eval_messages(docs, entry["question"][0])  # single-turn categories hold exactly one turn


def bfcl_prompt(tokenizer, entry: dict, category: str, hints: bool = True) -> str:
    return tokenizer.apply_chat_template(bfcl_messages(entry, category, hints), add_generation_prompt=True)


# ---------------------------------------------------------------------------------------------------------
# BFCL scoring: one function for fresh runs and for --rescore, so both give the same numbers


def score_output(entry: dict, output: dict, category: str) -> dict:
    """Fill output's calls/ok/reason from its raw text; a skipped prompt is a failure."""
    if output.get("skipped"):
        return {**output, "calls": None, "ok": False, "reason": output.get("reason") or "prompt too long"}
    calls = bfcl.decode_tool_calls(output["text"], any_name=True)
    try:
        ok, reason = bfcl.ast_check(entry["function"], calls, entry.get("ground_truth"), category)
    except ValueError as e:  # a data/checker mismatch must not cost a finished generation run; it is recorded
        ok, reason = False, f"checker error: {e}"
    return {**output, "calls": calls, "ok": ok, "reason": reason}


def generate_category(model, tokenizer, entries, category, args) -> list[dict]:
    """Greedy outputs for one BFCL category, one dict per entry (in entry order)."""
    return generate_outputs(model, tokenizer, [({"id": e["id"], "category": category},
                                                bfcl_messages(e, category, not args.no_language_hints))
                                               for e in entries], args)


def generate_outputs(model, tokenizer, items, args) -> list[dict]:
    """Greedy outputs for [(output dict, chat messages)], in order. A prompt that leaves no room to generate
    within the model's positions is skipped (scored as a failure)."""
    max_positions = model.config.max_position_embeddings
    outputs, prompts, todo = [], [], []
    for base, messages in items:
        ids = tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
        out = {**base, "prompt_tokens": len(ids)}
        if len(ids) >= max_positions:  # the sampler needs at least one free position to generate into
            out.update(skipped=True, text=None,
                       reason=f"prompt too long: {len(ids)} tokens, model max_position_embeddings {max_positions}")
        else:
            prompts.append(ids)
            todo.append(out)
        outputs.append(out)
    samples = generate(model, prompts, n=1, max_new_tokens=args.max_new_tokens, temperature=0.0,
                       stop_token_ids=tokenizer.stop_token_ids, vocab_limit=tokenizer.vocab_size,
                       max_batch_size=args.batch_size, progress=True) if prompts else []
    for out, (sample,) in zip(todo, samples):
        out.update(text=tokenizer.decode(sample.token_ids, skip_special_tokens=True),  # keeps <tool_call>
                   completion_tokens=len(sample.token_ids), finish_reason=sample.finish_reason)
    return outputs


def bfcl_report(outputs: list[dict]) -> dict:
    """Summary over scored outputs (bfcl.summarize), plus what was skipped or broke the checker, per category."""
    passed, skipped, errors = {}, {}, {}
    for out in outputs:
        passed.setdefault(out["category"], []).append(out["ok"])
        skipped[out["category"]] = skipped.get(out["category"], 0) + bool(out.get("skipped"))
        errors[out["category"]] = errors.get(out["category"], 0) + out["reason"].startswith("checker error")
    results = {c: passed[c] for c in bfcl.CATEGORIES if c in passed}
    return {**bfcl.summarize(results), "skipped_too_long": skipped, "checker_errors": errors}


def print_report(summary: dict):
    print(bfcl.format_table(summary))
    for key, what in (("skipped_too_long", "prompt too long (counted as failures)"),
                      ("checker_errors", "checker errors (counted as failures)")):
        counts = {c: n for c, n in summary[key].items() if n}
        if counts:
            print(f"{what}: {sum(counts.values())} ({', '.join(f'{c} {n}' for c, n in counts.items())})")


def parse_categories(text: str | None) -> list[str]:
    if not text:
        return list(bfcl.CATEGORIES)
    names = list(dict.fromkeys(c.strip() for c in text.split(",") if c.strip()))  # a repeat runs once
    unknown = [c for c in names if c not in bfcl.CATEGORIES]
    if unknown:
        raise SystemExit(f"--categories: unknown BFCL categor{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
                         f"valid single-turn categories: {','.join(bfcl.CATEGORIES)}")
    return names


def find_data(bfcl_dir: str | None) -> str:
    try:
        return bfcl.find_bfcl_dir(bfcl_dir)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None


def run_bfcl(args) -> dict:
    categories = parse_categories(args.categories)  # bad names and missing data fail before the model loads
    data_dir = find_data(args.bfcl_dir)
    try:
        loaded = [bfcl.load_category(data_dir, c, args.limit) for c in categories]
    except (OSError, ValueError) as e:
        raise SystemExit(f"--bfcl-dir {data_dir}: {e}") from None
    device, dtype = pick_device(args.device, args.dtype)
    model, tokenizer = load_checkpoint(args.model, device, dtype)
    outputs, t_all = [], time.time()
    path = args.out or "bfcl_results.json"
    for i, (category, entries) in enumerate(zip(categories, loaded)):
        log(f"[{i + 1}/{len(categories)}] {category}: {len(entries)} entries, greedy, <= {args.max_new_tokens} "
            "new tokens")
        t0 = time.time()
        scored = [score_output(e, o, category)
                  for e, o in zip(entries, generate_category(model, tokenizer, entries, category, args))]
        correct = sum(o["ok"] for o in scored)
        log(f"[{i + 1}/{len(categories)}] {category}: {correct}/{len(scored)} correct "
            f"({100 * correct / max(len(scored), 1):.1f}%) in {time.time() - t0:.0f} s")
        outputs += scored
        result = {"bench": "bfcl", "model": args.model, "bfcl_dir": data_dir, "summary": bfcl_report(outputs),
                  "outputs": outputs,
                  "settings": {"categories": categories[:i + 1], "limit": args.limit,
                               "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "device": device,
                               "dtype": str(dtype).split(".")[-1], "language_hints": not args.no_language_hints,
                               "seconds": round(time.time() - t_all)}}
        # after each category, so a crash later keeps the finished ones (--rescore reads a partial file too)
        write_json(path, result, quiet=i + 1 < len(categories))
    print_report(result["summary"])
    return result


def rescore(args) -> dict:
    """Recompute decoded calls, pass/fail and the summary from a results file's raw texts; no model needed."""
    try:
        with open(args.rescore, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"--rescore {args.rescore!r}: cannot read it as a results JSON ({e})") from None
    if not isinstance(stored, dict) or stored.get("bench") not in ("bfcl", "acebench", "apibank") or \
            not isinstance(stored.get("outputs"), list):
        raise SystemExit(f"--rescore {args.rescore!r}: not a BFCL results file written by eval.py, nor an ACEBench or "
                         "API-Bank one (expected 'bench': 'bfcl', 'acebench' or 'apibank' and an 'outputs' list)")
    if stored["bench"] == "apibank":
        return rescore_apibank(args, stored)
    for i, out in enumerate(stored["outputs"]):
        if not (isinstance(out, dict) and isinstance(out.get("id"), str) and isinstance(out.get("category"), str)
                and (isinstance(out.get("text"), str) or out.get("skipped"))):
            raise SystemExit(f"--rescore {args.rescore!r}: output {i} is not an object with string 'id', "
                             "'category' and 'text' (the raw model output; null only when 'skipped')")
    if stored["bench"] == "acebench":
        return rescore_acebench(args, stored)
    recorded = stored.get("bfcl_dir")  # the run's data folder, when this machine has it too
    data_dir = find_data(args.bfcl_dir or (recorded if recorded and os.path.isdir(recorded) else None))
    entries = {}  # id -> entry, for the categories the file holds
    for category in dict.fromkeys(o["category"] for o in stored["outputs"]):
        try:
            bfcl.category_kind(category)
        except ValueError as e:
            raise SystemExit(f"--rescore {args.rescore!r}: {e}") from None
        entries.update({e["id"]: e for e in bfcl.load_category(data_dir, category)})
    outputs = []
    for out in stored["outputs"]:
        if out["id"] not in entries:
            raise SystemExit(f"--rescore: entry {out['id']!r} is not in the BFCL data at {data_dir}")
        outputs.append(score_output(entries[out["id"]], out, out["category"]))
    summary = bfcl_report(outputs)
    print_report(summary)
    result = {**stored, "bfcl_dir": data_dir, "summary": summary, "outputs": outputs}
    if args.out:
        write_json(args.out, result)
    return result


# ---------------------------------------------------------------------------------------------------------
# ACEBench Normal (Atom + Single-turn), scored as its official checker scores (tooln1_min/acebench.py)


def score_acebench(entry: dict, output: dict) -> dict:
    """Fill output's calls/ok/reason from its raw text (the first <tool_call> block, decoded as for BFCL), and
    whether the ground truth itself passes the same checker (the ceiling)."""
    fns, gt, category = entry["record"]["function"], entry["ground_truth"], entry["category"]
    ceiling_ok = acebench.ace_check(fns, acebench.ground_truth_calls(gt), gt, category)[0]
    if output.get("skipped"):
        return {**output, "calls": None, "ok": False, "reason": output.get("reason") or "prompt too long",
                "ceiling_ok": ceiling_ok}
    calls = bfcl.decode_tool_calls(output["text"])
    ok, reason = acebench.ace_check(fns, calls, gt, category)
    return {**output, "calls": calls, "ok": ok, "reason": reason, "ceiling_ok": ceiling_ok}


def acebench_categories(text: str | None) -> list[str]:
    names = [c.strip() for c in (text or "").split(",") if c.strip()] or list(acebench.CATEGORIES)
    unknown = [c for c in names if c not in acebench.CATEGORIES]
    if unknown:
        raise SystemExit(f"--categories: unknown ACEBench categories {unknown}; valid: {','.join(acebench.CATEGORIES)}")
    return list(dict.fromkeys(names))


def load_acebench_entries(args, categories) -> list[dict]:
    if not args.acebench_dir:
        raise SystemExit("--bench acebench needs --acebench-dir: a checkout of the ACEBench repository")
    entries = acebench.load_acebench(args.acebench_dir, args.lang, categories)
    if args.limit:
        entries = [e for c in categories for e in [x for x in entries if x["category"] == c][:args.limit]]
    return entries


def print_acebench(summary: dict):
    print("ACEBench Normal          accuracy   ceiling   (ceiling: the ground truth through the same checker)")
    for c, r in summary["categories"].items():
        print(f"  {c:<38}{r['accuracy']:>7.1%}  {r['ceiling']:>7.1%}   ({r['total']})")
    for key, label in (("atom", "Atom (mean of 6)"), ("single_turn", "Single-turn (mean of 2)"),
                       ("normal", "Atom + Single-turn (mean)")):
        if summary[key]["accuracy"] is not None:
            print(f"  {label:<38}{summary[key]['accuracy']:>7.1%}  {summary[key]['ceiling']:>7.1%}")
    o = summary["overall"]
    if o["total"]:
        print(f"  {'all records':<38}{o['accuracy']:>7.1%}  {o['ceiling']:>7.1%}   ({o['total']})")
    else:
        print(f"  {'all records':<38}{'-':>7}  {'-':>7}   (0)")


def run_acebench(args) -> dict:
    categories = acebench_categories(args.categories)
    entries = load_acebench_entries(args, categories)  # a wrong folder fails before the model loads
    device, dtype = pick_device(args.device, args.dtype)
    model, tokenizer = load_checkpoint(args.model, device, dtype)
    log(f"ACEBench ({args.lang}): {len(entries)} records in {len(categories)} categories, greedy, "
        f"<= {args.max_new_tokens} new tokens")
    t0 = time.time()
    items = [({"id": e["id"], "category": e["category"]}, acebench.acebench_messages(e["record"])) for e in entries]
    outputs = [score_acebench(e, o) for e, o in zip(entries, generate_outputs(model, tokenizer, items, args))]
    summary = acebench.acebench_report(outputs)
    print_acebench(summary)
    result = {"bench": "acebench", "model": args.model, "acebench_dir": os.path.abspath(args.acebench_dir),
              "lang": args.lang, "summary": summary, "outputs": outputs,
              "settings": {"categories": categories, "limit": args.limit, "max_new_tokens": args.max_new_tokens,
                           "device": device, "dtype": str(dtype).split(".")[-1], "seconds": round(time.time() - t0)}}
    write_json(args.out or "acebench_results.json", result)
    return result


def rescore_acebench(args, stored: dict) -> dict:
    args.acebench_dir = args.acebench_dir or stored.get("acebench_dir")
    args.lang = stored.get("lang", args.lang)
    cats = list(dict.fromkeys(o["category"] for o in stored["outputs"]))
    entries = {e["id"]: e for e in load_acebench_entries(argparse.Namespace(**{**vars(args), "limit": None}),
                                                         acebench_categories(",".join(cats)))}
    missing = [o["id"] for o in stored["outputs"] if o["id"] not in entries]
    if missing:
        raise SystemExit(f"--rescore: {missing[:3]} not in the ACEBench data at {args.acebench_dir}")
    outputs = [score_acebench(entries[o["id"]], o) for o in stored["outputs"]]
    summary = acebench.acebench_report(outputs)
    print_acebench(summary)
    result = {**stored, "summary": summary, "outputs": outputs}
    if args.out:
        write_json(args.out, result)
    return result


# ---------------------------------------------------------------------------------------------------------
# API-Bank level-1, scored by running its own evaluation code (tooln1_min/apibank.py)


def apibank_samples(args) -> list[dict]:
    if not args.apibank_dir:
        raise SystemExit("--bench apibank needs --apibank-dir: the api-bank folder of AlibabaResearch/DAMO-ConvAI")
    try:
        apibank.check_folder(args.apibank_dir)
    except FileNotFoundError as e:
        raise SystemExit(f"--apibank-dir: {e}") from None
    path = args.apibank_json or os.path.join(args.apibank_dir, "json_test_data", "level-1-api.json")
    return apibank.load_apibank(path)[:args.limit]


def score_apibank(sample: dict, output: dict, apibank_dir: str) -> dict:
    ceiling = apibank.ceiling_ok(sample, apibank_dir)
    if output.get("skipped"):
        return {**output, "calls": None, "ok": False, "reason": output.get("reason") or "prompt too long",
                "ceiling_ok": ceiling}
    calls = bfcl.decode_tool_calls(output["text"])
    ok, reason = apibank.apibank_check(sample, calls, apibank_dir)
    return {**output, "calls": calls, "ok": ok, "reason": reason, "ceiling_ok": ceiling}


def apibank_report(outputs: list[dict]) -> dict:
    n = max(len(outputs), 1)
    per_api = {}
    for o in outputs:
        api = o.get("api") or "?"
        row = per_api.setdefault(api, {"correct": 0, "total": 0, "ceiling": 0})
        row["correct"] += o["ok"]
        row["total"] += 1
        row["ceiling"] += o["ceiling_ok"]
    return {"accuracy": sum(o["ok"] for o in outputs) / n, "ceiling": sum(o["ceiling_ok"] for o in outputs) / n,
            "correct": sum(o["ok"] for o in outputs), "total": len(outputs), "per_api": per_api}


def print_apibank(summary: dict, per_api: bool = False):
    print(f"API-Bank level-1 (Call)  accuracy {summary['accuracy']:.1%} ({summary['correct']}/{summary['total']})  "
          f"ceiling {summary['ceiling']:.1%} (the ground truth replayed offline through the same official code)")
    if per_api:
        for api, r in sorted(summary["per_api"].items()):
            print(f"  {api:<28}{r['correct']:>4}/{r['total']:<4} ceiling {r['ceiling']}")


def rescore_apibank(args, stored: dict) -> dict:
    args.apibank_dir = args.apibank_dir or stored.get("apibank_dir")
    samples = {(s["file"], s["id"]): s for s in apibank_samples(argparse.Namespace(**{**vars(args), "limit": None}))}
    outputs = []
    for o in stored["outputs"]:
        if not isinstance(o, dict) or (o.get("file"), o.get("id")) not in samples:
            raise SystemExit(f"--rescore: output {str(o)[:80]} is not a sample of the API-Bank test set")
        if not (isinstance(o.get("text"), str) or o.get("skipped")):
            raise SystemExit(f"--rescore {args.rescore!r}: output {str(o)[:80]} has no string 'text' (the raw model "
                             "output; null only when 'skipped')")
        outputs.append(score_apibank(samples[(o["file"], o["id"])], o, args.apibank_dir))
    summary = apibank_report(outputs)
    print_apibank(summary, args.per_api)
    result = {**stored, "summary": summary, "outputs": outputs}
    if args.out:
        write_json(args.out, result)
    return result


def run_apibank(args) -> dict:
    samples = apibank_samples(args)  # a wrong folder or file fails before the model loads
    device, dtype = pick_device(args.device, args.dtype)
    model, tokenizer = load_checkpoint(args.model, device, dtype)
    log(f"API-Bank level-1: {len(samples)} samples, greedy, <= {args.max_new_tokens} new tokens")
    t0 = time.time()
    items = [({"id": s["id"], "file": s["file"], "api": _expected_api(s)}, apibank.apibank_messages(s))
             for s in samples]
    generated = generate_outputs(model, tokenizer, items, args)
    outputs = [score_apibank(s, o, args.apibank_dir) for s, o in zip(samples, generated)]
    summary = apibank_report(outputs)
    print_apibank(summary, args.per_api)
    result = {"bench": "apibank", "model": args.model, "apibank_dir": os.path.abspath(args.apibank_dir),
              "summary": summary, "outputs": outputs,
              "settings": {"limit": args.limit, "max_new_tokens": args.max_new_tokens, "device": device,
                           "dtype": str(dtype).split(".")[-1], "seconds": round(time.time() - t0)}}
    write_json(args.out or "apibank_results.json", result)
    return result


def _expected_api(sample: dict) -> str | None:
    m = re.search(r"\[(\w+)\(", sample.get("expected_output") or "")
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------------------------------
# All three, in the paper's shape (Table 2 / Fig. 3)


def run_all(args) -> dict:
    """BFCL, API-Bank and ACEBench in one run; one summary table; each benchmark's own results file too."""
    parse_categories(args.categories)  # --categories selects BFCL's; the other two run whole
    find_data(args.bfcl_dir)
    apibank_samples(args)
    load_acebench_entries(args, acebench_categories(None))  # every location checked before the model loads
    out = args.out or "results"
    results = {}
    for name, run in (("bfcl", run_bfcl), ("apibank", run_apibank), ("acebench", run_acebench)):
        results[name] = run(argparse.Namespace(**{**vars(args), "out": os.path.join(out, f"{name}_results.json"),
                                                  "categories": args.categories if name == "bfcl" else None}))
    b, a, c = results["bfcl"]["summary"], results["apibank"]["summary"], results["acebench"]["summary"]

    def pct(x):
        return "     -" if x is None else f"{100 * x:6.2f}"
    print("\nTool-N1's benchmarks        accuracy %   ceiling %")
    for label, acc, ceil in (("BFCL Non-live", b["non_live"], None), ("BFCL Live", b["live"], None),
                             ("BFCL Overall", b["overall"], None),
                             ("API-Bank level-1", a["accuracy"], a["ceiling"]),
                             ("ACEBench Atom + Single-turn", c["normal"]["accuracy"], c["normal"]["ceiling"])):
        print(f"  {label:<28}{pct(acc):>9}   {pct(ceil):>9}")
    summary = {"bfcl": {k: b[k] for k in ("non_live", "live", "overall")}, "apibank": a, "acebench": c["normal"]}
    write_json(os.path.join(out, "summary.json"), summary)
    return {"bench": "all", "summary": summary, "results": results}


# ---------------------------------------------------------------------------------------------------------
# Held-out split: the training reward (rollout.heldout_eval)


def run_heldout(args) -> dict:
    if not os.path.isfile(args.data):
        raise SystemExit(f"--data {args.data!r}: no such file (a unified JSONL from python -m tooln1_min.data)")
    try:
        records = load_records(args.data)[:args.limit]
    except ValueError as e:
        raise SystemExit(f"--data: {e}") from None
    if not records:
        raise SystemExit(f"--data {args.data!r}: no records to evaluate")
    device, dtype = pick_device(args.device, args.dtype)
    model, tokenizer = load_checkpoint(args.model, device, dtype)
    max_prompt_len = model.config.max_position_embeddings - 1  # leave room for at least one new token
    how = "greedy" if args.samples == 1 else f"{args.samples} samples at T={args.temperature}"
    log(f"{args.data}: {len(records)} records, {how}, <= {args.max_new_tokens} new tokens")
    t0 = time.time()
    metrics, episodes = heldout_eval(model, tokenizer, records, max_new_tokens=args.max_new_tokens,
                                     max_prompt_len=max_prompt_len, temperature=args.temperature, n=args.samples,
                                     seed=args.seed, device=device, max_batch_size=args.batch_size, progress=True)
    log(f"done in {time.time() - t0:.0f} s")
    _, kept, _ = encode_prompts(tokenizer, records, max_prompt_len)  # the records the episodes index into
    print(f"held-out {args.data} ({metrics['count']} records, {how})")
    rows = [("exact-match accuracy", "accuracy", "{:.1%}"), ("format rate", "format_rate", "{:.1%}"),
            ("mean response length", "mean_response_len", "{:.1f}"),
            ("skipped (prompt too long)", "skipped_too_long", "{}")]
    if args.samples > 1:
        rows.insert(1, (f"pass@{args.samples}", "pass_at_n", "{:.1%}"))
    for label, key, fmt in rows:
        print(f"  {label:<28}{fmt.format(metrics[key]):>8}")
    for case in CASES:  # synthetic records name their case type
        if f"count_{case}" in metrics:
            label = f"{case} ({metrics[f'count_{case}']})"
            extra = f"   pass@{args.samples} {metrics[f'pass_at_n_{case}']:.1%}" if args.samples > 1 else ""
            print(f"    {label:<26}{metrics[f'accuracy_{case}']:>8.1%}{extra}")
    outputs = [{"id": kept[e.prompt_index]["id"], "text": e.text, "reward": e.reward, "format_ok": e.format_ok,
                "completion_tokens": len(e.completion_ids), "finish_reason": e.finish_reason} for e in episodes]
    result = {"bench": "heldout", "model": args.model, "data": args.data, "metrics": metrics, "outputs": outputs}
    write_json(args.out or "heldout_results.json", result)
    return result


def write_json(path: str, obj: dict, quiet: bool = False):
    """Write obj to path whole or not at all (a temporary file renamed over it: a full disk or a crash mid-write
    leaves the previous file). Text stays readable UTF-8 unless a model's output holds a lone surrogate escape
    ("\\ud83d", half an emoji), which UTF-8 cannot carry: then the file is ASCII with JSON escapes."""
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = json.dumps(obj, indent=1).encode("ascii")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if not quiet:
        log(f"wrote {path}")


# ---------------------------------------------------------------------------------------------------------
# Command line


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="Hugging Face checkpoint folder")
    p.add_argument("--bench", choices=["bfcl", "acebench", "apibank", "all"],
                   help="benchmark to run (all: the three, with --bfcl-dir or bfcl-eval, --acebench-dir, --apibank-dir)")
    p.add_argument("--data", help="held-out unified JSONL, scored with the training reward")
    p.add_argument("--rescore", metavar="RESULTS_JSON", help="re-score a BFCL results file (no model)")
    p.add_argument("--bfcl-dir", help="folder with BFCL_v4_*.json (default: the installed bfcl-eval package)")
    p.add_argument("--acebench-dir", help="an ACEBench checkout (data_all/data_<lang>/...)")
    p.add_argument("--lang", choices=["en", "zh"], default="en", help="ACEBench language")
    p.add_argument("--apibank-dir", help="the api-bank folder of AlibabaResearch/DAMO-ConvAI (its code scores)")
    p.add_argument("--apibank-json", help="level-1-api.json (default: APIBANK_DIR/json_test_data/level-1-api.json; "
                   "it exists at commit 5c38bb7d of that repository)")
    p.add_argument("--per-api", action="store_true", help="API-Bank: print counts per API")
    p.add_argument("--categories", help="comma-separated subset of the benchmark's categories (BFCL: "
                   f"{','.join(bfcl.CATEGORIES)}; ACEBench: {','.join(acebench.CATEGORIES)})")
    p.add_argument("--limit", type=int, help="first N entries per category (or N records of --data)")
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=64, help="sequences decoded together")
    p.add_argument("--samples", type=int, default=1,
                   help="--data: samples per record (> 1 needs --temperature > 0; adds pass@N)")
    p.add_argument("--temperature", type=float, default=0.0, help="--data: sampling temperature (0: greedy)")
    p.add_argument("--seed", type=int, default=0, help="--data: sampling seed")
    p.add_argument("--no-language-hints", action="store_true", help="show BFCL's function docs unmodified")
    p.add_argument("--out", help="results JSON (default: <bench>_results.json, heldout_results.json with --data; "
                   "--bench all: a folder, default results)")
    p.add_argument("--dtype", choices=["bf16", "fp32"], help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--device", help="cuda, cuda:1 or cpu (default: cuda when available)")
    args = p.parse_args(argv)
    if sum(x is not None for x in (args.bench, args.data, args.rescore)) != 1:
        p.error("choose one of --bench bfcl, --data FILE.jsonl or --rescore RESULTS.json (benchmarks: --bench "
                "bfcl, acebench or apibank)")
    if (args.limit is not None and args.limit < 1) or args.max_new_tokens < 1 or args.batch_size < 1:
        p.error("--limit, --max-new-tokens and --batch-size must be >= 1")
    if args.samples < 1 or args.temperature < 0 or (args.samples > 1 and args.temperature == 0):
        p.error(f"--samples {args.samples} --temperature {args.temperature}: need samples >= 1, temperature >= 0, "
                "and temperature > 0 when samples > 1 (greedy samples are all the same)")
    if args.batch_size < args.samples:
        p.error(f"--batch-size {args.batch_size} is smaller than --samples {args.samples}: a record's samples are "
                "decoded together")
    if (args.samples > 1 or args.temperature) and not args.data:
        p.error("--samples and --temperature apply to --data (BFCL decodes greedily)")
    if args.rescore:
        return rescore(args)
    if args.bench == "acebench":
        return run_acebench(args)
    if args.bench == "apibank":
        return run_apibank(args)
    if args.bench == "all":
        return run_all(args)
    return run_bfcl(args) if args.bench else run_heldout(args)


if __name__ == "__main__":
    main()
