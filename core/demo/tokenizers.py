"""The twins' tokenizers, built offline with `tokenizers` (the real vocabularies are Hub downloads): T5's and
XLM-RoBERTa's Unigram, BERT's WordPiece over single characters, GPT-2's and RoBERTa's byte-level BPE. Each keeps
its family's special tokens at their ids, so the encoders the twins pair them with read what a real one would."""

from __future__ import annotations

import itertools
import string


def _unigram(specials: list[str], unk: str, single: str, pair: str, **special_tokens: str):
    """A SentencePiece-style Unigram over single characters (and `▁` for a word start), the special tokens first,
    built with `tokenizers`; `single`/`pair` are its templates."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces = ["▁", *string.ascii_letters, *string.digits, *string.punctuation]
    vocab = [(token, 0.0) for token in specials] + [(piece, -1.0) for piece in pieces]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=specials.index(unk)))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    used = {token for token in specials if token in single or token in pair}
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(token, specials.index(token)) for token in sorted(used)]
    )
    return tokenizer


def t5_tokenizer():
    """A T5 tokenizer whose pieces are single characters (and `▁` for a word start), ids as in T5: pad 0, eos 1,
    unk 2; every prompt ends with `</s>`, as the real one's do."""
    from transformers import T5TokenizerFast

    tokenizer = _unigram(["<pad>", "</s>", "<unk>"], "<unk>", single="$A </s>", pair="$A </s> $B </s>")
    return T5TokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=512,
    )


def xlm_roberta_tokenizer():
    """An XLM-RoBERTa tokenizer over single characters, ids as in XLM-R (<s> 0, <pad> 1, </s> 2, <unk> 3, <mask>
    last); a prompt reads `<s> … </s>`. Kandinsky 2.1's and AltDiffusion's text encoders are XLM-R models."""
    from transformers import XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tokenizer = _unigram(specials, "<unk>", single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>")
    tokenizer.add_special_tokens(["<mask>"])
    return XLMRobertaTokenizerFast(tokenizer_object=tokenizer, model_max_length=77)


def bert_tokenizer():
    """A BERT WordPiece tokenizer over single characters, with BERT's special tokens, built with `tokenizers` (the
    real vocabulary is a Hub download)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = [*string.ascii_lowercase, *string.digits, *string.punctuation]
    vocab = {token: i for i, token in enumerate([*specials, *pieces, *(f"##{p}" for p in pieces)])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return BertTokenizerFast(tokenizer_object=tokenizer, model_max_length=77)


def gpt2_tokenizer():
    """A GPT-2 tokenizer: byte-level BPE over the 256 byte symbols with no merges (the real vocabulary and merges are
    a Hub download), `<|endoftext|>` as its one special token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2TokenizerFast

    special = "<|endoftext|>"
    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab[special] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return GPT2TokenizerFast(
        tokenizer_object=tokenizer, bos_token=special, eos_token=special, unk_token=special, model_max_length=77
    )


# Words the twins' RoBERTa tokenizer has merges for (a word start is `Ġ`, as in RoBERTa's vocabulary): any other
# text falls back to its bytes, as the real tokenizer's does for words it has no merges for.
_WORDS = ("a", "the", "of", "and", "on", "in", "with", "rain", "roof", "dog", "music", "piano", "drum", "beat", "jazz")


def roberta_tokenizer():
    """A RoBERTa byte-level BPE tokenizer: the 256 byte symbols, merges that spell a few words whole, and RoBERTa's
    special tokens at RoBERTa's ids (<s> 0, <pad> 1, </s> 2, <unk> 3, <mask> last); a prompt reads `<s> … </s>`.
    CLAP's text encoder is a RoBERTa model and reads its ids."""
    from transformers import RobertaTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {token: i for i, token in enumerate(["<s>", "<pad>", "</s>", "<unk>"])}
    for symbol in bytes_to_unicode().values():
        vocab[symbol] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in (*(f"Ġ{w}" for w in _WORDS), *_WORDS):  # after a space, then at a text's start
        # Merge the word's first two pieces under the merges so far until it is one token: a later merge never
        # touches an earlier word (already whole), so each listed word stays one token.
        while len(pieces := _bpe(word, merges)) > 1:
            merges.append((pieces[0], pieces[1]))
            vocab.setdefault(pieces[0] + pieces[1], len(vocab))
    vocab["<mask>"] = len(vocab)
    # The class builds RoBERTa's byte-level pre-tokenizer, decoder and post-processor round the vocabulary.
    return RobertaTokenizerFast(vocab=vocab, merges=merges, model_max_length=77)


def _bpe(word: str, merges: list[tuple[str, str]]) -> list[str]:
    """`word`'s pieces under BPE `merges` (the lowest-ranked adjacent pair merged first, as `tokenizers` does)."""
    pieces, rank = list(word), {pair: i for i, pair in enumerate(merges)}
    while len(pieces) > 1:
        pairs = [(rank.get(pair, len(rank)), i) for i, pair in enumerate(itertools.pairwise(pieces))]
        best, i = min(pairs)
        if best == len(rank):
            break
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces
