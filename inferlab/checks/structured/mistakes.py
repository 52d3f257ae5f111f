"""Lab 05's catalogue: answers a learner could write, and what the checks must say to each."""
from __future__ import annotations

import json
import re

from inferlab.checks import right, wrong
from inferlab.checks.structured import (check_bitmask, check_choice_mask, check_constrained_greedy, check_validity,
                                        reference_greedy, reference_validity)


# ----------------------------------------------------------------------------- validity

def _parse(text):
    try:
        return True, json.loads(text)
    except json.JSONDecodeError:
        return False, None


def val_share_of_parsed(texts, schema):
    import jsonschema
    docs = [doc for ok, doc in map(_parse, texts) if ok]
    valid = sum(jsonschema.Draft202012Validator(schema).is_valid(d) for d in docs)
    return {"parses": len(docs) / len(texts), "valid": valid / len(docs) if docs else 0.0}


def val_parse_is_valid(texts, schema):
    docs = [doc for ok, doc in map(_parse, texts) if ok]
    return {"parses": len(docs) / len(texts), "valid": len(docs) / len(texts)}


def val_keys_only(texts, schema):
    docs = [doc for ok, doc in map(_parse, texts) if ok]
    valid = sum(isinstance(d, dict) and all(k in d for k in schema["required"]) for d in docs)
    return {"parses": len(docs) / len(texts), "valid": valid / len(texts)}


def val_strips_fences(texts, schema):
    fence = re.compile(r"^```(?:json)?\s*|\s*```$")
    return reference_validity([fence.sub("", t.strip()) for t in texts], schema)


def val_crashes(texts, schema):
    import jsonschema
    docs = [json.loads(t) for t in texts]
    valid = sum(jsonschema.Draft202012Validator(schema).is_valid(d) for d in docs)
    return {"parses": 1.0, "valid": valid / len(texts)}


def val_pydantic(texts, schema):
    """Right: a pydantic model built from the same schema, in strict mode, also validates exactly."""
    import jsonschema
    validator = jsonschema.Draft7Validator(schema)        # another draft: same answer on these keywords
    parses = valid = 0
    for text in texts:
        ok, doc = _parse(text)
        parses += ok
        valid += ok and not list(validator.iter_errors(doc))
    return {"parses": parses / len(texts), "valid": valid / len(texts)}


# ----------------------------------------------------------------------------- tries

def trie_sets(sequences):
    """Right, and no trie at all: the set of sequences, scanned at each step."""
    return {tuple(s) for s in sequences}


def allowed_by_scan(trie, generated, eos_id):
    n = len(generated)
    out = {s[n] for s in trie if len(s) > n and list(s[:n]) == list(generated)}
    if tuple(generated) in trie:
        out.add(eos_id)
    return out


END = "$end"


def trie_dicts(sequences):
    root = {}
    for seq in sequences:
        node = root
        for token in seq:
            node = node.setdefault(token, {})
        node[END] = True
    return root


def _walk(trie, generated):
    node = trie
    for token in generated:
        if token not in node:
            return None
        node = node[token]
    return node


def allowed_eos_everywhere(trie, generated, eos_id):
    node = _walk(trie, generated)
    return set() if node is None else {t for t in node if t != END} | {eos_id}


def allowed_no_eos(trie, generated, eos_id):
    node = _walk(trie, generated)
    return set() if node is None else {t for t in node if t != END}


def allowed_eos_at_leaves(trie, generated, eos_id):
    node = _walk(trie, generated)
    if node is None:
        return set()
    children = {t for t in node if t != END}
    return children or {eos_id}


def allowed_keyerror(trie, generated, eos_id):
    node = trie
    for token in generated:
        node = node[token]
    return {eos_id if t == END else t for t in node}


def trie_overwrites(sequences):
    root = {}
    for seq in sequences:
        node = root
        for token in seq:
            node[token] = {}                              # a fresh branch: the one before is lost
            node = node[token]
        node[END] = True
    return root


def allowed_dicts(trie, generated, eos_id):
    node = _walk(trie, generated)
    return set() if node is None else {eos_id if t == END else t for t in node}


# ----------------------------------------------------------------------------- bitmasks

def bits_reference_loop(row, vocab_size):
    """Right: a plain loop over Python ints, masking to 32 bits."""
    out = set()
    for w, word in enumerate(int(x) & 0xFFFFFFFF for x in row.tolist()):
        for b in range(32):
            if word >> b & 1 and 32 * w + b < vocab_size:
                out.add(32 * w + b)
    return out


def bits_numpy(row, vocab_size):
    """Right: numpy's unpackbits on the little-endian bytes."""
    import numpy as np
    bits = np.unpackbits(row.numpy().astype("<i4").view(np.uint8), bitorder="little")
    return {int(i) for i in np.flatnonzero(bits[:vocab_size])}


def bits_msb_first(row, vocab_size):
    out = set()
    for w, word in enumerate(int(x) & 0xFFFFFFFF for x in row.tolist()):
        for b in range(32):
            if word >> (31 - b) & 1 and 32 * w + b < vocab_size:
                out.add(32 * w + b)
    return out


def bits_inverted(row, vocab_size):
    return set(range(vocab_size)) - bits_reference_loop(row, vocab_size)


