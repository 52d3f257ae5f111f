"""Graded checks of lab 05, structured output.

The references are ``json`` with ``jsonschema`` (validity) and xgrammar (masks and bitmasks): every
check uses inputs the notebook does not show -- another schema, other token sequences and choices,
bitmasks with the sign bit set and vocabularies that are not a multiple of 32, logits that are all
negative -- and the choice check compares the learner's masks with xgrammar's on the real tokenizer.
"""
from __future__ import annotations

import json

from inferlab.checks import CheckFailed, Exercise, expect, expect_dict, graded, is_close

LAB = "05-structured"

# ----------------------------------------------------------------------------- validity

READING = {   # a schema the notebook never shows
    "type": "object",
    "properties": {"sensor": {"type": "string"}, "celsius": {"type": "number"},
                   "state": {"enum": ["ok", "fault"]}},
    "required": ["sensor", "celsius", "state"],
    "additionalProperties": False,
}
VALIDITY_TEXTS = [
    '{"sensor": "t1", "celsius": 21.5, "state": "ok"}',                  # valid
    '  {"state": "fault", "celsius": -3, "sensor": "t9"}\n',             # valid: key order and whitespace are free
    '{"sensor": "t2", "celsius": "21.5", "state": "ok"}',                # parses; a string is not a number
    '{"sensor": "t3", "celsius": 20, "state": "warm"}',                  # parses; not in the enum
    '{"sensor": "t4", "celsius": 19.0}',                                 # parses; a required key is missing
    '{"sensor": "t5", "celsius": 19.0, "state": "ok", "unit": "C"}',     # parses; no other keys allowed
    '```json\n{"sensor": "t6", "celsius": 18, "state": "ok"}\n```',      # a code fence: not a JSON document
    '{"sensor": "t7", "celsius": 17, "state": "ok"',                     # cut off
    "{'sensor': 't8', 'celsius': 16, 'state': 'ok'}",                    # Python, not JSON
    '[{"sensor": "t9", "celsius": 15, "state": "ok"}]',                  # parses; an array, not an object
    'The reading is {"sensor": "t10", "celsius": 14, "state": "ok"}.',   # text around it
]


def reference_validity(texts, schema) -> dict:
    import jsonschema
    validator = jsonschema.Draft202012Validator(schema)
    parses = valid = 0
    for text in texts:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            continue
        parses += 1
        valid += validator.is_valid(doc)
    return {"parses": parses / len(texts), "valid": valid / len(texts)}


@graded(hint="json.loads the whole reply (a failure means it does not parse), then validate the document "
             "against the JSON schema (jsonschema); both shares are of all the texts")
def check_validity(json_validity) -> str:
    cases = [VALIDITY_TEXTS, VALIDITY_TEXTS[:2], VALIDITY_TEXTS[6:9], [VALIDITY_TEXTS[2], VALIDITY_TEXTS[0]]]
    for texts in cases:
        given = list(texts)
        got = expect_dict(json_validity(given, READING), ("parses", "valid"), "json_validity")
        expect(given == list(texts), "json_validity() changed the list of texts it was given")
        want = reference_validity(texts, READING)
        for key in ("parses", "valid"):
            if not is_close(got[key], want[key], abs_tol=1e-9):
                raise CheckFailed(f"on {len(texts)} texts {key} = {got[key]!r}, expected {want[key]:.4g}"
                                  + _validity_diagnosis(texts, key, got[key]))
    return f"{len(VALIDITY_TEXTS)} replies: fences, truncation, wrong types, enums, extra keys, arrays"


def _validity_diagnosis(texts, key, value) -> str:
    import jsonschema
    parsed = []
    for text in texts:
        try:
            parsed.append(json.loads(text))
        except json.JSONDecodeError:
            pass
    validator = jsonschema.Draft202012Validator(READING)
    valid = sum(validator.is_valid(doc) for doc in parsed)
    fenced = sum(1 for t in texts if t.strip().startswith("```"))
    if key == "valid" and parsed and is_close(value, valid / len(parsed)):
        return " -- that is a share of the replies that parse; divide by all the replies"
    if key == "valid" and is_close(value, len(parsed) / len(texts)):
        return " -- a reply that parses but breaks the schema (a wrong type, a missing or extra key) is not valid"
    if key == "parses" and fenced and is_close(value, (len(parsed) + fenced) / len(texts)):
        return " -- the whole reply must be the JSON document: a code fence around it does not parse"
    if key == "valid" and value > valid / len(texts):
        return " -- validate with the schema itself (types, enum, required, additionalProperties), not only the keys"
    return ""


