"""The vocabulary as text: what each token id writes, and every way a string can be written in tokens.

A byte-level BPE tokenizer encodes "bug" as one token, but "b"+"ug", "bu"+"g" and "b"+"u"+"g" are
token sequences that write the same text, and a model is free to produce any of them. A constraint
on *text* must therefore allow every tokenization, not only the one the tokenizer would choose.
"""
from __future__ import annotations


def token_texts(tokenizer, vocab_size: int | None = None) -> list[str | None]:
    """Text of every token id (index = id); None for special tokens and ids the tokenizer lacks.

    vocab_size may exceed the tokenizer's (models pad their embedding matrix); those ids write nothing.
    A token holding part of a multi-byte character decodes to U+FFFD: it can never spell ASCII text.
    """
    size = vocab_size or len(tokenizer)
    special = set(tokenizer.all_special_ids)
    texts: list[str | None] = []
    for token_id in range(size):
        if token_id in special or token_id >= len(tokenizer):
            texts.append(None)
        else:
            texts.append(tokenizer.decode([token_id]))
    return texts


def tokenizations(text: str, texts: list[str | None], limit: int = 100_000) -> list[tuple[int, ...]]:
    """Every sequence of token ids whose texts concatenate to ``text`` (the tokenizer's own one included).

    Depth-first over positions of the text; raises ValueError when there are more than ``limit``
    (long strings have exponentially many: keep constrained choices short).
    """
    by_first: dict[str, list[int]] = {}
    for token_id, piece in enumerate(texts):
        if piece:
            by_first.setdefault(piece[0], []).append(token_id)
    found: list[tuple[int, ...]] = []

    def extend(pos: int, prefix: tuple[int, ...]) -> None:
        if pos == len(text):
            found.append(prefix)
            if len(found) > limit:
                raise ValueError(f"{text!r} has more than {limit} tokenizations: use shorter strings")
            return
        for token_id in by_first.get(text[pos], ()):
            if text.startswith(texts[token_id], pos):
                extend(pos + len(texts[token_id]), prefix + (token_id,))

    extend(0, ())
    return found


def every_tokenization(strings, texts: list[str | None]) -> list[tuple[int, ...]]:
    """All tokenizations of all the strings, in order (what a choice constraint must allow)."""
    return [seq for string in strings for seq in tokenizations(string, texts)]


def canonical_tokenization(strings, tokenizer) -> list[tuple[int, ...]]:
    """Only the tokenizer's own encoding of each string (the tempting, incomplete set)."""
    return [tuple(tokenizer.encode(string, add_special_tokens=False)) for string in strings]
