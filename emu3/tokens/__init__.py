"""The token side of Emu3: special ids, the text tokenizer, the visual id block and the sequence grammar.

special.py       SpecialTokens: every special id by role; the official layout
visual_vocab.py  VisualVocab: VQ codes <-> vocab ids
bpe.py           ordinary-text BPE backends and their file formats (BAAI tiktoken, transformers, ours)
text.py          TextTokenizer, load_text_tokenizer, train_text_tokenizer
format.py        the sequence grammar: image/video blocks, build and parse
templates.py     prompts and training layouts built on format.py (T2I, chat, pretraining)

This package imports only torch, tiktoken, tokenizers and the standard library.
"""
