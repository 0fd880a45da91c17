"""Posts as data: the CoNLL format, BIO/BIOES tags, raw text split into words, sub-word alignment, images, stats,
word shapes and character bytes."""
