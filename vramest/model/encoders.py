"""Encoder-only (BERT family) and encoder-decoder (T5, BART, Whisper) shapes from a config.json.

Each family's tensors are counted from its transformers modeling code (the module names are
given beside each tensor), so a config gives the parameter count of the checkpoint exactly:
- BERT/RoBERTa/XLM-R (`BertModel`, `XLMRobertaModel`): word, position and token-type embeddings
  with a LayerNorm; post-LN blocks with biased q/k/v/o, an ungated GELU MLP; a pooler.
- DeBERTa-v2/v3 (`DebertaV2Model`): the same blocks, shared relative-position embeddings
  (`encoder.rel_embeddings` + its LayerNorm), no absolute positions, no pooler.
- T5/Flan-T5/mT5 (`T5ForConditionalGeneration`): bias-free projections, RMSNorm, relative
  attention buckets in each stack's first layer, a gated (v1.1) or plain ReLU MLP.
- BART (`BartForConditionalGeneration`): learned positions with an offset of 2 per stack,
  `layernorm_embedding` per stack, biased projections, head tied to the shared embedding.
- Whisper (`WhisperForConditionalGeneration`): two convolutions over the mel bins, fixed
  positions for 1500 encoder frames, `k_proj` without bias, head tied.
"""

from __future__ import annotations

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, replace
from vramest.model.kinds import BERT_LIKE

if TYPE_CHECKING:
    from vramest.model.shapes import ModelShape, _Config

ENCODER_FAMILIES = BERT_LIKE
# RoBERTa-style position ids start after the padding index: max_position_embeddings already
# holds the 2 extra rows in their configs (514 for 512 tokens).


def encoder_shape(c: _Config, family: str, name: str) -> ModelShape:
    if family in BERT_LIKE:
        return _bert(c, family, name)
    if family in ("t5", "mt5", "umt5"):
        return _t5(c, family, name)
    if family == "bart":
        return _bart(c, name)
    if family == "whisper":
        return _whisper(c, name)
    raise InputError(f"{c.origin}: no encoder layout for model_type {family!r}.")


def _head_kind(c: _Config) -> str:
    """Which task head the checkpoint carries, from its `architectures` entry."""
    archs = c.data.get("architectures")
    arch = str(archs[0]) if isinstance(archs, list) and archs else ""
    if arch.endswith("ForSequenceClassification"):
        return "classifier"  # rerankers and cross-encoders
    if arch.endswith("ForMaskedLM"):
        return "masked-lm"
    return "base"


def _bert(c: _Config, family: str, name: str) -> ModelShape:
    from vramest.model.shapes import ENCODER, LAYER_ENCODER, ModelShape, TensorSpec

    h = c.int("hidden_size")
    layers = c.int("num_hidden_layers")
    heads = c.int("num_attention_heads")
    inter = c.int("intermediate_size")
    vocab = c.int("vocab_size")
    positions = c.int("max_position_embeddings", default=512)
    types = c.int("type_vocab_size", default=2, minimum=0)
    head = _head_kind(c)
    deberta = family == "deberta-v2"
    extra: list[TensorSpec] = []
    if types:
        extra.append(TensorSpec("token_type_embedding", None, types, h))
    if deberta:
        if c.data.get("embedding_size", h) != h:
            raise InputError(f"{c.origin}: a DeBERTa embedding_size other than hidden_size is "
                             "not modelled.")
        buckets = c.int("position_buckets", default=0, minimum=0)
        span = buckets or c.int("max_relative_positions", default=-1, minimum=-1)
        if span < 1:
            span = positions
        extra.append(TensorSpec("position_embedding", None, 2 * span, h))  # rel_embeddings
        if "layer_norm" in str(c.data.get("norm_rel_ebd", "")):
            extra.append(TensorSpec("norm", None, 1, h, 2))
    positions_rows = positions if not deberta or c.bool("position_biased_input", True) else 0
    labels = _num_labels(c)
    if head == "classifier" and family in ("roberta", "xlm-roberta", "camembert"):
        # RobertaClassificationHead: dense h×h + out_proj labels×h, both biased; no pooler
        extra += [TensorSpec("head", None, h, h), TensorSpec("bias", None, 1, h),
                  TensorSpec("head", None, labels, h), TensorSpec("bias", None, 1, labels)]
    elif head == "classifier" and deberta:
        # ContextPooler dense h×h + classifier labels×h, both biased
        extra += [TensorSpec("head", None, h, h), TensorSpec("bias", None, 1, h),
                  TensorSpec("head", None, labels, h), TensorSpec("bias", None, 1, labels)]
    elif head == "masked-lm":
        # transform dense h×h + LayerNorm, decoder tied to the embedding, its bias per token
        extra += [TensorSpec("head", None, h, h), TensorSpec("bias", None, 1, h),
                  TensorSpec("norm", None, 1, h, 2), TensorSpec("bias", None, 1, vocab)]
    elif not deberta:  # BertModel / RobertaModel add a pooler (dense h×h + bias) by default
        extra += [TensorSpec("head", None, h, h), TensorSpec("bias", None, 1, h)]
        if head == "classifier":
            extra += [TensorSpec("head", None, labels, h), TensorSpec("bias", None, 1, labels)]
    return ModelShape(
        name=name, family=family, num_layers=layers, hidden_size=h, num_heads=heads,
        num_kv_heads=heads, head_dim=h // heads, intermediate_size=inter, vocab_size=vocab,
        tie_embeddings=True, gated_mlp=False, attention_bias=True, attention_out_bias=True,
        mlp_bias=True, layer_norm_bias=True, position_embeddings=positions_rows,
        layer_kinds=(LAYER_ENCODER,) * layers, max_context=positions - (
            2 if family in ("roberta", "xlm-roberta", "camembert") else 0),
        native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
        architecture=ENCODER, extra_tensors=tuple(extra),
        notes=(f"{family} encoder with its {head} head",),
    )


