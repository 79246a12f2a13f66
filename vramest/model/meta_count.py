"""Count an architecture the parser does not know by building it with transformers on the meta
device: every parameter's shape, no storage, no download and never `trust_remote_code`.

Only used when transformers is installed (the `calibrate` extra) and only for a config whose
model_type the parser refuses; the estimate path never imports torch otherwise. The layer
layout for the KV cache is still read from the config's standard attention keys, which is said
in the shape's notes; families whose memory is more than attention KV (recurrent state) stay
refused, since a parameter count does not tell their state size.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, replace
from vramest.model.shapes import (
    _NOT_MODELLED,
    ModelShape,
    TensorSpec,
    UnknownArchitecture,
    shape_from_config,
)

if TYPE_CHECKING:
    from typing import Any

_ROLE_PATTERNS = (  # parameter-name fragment -> tensor role (first match wins)
    (r"q_proj|query|\.wq\b", "attn_q"), (r"k_proj|\.key\b|\.wk\b", "attn_k"),
    (r"v_proj|value|\.wv\b", "attn_v"), (r"qkv|query_key_value|c_attn", "attn_qkv"),
    (r"o_proj|out_proj|attn.*dense|attention.*dense|\.wo\b|c_proj", "attn_o"),
    (r"gate_up|gate_proj|w1\b|wi_0", "ffn_gate"), (r"up_proj|w3\b|wi_1|fc1|c_fc", "ffn_up"),
    (r"down_proj|w2\b|fc2", "ffn_down"), (r"router|\.gate\.weight", "router"),
)


def transformers_available() -> bool:
    from importlib.util import find_spec

    return find_spec("transformers") is not None and find_spec("torch") is not None


def meta_shape(config: Mapping[str, Any], name: str, origin: str,
               refusal: UnknownArchitecture) -> ModelShape:
    """The shape of `config` with its tensors counted on the meta device, or `refusal` raised."""
    family = refusal.family
    if family in _NOT_MODELLED or not transformers_available():
        raise refusal
    import torch
    import transformers

    known = transformers.models.auto.configuration_auto.CONFIG_MAPPING_NAMES
    if family not in known:
        raise InputError(f"{refusal} (transformers {transformers.__version__} does not "
                         f"implement {family!r} either; trust_remote_code stays off)") from None
    values = {k: v for k, v in config.items() if k not in (
        "model_type", "architectures", "auto_map", "quantization_config")}
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # its config warnings are not the user's concern
    try:
        hf_config = transformers.AutoConfig.for_model(family, **values)
        with torch.device("meta"):
            try:
                model = transformers.AutoModelForCausalLM.from_config(hf_config)
            except ValueError:
                model = transformers.AutoModel.from_config(hf_config)
    except Exception as exc:  # any failure to build is a refusal, said plainly
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{refusal} (building it on the meta device failed: {first})") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    base = shape_from_config(config, name, origin, generic_decoder=True)
    layers, global_tensors = _count(torch, model)
    if len(layers) != base.num_layers:
        raise InputError(f"{refusal} (the built model has {len(layers)} repeated blocks where "
                         f"the config says {base.num_layers})") from None
    return replace(base, explicit_layers=tuple(layers), explicit_global=tuple(global_tensors),
                   notes=(*base.notes, f"parameters counted on the meta device with "
                          f"transformers {transformers.__version__}"))


def _count(torch: Any, model: Any) -> tuple[list[tuple[TensorSpec, ...]], list[TensorSpec]]:
    """Per repeated block (the longest ModuleList) its tensors, and every other tensor."""
    blocks = max((m for m in model.modules() if isinstance(m, torch.nn.ModuleList)),
                 key=len, default=())
    in_blocks: set[int] = set()
    layers = []
    for block in blocks:
        tensors = []
        for pname, param in block.named_parameters():
            in_blocks.add(id(param))
            tensors.append(_spec(pname, tuple(param.shape), None))
        layers.append(tuple(sorted(tensors, key=lambda t: (t.role, t.rows, t.cols))))
    embedding = model.get_input_embeddings()
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    special = {id(getattr(embedding, "weight", None)): "embedding",
               id(getattr(output, "weight", None)): "lm_head"}
    global_tensors = [
        TensorSpec(special[id(p)], None, *_matrix(tuple(p.shape))) if id(p) in special
        else _spec(pname, tuple(p.shape), None)
        for pname, p in model.named_parameters() if id(p) not in in_blocks]  # tied: listed once
    return layers, global_tensors


def _matrix(dims: tuple[int, ...]) -> tuple[int, int]:
    if not dims:
        return 1, 1
    cols = dims[-1]
    rows = 1
    for d in dims[:-1]:
        rows *= d
    return rows, cols


def _spec(pname: str, dims: tuple[int, ...], layer: int | None) -> TensorSpec:
    rows, cols = _matrix(dims)
    if len(dims) < 2:
        return TensorSpec("norm" if "norm" in pname.lower() else "bias", layer, rows, cols)
    lower = pname.lower()
    role = next((r for pattern, r in _ROLE_PATTERNS if re.search(pattern, lower)), "ffn_up")
    if "expert" in lower and role.startswith("ffn_"):
        role = "expert_" + role.removeprefix("ffn_")
    if "embed" in lower:
        role = "position_embedding" if "pos" in lower else "embedding"
    if role.startswith("expert_") and len(dims) == 3:  # grouped experts: one slab per expert
        return TensorSpec(role, layer, dims[1], dims[2], dims[0])
    return TensorSpec(role, layer, rows, cols)
