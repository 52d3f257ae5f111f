"""inferlab.structured: the lab-05 task, token texts and tokenizations, xgrammar glue, request fields."""
from __future__ import annotations

import json

import pytest
import torch

from inferlab import structured
from inferlab.checks.structured import pack


# ----------------------------------------------------------------------------- requests

def test_each_engine_gets_the_constraint_in_its_own_fields():
    schema = {"type": "object"}
    for engine in ("vllm", "sglang"):
        assert structured.request_params(engine, {"json": schema}) == {
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}}
        assert structured.request_params(engine, None) == {}
    assert structured.request_params("vllm", {"regex": "[0-9]+"}) == {"extra_body": {"structured_outputs": {"regex": "[0-9]+"}}}
    assert structured.request_params("vllm", {"choice": ["a", "b"]}) == {"extra_body": {"structured_outputs": {"choice": ["a", "b"]}}}
    assert structured.request_params("sglang", {"grammar": 'root ::= "x"'}) == {"extra_body": {"ebnf": 'root ::= "x"'}}
    assert structured.request_params("sglang", {"choice": ["a+b", "c"]}) == {"extra_body": {"regex": r"(a\+b|c)"}}
    assert structured.bench_body("vllm", {"json": schema})["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize("bad", [{"regex": "a", "choice": ["a"]}, {"xml": "<a/>"}])
def test_a_malformed_constraint_says_what_a_constraint_is(bad):
    with pytest.raises(ValueError, match="one-key dict"):
        structured.request_params("vllm", bad)
    with pytest.raises(ValueError, match="unknown engine"):
        structured.request_params("tgi", {"regex": "a"})


def test_renamed_schema_accepts_the_same_documents_under_a_new_cache_key():
    again = structured.renamed(structured.SCHEMA, "cold 1")
    assert again["title"] != structured.SCHEMA["title"] and again["properties"] == structured.SCHEMA["properties"]


# ----------------------------------------------------------------------------- the task

def test_cases_are_fixed_cover_every_action_and_score_by_field():
    cases = structured.cases(32)
    assert cases == structured.cases(32) and len(cases) == 32
    assert {c.truth["action"] for c in cases} == set(structured.ACTIONS)
    for case in cases:
        assert str(case.truth["order"]) in case.message and case.truth["customer"] in case.message
        perfect = structured.score(json.dumps(case.truth), case)
        assert perfect == {"parses": True, "valid": True, "fields right": 4}
    case = cases[0]
    as_number = dict(case.truth, urgent=int(case.truth["urgent"]))      # 1 is not true in JSON
    assert structured.score(json.dumps(as_number), case) == {"parses": True, "valid": False, "fields right": 3}
    assert structured.score("```json\n{}\n```", case) == {"parses": False, "valid": False, "fields right": 0}


# ----------------------------------------------------------------------------- tokens

def test_token_texts_hide_special_and_missing_ids(tokenizer):
    texts = structured.token_texts(tokenizer, len(tokenizer) + 7)
    assert len(texts) == len(tokenizer) + 7 and texts[-7:] == [None] * 7
    assert all(texts[i] is None for i in tokenizer.all_special_ids)
    assert texts[tokenizer.encode("bug", add_special_tokens=False)[0]] == "bug"


def test_tokenizations_spell_the_text_exactly_and_include_the_tokenizers_own(tokenizer):
    texts = structured.token_texts(tokenizer)
    for text in ("bug report", "refund"):
        found = structured.tokenizations(text, texts)
        assert len(set(found)) == len(found) > 1
        assert all("".join(texts[t] for t in seq) == text for seq in found)
        assert tuple(tokenizer.encode(text, add_special_tokens=False)) in found
    assert structured.tokenizations("ab", ["a", "b", "ab", None, "c"]) == [(0, 1), (2,)]
    with pytest.raises(ValueError, match="more than 3 tokenizations"):
        structured.tokenizations("aaaaa", ["a", "aa"], limit=3)


# ----------------------------------------------------------------------------- xgrammar

@pytest.fixture(scope="module")
def xgr_setup(tokenizer):
    vocab = len(tokenizer)
    info = structured.tokenizer_info(tokenizer, vocab)
    compiler = structured.masks.xgrammar().GrammarCompiler(info)
    return vocab, info, compiler, structured.token_texts(tokenizer, vocab)


def test_the_choice_grammar_accepts_exactly_its_strings_even_with_quotes(xgr_setup):
    vocab, info, compiler, texts = xgr_setup
    xgr = structured.masks.xgrammar()
    choices = ['say "hi"', "bug", "bug report"]
    compiled = compiler.compile_grammar(structured.choice_grammar(choices))
    for text in choices:
        matcher = xgr.GrammarMatcher(compiled)
        assert matcher.accept_string(text)
        assert matcher.accept_token(info.stop_token_ids[0])
    assert not xgr.GrammarMatcher(compiled).accept_string("bugs")


def test_allowed_by_xgrammar_reads_a_packed_bitmask():
    allowed = {0, 5, 31, 32, 63, 64, 69}
    assert structured.allowed_by_xgrammar(pack(allowed, 70), 70) == allowed


def test_grammar_mask_follows_one_generation_and_refuses_what_the_grammar_refuses(xgr_setup):
    vocab, info, compiler, texts = xgr_setup
    compiled = compiler.compile_regex("[0-9]{2}")
    mask = structured.GrammarMask(compiled, vocab)
    first = mask([])
    digits = {texts.index(str(d)) for d in range(10)}
    assert digits <= first and info.stop_token_ids[0] not in first
    assert info.stop_token_ids[0] not in mask([texts.index("4")])
    assert mask([texts.index("4"), texts.index("2")]) == {info.stop_token_ids[0]}
    assert len(mask.steps) == 3 and mask.mask_seconds > 0
    with pytest.raises(ValueError, match="follows one generation"):
        mask([texts.index("5")])
    with pytest.raises(ValueError, match="does not accept token"):
        structured.GrammarMask(compiled, vocab)([texts.index("a")])


def test_masks_along_a_path_and_their_agreement_table(xgr_setup):
    vocab, info, compiler, texts = xgr_setup
    compiled = compiler.compile_grammar(structured.choice_grammar(["bug", "bug report"]))
    eos = info.stop_token_ids[0]
    path = [texts.index("bug"), eos]
    theirs = structured.xgrammar_masks_along(compiled, path, vocab)
    assert eos in theirs[1] and texts.index(" report") in theirs[1]
    table = structured.agreement(path, texts, theirs, [theirs[0], {eos}])
    assert list(table["same set"]) == [True, False] and table["only xgrammar"].iloc[1] == len(theirs[1]) - 1


def test_next_token_logits_with_the_cache_equal_a_full_forward(model, tokenizer):
    prompt = tokenizer.encode("The capital of France is", add_special_tokens=False)
    logits = structured.NextTokenLogits(model, prompt)
    generated = []
    for _ in range(3):
        step = logits(generated)
        with torch.inference_mode():
            full = model(torch.tensor([prompt + generated])).logits[0, -1].float()
        assert torch.allclose(step, full, atol=1e-4)
        generated.append(int(step.argmax()))
    assert torch.equal(logits(generated[:1]), logits(generated[:1]))     # going back recomputes, same answer
