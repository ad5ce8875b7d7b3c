"""A real word-level tokenizer for the testbed's captions, in the two slots FluxPipeline fills.

Built with the `tokenizers` library (a `WordLevel` model over the caption vocabulary, whitespace and
punctuation pre-tokenisation, lower-casing) and wrapped as `transformers.PreTrainedTokenizerFast`, which
saves to an ordinary `tokenizer.json` folder that `FluxPipeline.from_pretrained` loads into its
`tokenizer` (CLIP) and `tokenizer_2` (T5) slots. Unknown words map to `<unk>`, so any prompt tokenizes.

- CLIP slot: `<bos> words <eos>` padded with `<pad>` to `model_max_length` (FluxPipeline pads the CLIP
  prompt to that length and pools the hidden state at the first `<eos>`).
- T5 slot: `words </s>` padded with `<pad>` (FluxPipeline pads it to `max_sequence_length`, 512 by
  default).
"""

from __future__ import annotations

from saekit.testbed.fluxbed.render import vocabulary

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
"""Ids 0-3. `<eos>` is id 3: CLIPTextModel pools at the first `eos_token_id` (its legacy argmax rule
applies only when eos_token_id == 2)."""
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


def vocab() -> dict[str, int]:
    """Token -> id: the specials, then every caption word."""
    return {w: i for i, w in enumerate(list(SPECIALS) + vocabulary())}


def build_tokenizer(kind: str, model_max_length: int):
    """A `PreTrainedTokenizerFast` for the `clip` slot (`<bos> ... <eos>`) or the `t5` slot (`... <eos>`)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    if kind not in ("clip", "t5"):
        raise ValueError(f"tokenizer kind must be 'clip' or 't5', not {kind!r}")
    tok = Tokenizer(WordLevel(vocab=vocab(), unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    if kind == "clip":
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A <eos>", special_tokens=[("<bos>", BOS_ID), ("<eos>", EOS_ID)]
        )
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="$A <eos>", special_tokens=[("<eos>", EOS_ID)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=model_max_length,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        padding_side="right",
    )