# ----------------------------------------------------------------------------- a choice as a token trie

EOS = 0
TRIE_SEQUENCES = [(5,), (5, 9), (7, 3, 3), (7, 4), (7, 3, 8), (11, 12), (13,), (11, 14, 15)]
TRIE_QUERIES = [   # generated so far -> allowed next, EOS when what was generated is complete
    ((), {5, 7, 11, 13}),
    ((7,), {3, 4}),
    ((7, 3), {3, 8}),
    ((7, 3, 8), {EOS}),
    ((5,), {EOS, 9}),              # (5,) is complete and also the start of (5, 9)
    ((5, 9), {EOS}),
    ((7, 3, 8), {EOS}),
    ((11,), {12, 14}),
    ((13,), {EOS}),
    ((9,), set()),                 # not on any sequence
    ((7, 3, 3, 1), set()),
]
CHOICES = ["cat", "catalog", "dog", "do it"]   # real text for the comparison with xgrammar


def _as_ids(values, what: str) -> set[int]:
    try:
        return {int(v) for v in values}
    except TypeError:
        raise CheckFailed(f"{what} returned {type(values).__name__}; return a set of token ids") from None


@graded(hint="a trie node per prefix: its children are the next tokens, and EOS is allowed exactly where a "
             "whole sequence ends -- which can be a node that also has children; off the trie nothing is allowed")
def check_choice_mask(build_trie, allowed_tokens, tokenizer) -> str:
    sequences = [list(s) for s in TRIE_SEQUENCES]
    trie = build_trie(sequences)
    expect(sequences == [list(s) for s in TRIE_SEQUENCES], "build_trie() changed the sequences it was given")
    for generated, want in TRIE_QUERIES:
        got = _as_ids(allowed_tokens(trie, list(generated), EOS), "allowed_tokens")
        if got != want:
            raise CheckFailed(f"after {list(generated)} on sequences {TRIE_SEQUENCES} (EOS = {EOS}) you allow "
                              f"{sorted(got)}, expected {sorted(want)}" + _trie_diagnosis(generated, got, want))
    steps = _agreement_with_xgrammar(build_trie, allowed_tokens, tokenizer)
    return f"{len(TRIE_QUERIES)} prefixes; {steps} steps equal to xgrammar's masks for {CHOICES}"


def _trie_diagnosis(generated, got, want) -> str:
    if EOS in got and EOS not in want and want:
        return (" -- EOS only where a whole sequence ends: a prefix of an allowed string is not complete "
                "(that would let the model stop half way)")
    if EOS in want and EOS not in got and len(want) > 1:
        return " -- one allowed string is a prefix of another: after it both EOS and the longer string's next tokens"
    if EOS in want and EOS not in got:
        return " -- you forgot the end-of-sequence token: after a complete sequence EOS must be allowed"
    if not want and got:
        return " -- what was generated is on no sequence: nothing is allowed"
    if got < want:
        return " -- sequences sharing a prefix share the trie's node: keep every branch, do not overwrite one"
    return ""


def _agreement_with_xgrammar(build_trie, allowed_tokens, tokenizer) -> int:
    from inferlab import structured
    from transformers import AutoConfig
    vocab_size = AutoConfig.from_pretrained(tokenizer.name_or_path).vocab_size
    texts = structured.token_texts(tokenizer, vocab_size)
    info = structured.tokenizer_info(tokenizer, vocab_size)
    eos = info.stop_token_ids[0]
    compiled = structured.masks.xgrammar().GrammarCompiler(info).compile_grammar(structured.choice_grammar(CHOICES))
    trie = build_trie(structured.every_tokenization(CHOICES, texts))
    paths = [list(tokenizer.encode(c, add_special_tokens=False)) + [eos] for c in CHOICES]
    paths.append([texts.index("c"), texts.index("at"), texts.index("al"), texts.index("og"), eos])
    steps = 0
    for path in paths:
        theirs = structured.xgrammar_masks_along(compiled, path, vocab_size)
        for step, expected in enumerate(theirs):
            got = _as_ids(allowed_tokens(trie, path[:step], eos), "allowed_tokens")
            if got != expected:
                spelled = "".join(texts[t] for t in path[:step])
                raise CheckFailed(f"for the choice {CHOICES} after {spelled!r} (tokens {path[:step]}) you allow "
                                  f"{len(got)} tokens and xgrammar {len(expected)}; "
                                  f"{len(got - expected)} only yours, {len(expected - got)} only xgrammar's"
                                  + _trie_diagnosis(path[:step], got, expected))
            steps += 1
    return steps