def _num_labels(c: _Config) -> int:
    labels = c.data.get("id2label")
    if isinstance(labels, dict) and labels:
        return len(labels)
    return c.int("num_labels", default=2)


def _encoder_decoder(shape: ModelShape, encoder: int, decoder: int) -> ModelShape:
    from vramest.model.shapes import ENCODER_DECODER, LAYER_ENCODER, LAYER_FULL

    return replace(shape, num_layers=encoder + decoder, encoder_layers=encoder,
                   layer_kinds=(LAYER_ENCODER,) * encoder + (LAYER_FULL,) * decoder,
                   architecture=ENCODER_DECODER)


def _t5(c: _Config, family: str, name: str) -> ModelShape:
    from vramest.model.shapes import ModelShape, TensorSpec

    d = c.int("d_model")
    heads = c.int("num_heads")
    encoder = c.int("num_layers")
    decoder = c.int("num_decoder_layers", default=encoder)
    buckets = c.int("relative_attention_num_buckets", default=32)
    gated = str(c.data.get("feed_forward_proj", "relu")).startswith("gated-")
    # umT5 gives every layer its own relative bias; T5/mT5 only each stack's first layer
    bias_tables = encoder + decoder if family == "umt5" else 2
    shape = ModelShape(
        name=name, family=family, num_layers=encoder + decoder, hidden_size=d, num_heads=heads,
        num_kv_heads=heads, head_dim=c.int("d_kv"), intermediate_size=c.int("d_ff"),
        vocab_size=c.int("vocab_size"), tie_embeddings=c.bool("tie_word_embeddings", True),
        gated_mlp=gated, final_norms=2,
        extra_tensors=(TensorSpec("position_embedding", None, buckets, heads, bias_tables),),
        native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
        notes=("T5 relative attention: no absolute positions",),
    )
    return _encoder_decoder(shape, encoder, decoder)


def _same(c: _Config, *keys: str) -> int:
    values = {c.int(k) for k in keys}
    if len(values) != 1:
        raise InputError(f"{c.origin}: {' and '.join(keys)} differ; an encoder and decoder of "
                         "different widths are not modelled.")
    return values.pop()


def _bart(c: _Config, name: str) -> ModelShape:
    from vramest.model.shapes import ModelShape, TensorSpec

    d = c.int("d_model")
    heads = _same(c, "encoder_attention_heads", "decoder_attention_heads")
    ffn = _same(c, "encoder_ffn_dim", "decoder_ffn_dim")
    positions = c.int("max_position_embeddings") + 2  # BartLearnedPositionalEmbedding offset
    shape = ModelShape(
        name=name, family="bart", num_layers=0, hidden_size=d, num_heads=heads,
        num_kv_heads=heads, head_dim=d // heads, intermediate_size=ffn,
        vocab_size=c.int("vocab_size"), tie_embeddings=True, gated_mlp=False,
        attention_bias=True, attention_out_bias=True, mlp_bias=True, layer_norm_bias=True,
        norms_per_layer=2, final_norms=2,  # layernorm_embedding of each stack
        position_embeddings=positions,
        extra_tensors=(TensorSpec("position_embedding", None, positions, d),),
        max_context=positions - 2, native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
    )
    return _encoder_decoder(shape, c.int("encoder_layers"), c.int("decoder_layers"))


def _whisper(c: _Config, name: str) -> ModelShape:
    from vramest.model.shapes import ModelShape, TensorSpec

    d = c.int("d_model")
    heads = _same(c, "encoder_attention_heads", "decoder_attention_heads")
    ffn = _same(c, "encoder_ffn_dim", "decoder_ffn_dim")
    mels = c.int("num_mel_bins", default=80)
    frames = c.int("max_source_positions", default=1500)
    targets = c.int("max_target_positions", default=448)
    stems = (TensorSpec("conv", None, d, mels * 3), TensorSpec("bias", None, 1, d),
             TensorSpec("conv", None, d, d * 3), TensorSpec("bias", None, 1, d),
             TensorSpec("position_embedding", None, frames, d))
    shape = ModelShape(
        name=name, family="whisper", num_layers=0, hidden_size=d, num_heads=heads,
        num_kv_heads=heads, head_dim=d // heads, intermediate_size=ffn,
        vocab_size=c.int("vocab_size"), tie_embeddings=True, gated_mlp=False,
        attention_bias=True, attention_out_bias=True, key_bias=False, mlp_bias=True,
        layer_norm_bias=True, final_norms=2, position_embeddings=targets,
        extra_tensors=stems, max_context=targets, encoder_context=frames,
        native_dtype=c.str("torch_dtype") or c.str("dtype") or None,
        notes=(f"Whisper encoder: {frames} frames (30 s of audio) per sequence",),
    )
    return _encoder_decoder(shape, c.int("encoder_layers"), c.int("decoder_layers"))
