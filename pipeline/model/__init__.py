"""The DGHC tagger: relevance score, dynamic gates, visual prefix attention and a CRF over a BERT encoder."""