# ----------------------------------------------------------------------------- reading a token bitmask

def pack(allowed: set[int], vocab_size: int, padding: bool = True):
    """xgrammar's layout: word w, bit b (value 1 << b) allows id 32 w + b. ``padding`` sets the bits past
    vocab_size, as a careless writer of a bitmask could: a reader must ignore them."""
    import numpy as np
    import torch
    words = (vocab_size + 31) // 32
    bits = np.zeros(words * 32, dtype=np.uint64)
    bits[sorted(allowed)] = 1
    if padding:
        bits[vocab_size:] = 1
    values = (bits.reshape(words, 32) << np.arange(32, dtype=np.uint64)).sum(axis=1).astype(np.uint32)
    return torch.from_numpy(values.view(np.int32).copy())


def bitmask_cases():
    import numpy as np
    rng = np.random.default_rng(5)
    cases = []
    for vocab_size, share in ((70, 0.5), (96, 0.3), (1000, 0.05), (33, 1.0)):
        allowed = {int(i) for i in np.flatnonzero(rng.random(vocab_size) < share)}
        allowed |= {31, 63} & set(range(vocab_size))        # the sign bit of a word
        cases.append((allowed, vocab_size))
    cases.append(({0}, 40))
    cases.append((set(), 64))
    return cases


@graded(hint="id = 32 * word + bit, bit 0 being the least significant (value 1); a set bit allows; read the "
             "int32 words as unsigned 32-bit patterns, and keep only ids below vocab_size")
def check_bitmask(bitmask_to_ids) -> str:
    from inferlab.structured import allowed_by_xgrammar
    for allowed, vocab_size in bitmask_cases():
        row = pack(allowed, vocab_size)
        expect(allowed_by_xgrammar(row, vocab_size) == allowed, "internal: the packed bitmask disagrees with xgrammar")
        got = _as_ids(bitmask_to_ids(row.clone(), vocab_size), "bitmask_to_ids")
        if got != allowed:
            raise CheckFailed(f"a bitmask for a vocabulary of {vocab_size} allowing {len(allowed)} ids: you read "
                              f"{len(got)} ids, {len(got - allowed)} wrongly allowed and {len(allowed - got)} missed"
                              + _bitmask_diagnosis(row, got, vocab_size))
    return f"{len(bitmask_cases())} bitmasks, sign bits set, vocabularies not a multiple of 32"


def _bitmask_diagnosis(row, got, vocab_size) -> str:
    """Names the mistake when the ids read equal one plausible misreading of the same row."""
    words = [int(x) for x in row.tolist()]

    def read(bit_of, limit=vocab_size, signed_skip=False):
        return {32 * w + b for w, word in enumerate(words) for b in range(32)
                if not (signed_skip and word < 0) and (word & 0xFFFFFFFF) >> bit_of(b) & 1 and 32 * w + b < limit}

    right_ids = read(lambda b: b)
    variants = {
        "bit 0 (the least significant) is the lowest id of its word, not bit 31": read(lambda b: 31 - b),
        "a set bit allows the token; a clear bit forbids it": set(range(vocab_size)) - right_ids,
        "the last word has bits past vocab_size: ids at or above vocab_size are not tokens":
            read(lambda b: b, limit=32 * len(words)),
        "bit 31 makes an int32 word negative: read the word as an unsigned 32-bit pattern":
            read(lambda b: b, signed_skip=True),
    }
    for why, ids in variants.items():
        if got == ids:
            return f" -- {why}"
    return ""


# ----------------------------------------------------------------------------- constrained greedy decoding

