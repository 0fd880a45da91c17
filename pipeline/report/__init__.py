"""``dghc report``: an HTML page of where the image helped or hurt a trained tagger."""
