"""The DGHC tagger: relevance score, dynamic gates, visual prefix attention and a CRF over a BERT encoder.

Modules: ``encoder`` (loading the text encoder and tokenizer), ``relevance`` (eqs. 2-5), ``gates`` (eqs. 6-8),
``visual_prefix`` (eqs. 10-13), ``prefix_attention`` (eq. 14), ``crf`` (the constrained BIOES CRF, eqs. 16-17),
``characters`` (the character CNN), ``tagger`` (the whole model), ``batching`` (posts to the model's input
batches), ``fetched`` (encoders from the package index); see docs/ARCHITECTURE.md for each equation.
"""