def fake_logits(table):
    """next_logits(generated) -> a tensor: the row of ``table`` for the step (the same row after the end)."""
    import torch

    def next_logits(generated):
        return torch.tensor(table[min(len(generated), len(table) - 1)], dtype=torch.float32)
    return next_logits


GREEDY_CASES = [  # (logit rows per step, allowed(generated), eos, max_new_tokens)
    # the best token is forbidden at every step; all logits negative
    ([[-1.0, -5.0, -2.0, -0.5, -3.0], [-4.0, -0.1, -2.5, -9.0, -0.2]],
     lambda g: {1, 2, 4} if not g else {0, 2, 4}, 0, 6),
    # EOS is the best allowed token at step 2: stop there, EOS included
    ([[0.0, 3.0, 2.0, 1.0], [0.5, 0.2, 9.0, 1.0], [5.0, 4.0, 6.0, 3.0]],
     lambda g: {1, 3} if len(g) < 2 else {0, 1}, 0, 10),
    # a choice: allowed sets change with what was generated; budget of 3 tokens
    ([[1.0, 0.0, 4.0, 3.0, 2.0], [2.0, 1.0, 0.0, 5.0, 4.0], [3.0, 9.0, 1.0, 2.0, 8.0]],
     lambda g: {3, 4} if not g else ({1, 4} if g[-1] == 3 else {2, 3}), 0, 3),
]


def reference_greedy(next_logits, allowed, eos_id, max_new_tokens) -> list[int]:
    import torch
    generated: list[int] = []
    while len(generated) < max_new_tokens:
        ok = sorted(allowed(generated))
        if not ok:
            raise ValueError("nothing is allowed")
        logits = next_logits(generated)
        token = ok[int(torch.argmax(logits[ok]))]
        generated.append(token)
        if token == eos_id:
            break
    return generated


@graded(hint="at every step set the logits of the tokens not allowed to -inf (before choosing), take the argmax, "
             "append it; stop after EOS (keep it) or after max_new_tokens tokens")
def check_constrained_greedy(constrained_greedy) -> str:
    for table, allowed, eos, limit in GREEDY_CASES:
        want = reference_greedy(fake_logits(table), allowed, eos, limit)
        got = [int(t) for t in constrained_greedy(fake_logits(table), allowed, eos, limit)]
        if got != want:
            raise CheckFailed(f"generated {got}, expected {want} (EOS = {eos}, max_new_tokens = {limit})"
                              + _greedy_diagnosis(got, want, table, allowed, eos))
    try:
        constrained_greedy(fake_logits([[1.0, 2.0]]), lambda g: set(), 0, 4)
    except ValueError:
        pass
    else:
        raise CheckFailed("when nothing is allowed, raise ValueError (the grammar and the vocabulary do not fit)")
    return f"{len(GREEDY_CASES)} decodes: forbidden best tokens, negative logits, EOS mid-way, token budget"


def _greedy_diagnosis(got, want, table, allowed, eos) -> str:
    for step, token in enumerate(got):
        if token not in allowed(got[:step]):
            row = table[min(step, len(table) - 1)]
            if row[token] == max(row):
                return " -- you chose a token the mask forbids: mask the logits before choosing, not after"
            return " -- a forbidden token won: multiplying by a 0/1 mask leaves forbidden logits at 0; use -inf"
        if step < len(want) and token != want[step]:
            return " -- at some step the chosen token is not the best allowed one: mask first, then take the argmax"
    if len(got) > len(want) and eos in want:
        return " -- stop after generating EOS"
    if len(got) == len(want) - 1 and want[-1] == eos:
        return " -- keep the EOS token in the output: it tells the caller the constraint finished"
    if len(got) != len(want):
        return " -- generate at most max_new_tokens tokens"
    return ""


__all__ = ["check_validity", "check_choice_mask", "check_bitmask", "check_constrained_greedy", "CheckFailed"]

EXERCISES = [
    Exercise(check_validity, ("json_validity",)),
    Exercise(check_choice_mask, ("build_trie", "allowed_tokens"), ("tokenizer",)),
    Exercise(check_bitmask, ("bitmask_to_ids",)),
    Exercise(check_constrained_greedy, ("constrained_greedy",)),
]
