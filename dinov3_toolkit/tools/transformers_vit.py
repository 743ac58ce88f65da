"""One of our ViTs rebuilt as Hugging Face transformers' ``DINOv3ViTModel``, with the same weights.

An implementation we did not write, for side-by-side checks: the benchmark
times it against ours (``dinov3 bench``, stage ``transformers``) and the tests
compare features. ``transformers`` is an optional dependency, imported here only.
"""

from __future__ import annotations

from typing import Any

from ..backbone.vit import DinoVisionTransformer, to_hf_state_dict
from ..errors import MissingExtra


def to_transformers(model: DinoVisionTransformer) -> Any:
    """A ``transformers.DINOv3ViTModel`` computing what ``model`` computes, on its device, in eval mode.

    The RoPE periods are shared too: transformers recomputes fp32 periods, the
    released weights carry bf16-rounded ones (``rope.py``).
    """
    try:
        import transformers
    except ImportError as e:
        raise MissingExtra("comparing with Hugging Face needs transformers: pip install 'transformers>=5.0' "
                           "(or skip that stage: dinov3 bench --no-transformers)") from e
    if not isinstance(model, DinoVisionTransformer):
        raise TypeError(f"only DINOv3 ViTs have a transformers twin here, got {type(model).__name__}")
    block = model.blocks[0]
    gated = model.ffn_layer == "swiglu"
    qkv_bias = block.attn.qkv.bias is not None
    config = transformers.DINOv3ViTConfig(
        hidden_size=model.embed_dim,
        intermediate_size=block.mlp.w1.out_features if gated else block.mlp.fc1.out_features,
        num_hidden_layers=model.num_layers,
        num_attention_heads=block.attn.num_heads,
        use_gated_mlp=gated,
        hidden_act="silu" if gated else "gelu",
        query_bias=qkv_bias,
        value_bias=qkv_bias,
        num_register_tokens=4,
        patch_size=16,
    )
    twin = transformers.DINOv3ViTModel(config)
    state = to_hf_state_dict(model.state_dict())
    # transformers >= 5 names the encoder layers model.layer.N.
    twin.load_state_dict({("model." + k if k.startswith("layer.") else k): v for k, v in state.items()}, strict=True)
    twin.rope_embeddings.inv_freq = 1.0 / model.rope_embed.periods.detach().clone()
    return twin.to(model.rope_embed.periods.device).eval()
