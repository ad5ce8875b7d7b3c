import json

import pytest

from saekit.data import load_corpus, tokenize_corpus
from saekit.data.tokenize import keep_mask
from saekit.errors import CorpusError


def test_builtin_corpora():
    sh = load_corpus("shakespeare")
    kjv = load_corpus("bible")
    assert len(sh) > 500 and "HAMLET:" in "".join(d.text for d in sh if "hamlet" in d.source)
    assert len(kjv) == 1189 and kjv[0].text.startswith("Genesis 1\n\nIn the beginning God created the heaven")
    mixed = load_corpus("default")
    assert len(mixed) == len(sh) + len(kjv)
    assert [d.id for d in mixed] == list(range(len(mixed)))
    assert mixed[0].source.startswith("shakespeare:") and mixed[1].source.startswith("bible:")
    assert "**" not in sh[0].text


def test_txt_folder_and_jsonl(tmp_path, text_corpus):
    docs = load_corpus(str(text_corpus))
    assert [d.text.split(".")[0] for d in docs] == [f"Document {i}" for i in range(6)]
    jl = tmp_path / "c.jsonl"
    jl.write_text(json.dumps({"text": "hello"}) + "\n\n" + json.dumps({"text": "world"}) + "\n")
    assert [d.text for d in load_corpus(str(jl))] == ["hello", "world"]
    jl.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(CorpusError, match=r"c\.jsonl:1: expected an object with a string field 'text'"):
        load_corpus(str(jl))
    with pytest.raises(CorpusError, match="no such file"):
        load_corpus(str(tmp_path / "missing.txt"))


def test_tokenize_keeps_documents_and_positions(char_tokenizer, text_corpus):
    docs = load_corpus(str(text_corpus))
    tb = tokenize_corpus(docs, char_tokenizer, 32, min_context=8)
    for i in range(len(tb)):
        d = int(tb.doc_id[i, 0])
        n = int(tb.mask[i].sum())
        pos = tb.position[i, :n]
        # the context is exactly the document's tokens at those positions
        assert tb.token_id[i, :n].tolist() == [tb.doc_tokens[d][p] for p in pos.tolist()]
        assert (pos == pos[0] + __import__("torch").arange(n)).all() and int(pos[0]) % 32 == 0
        assert (tb.doc_id[i, n:] == -1).all()
    # every document token of kept windows appears exactly once
    assert sum(len(t) for t in tb.doc_tokens) - int(tb.mask.sum()) < 8 * len(docs)


def test_prepend_bos_and_exclusions(char_tokenizer, text_corpus):
    docs = load_corpus(str(text_corpus))
    tb = tokenize_corpus(docs, char_tokenizer, 16, prepend_bos=True)
    specials = char_tokenizer.all_special_ids
    assert (tb.token_id[:, 0] == char_tokenizer.bos_token_id).all() and (tb.position[:, 0] == -1).all()
    keep = keep_mask(tb, special_ids=specials, exclude_first=0)
    assert not keep[:, 0].any() and keep[:, 1].all()
    keep2 = keep_mask(tb, special_ids=specials, exclude_first=2)
    assert not keep2[:, :2].any()
    keep3 = keep_mask(tb, special_ids=specials, exclude_special=False, exclude_first=0)
    assert keep3[:, 0].all()
    assert not (keep & ~tb.mask).any()
