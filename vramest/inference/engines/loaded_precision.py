"""The weight precision an engine loads when neither the user nor the checkpoint's name says:
Ollama's library ships Q4_K_M; transformers before 5.0 loads torch's default float32 unless
from_pretrained is given a dtype (5.0 made "auto", the checkpoint's own, the default)."""

from __future__ import annotations

from collections.abc import Mapping

# 16-bit checkpoints: a quantized one (GPTQ, AWQ, bitsandbytes, FP8, MXFP4) keeps its format
_FLOAT_FORMATS = ("bf16", "fp16", "fp32")


def engine_precision(engine: str, options: Mapping[str, object],
                     native_format: str | None) -> tuple[str, str] | None:
    """(the precision, the sentence saying why) when the engine's own default decides it."""
    if (native_format or "bf16") not in _FLOAT_FORMATS:
        return None
    name = engine.strip().lower()
    if name == "ollama":
        from vramest.model.names import OLLAMA_LIBRARY_PRECISION as library

        return library, (f"Weights: {library}, what Ollama's library ships when the tag names "
                         "no quantization; --dtype for another.")
    if name == "hf":
        from vramest.inference.engines.versions import hf_rules, parse_version

        version = parse_version("hf", options.get("version"))
        loaded = hf_rules(version).default_dtype
        if loaded is not None and loaded != native_format:
            return loaded, (f"Weights: {loaded}, what from_pretrained loads in {version.text} "
                            "without torch_dtype (torch's default dtype); --dtype bf16 for "
                            "torch_dtype=torch.bfloat16 or \"auto\".")
    return None


# Engines that run the GGUF file an Ollama tag pulls (the default engine too: a tag says
# Ollama); the others load the Hugging Face release the tag names, in its own precision
_LIBRARY_FILE_ENGINES = ("generic", "ollama", "llamacpp", "llamacpp-cli")


def checkpoint_instead(engine: str, library_format: str, own: str | None) -> tuple[str, str]:
    """(the precision, the sentence saying why) where an engine loads the Hugging Face
    checkpoint of a model named by an Ollama tag; for the engines that run Ollama's file, its
    library format and no sentence."""
    from vramest.inference.engines.aliases import resolve_engine

    name = resolve_engine(engine)[0]
    if name in _LIBRARY_FILE_ENGINES:
        return library_format, ""
    loaded = own or "bf16"
    return loaded, (f"Weights: {loaded}, the checkpoint's own: {name} loads the Hugging Face "
                    f"release the Ollama tag names, not Ollama's {library_format} file; --dtype "
                    "for another.")