def bits_no_vocab_limit(row, vocab_size):
    return bits_reference_loop(row, 32 * len(row))


def bits_signed_bin(row, vocab_size):
    out = set()
    for w, word in enumerate(row.tolist()):
        digits = bin(word)[2:] if word >= 0 else ""        # a negative word prints as '-0b...': skipped
        for b, digit in enumerate(reversed(digits)):
            if digit == "1" and 32 * w + b < vocab_size:
                out.add(32 * w + b)
    return out


# ----------------------------------------------------------------------------- greedy

def _argmax(values, ids):
    return max(ids, key=lambda i: (float(values[i]), -i))


def greedy_plain_python(next_logits, allowed, eos_id, max_new_tokens):
    """Right: no -inf at all, the best allowed id by a max over the allowed ids."""
    out = []
    for _ in range(max_new_tokens):
        ids = list(allowed(out))
        if not ids:
            raise ValueError("nothing is allowed")
        out.append(_argmax(next_logits(out).tolist(), ids))
        if out[-1] == eos_id:
            break
    return out


def _decoder(choose, stop_at_eos: bool = True, when_empty: str = "raise"):
    """A constrained greedy decoder with one thing changed: how it chooses, whether EOS stops it,
    what it does when nothing is allowed. choose(logits, allowed ids sorted) -> the id."""
    def decode(next_logits, allowed, eos_id, max_new_tokens):
        out = []
        for _ in range(max_new_tokens):
            ok = sorted(allowed(out))
            if not ok:
                if when_empty == "return":
                    return out                            # silently stops instead of saying why
                raise ValueError("nothing is allowed")
            out.append(int(choose(next_logits(out), ok)))
            if stop_at_eos and out[-1] == eos_id:
                break
        return out
    return decode


def _best_allowed(logits, ok):
    import torch
    return ok[int(torch.argmax(logits[ok]))]


def _argmax_unmasked(logits, ok):
    return int(logits.argmax())                            # chosen, then never checked against ok


def _mask_after_choosing(logits, ok):
    token = int(logits.argmax())
    return token if token in ok else min(ok)               # the mask applied after choosing


def _multiplied_mask(logits, ok):
    import torch
    mask = torch.zeros_like(logits)
    mask[ok] = 1.0
    return int((logits * mask).argmax())


def greedy_drops_eos(next_logits, allowed, eos_id, max_new_tokens):
    out = reference_greedy(next_logits, allowed, eos_id, max_new_tokens)
    return out[:-1] if out and out[-1] == eos_id else out


CATALOGUE = [
    wrong(check_validity, "divide by all the replies", val_share_of_parsed),
    wrong(check_validity, "parses but breaks the schema", val_parse_is_valid),
    wrong(check_validity, "not only the keys", val_keys_only),
    wrong(check_validity, "a code fence around it does not parse", val_strips_fences),
    wrong(check_validity, "JSONDecodeError", val_crashes),
    right(check_validity, reference_validity, label="reference"),
    right(check_validity, val_pydantic, label="draft7-iter-errors"),
    wrong(check_choice_mask, "a prefix of an allowed string is not complete", trie_dicts, allowed_eos_everywhere, label="eos-everywhere"),
    wrong(check_choice_mask, "you forgot the end-of-sequence token", trie_dicts, allowed_no_eos, label="no-eos"),
    wrong(check_choice_mask, "one allowed string is a prefix of another", trie_dicts, allowed_eos_at_leaves, label="eos-at-leaves"),
    wrong(check_choice_mask, "KeyError", trie_dicts, allowed_keyerror, label="keyerror-off-trie"),
    wrong(check_choice_mask, "do not overwrite one", trie_overwrites, allowed_dicts, label="overwrites-branches"),
    right(check_choice_mask, trie_dicts, allowed_dicts, label="nested-dicts"),
    right(check_choice_mask, trie_sets, allowed_by_scan, label="set-scan"),
    wrong(check_bitmask, "bit 0 (the least significant)", bits_msb_first),
    wrong(check_bitmask, "a set bit allows the token", bits_inverted),
    wrong(check_bitmask, "ids at or above vocab_size", bits_no_vocab_limit),
    wrong(check_bitmask, "bit 31 makes an int32 word negative", bits_signed_bin),
    right(check_bitmask, bits_reference_loop, label="python-loop"),
    right(check_bitmask, bits_numpy, label="numpy-unpackbits"),
    wrong(check_constrained_greedy, "mask the logits before choosing", _decoder(_argmax_unmasked), label="argmax-unmasked"),
    wrong(check_constrained_greedy, "not the best allowed one", _decoder(_mask_after_choosing), label="mask-after-choosing"),
    wrong(check_constrained_greedy, "use -inf", _decoder(_multiplied_mask), label="multiplied-mask"),
    wrong(check_constrained_greedy, "stop after generating EOS", _decoder(_best_allowed, stop_at_eos=False), label="no-stop"),
    wrong(check_constrained_greedy, "keep the EOS token", greedy_drops_eos),
    wrong(check_constrained_greedy, "raise ValueError", _decoder(_best_allowed, when_empty="return"), label="empty-returns"),
    right(check_constrained_greedy, reference_greedy, label="reference"),
    right(check_constrained_greedy, greedy_plain_python, label="plain-python"),
]
