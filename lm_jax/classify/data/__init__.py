"""Labelled corpora for classification: readers (readers.py, documents.py, hub.py, synthetic.py) -> LabelledCorpus
(corpus.py); `config.data` and `load_corpus` (config.py); tokens, vocabulary and ids (text.py, prepare.py); CV folds
and dev hold-outs (splits.py); padded length-bucketed batches (batching.py). docs/classification.md describes them."""
