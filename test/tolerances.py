"""How far two correct floating-point computations of one network may disagree, from the arithmetic.

Every rounding is off by at most the unit roundoff u (2**-24 in fp32), and a K-term dot product or
sum rounds K times. Kernels for different CPUs (AVX2, AVX-512, oneDNN, aarch64) and thread counts
add in different orders, so their results differ by rounding alone. Worst-case analysis bounds that by
K * u, far too loose to catch anything; but the roundings are independent and of either sign, so they
grow like a random walk: sqrt(K) * u relative to the magnitude of the values (Higham & Mary, "A New
Approach to Probabilistic Rounding Error Analysis", SIAM J. Sci. Comput. 41(5), 2019). A network of
L such layers, normalised so each passes earlier errors on with gain ~1, adds L independent terms:
sqrt(K * L) * u in all. Sums that torch does pairwise or by Welford (means, norm statistics) grow like
log K and are covered by the largest dot product.

That is one element's typical error; a comparison takes the largest of n elements, about sqrt(2 ln n)
standard deviations out, and compares two such computations, each with its own error: a factor
sqrt(2) more. The magnitude is the largest |value| of the reference, which is at least the scale of the
values each rounding acted on at the output.

Measured on the reference tests (pytest -m reference, ATEN_CPU_CAPABILITY default, avx2 and avx512,
oneDNN at SSE4.1, 1 and 2 threads, on AVX-512 hardware): the worst difference is 0.36 of this bound
(the seeded initialisation on the portable kernels), 0.05 for any network output; the head that failed
a fixed atol=1e-5 on an AMD EPYC (1.7e-5) is at 0.07 of it. Changing one weight by 1% of its tensor's
norm exceeds it (``perturb_one_element_``), so the bound is both portable and tight enough to catch a
real bug.
"""

from __future__ import annotations

import math

import numpy as np
import torch

FP32_UNIT_ROUNDOFF = 2.0**-24  # half the distance from 1.0 to the next fp32


def rounding_atol(reference: torch.Tensor | np.ndarray, *, reduction: int, depth: int = 1,
                  unit_roundoff: float = FP32_UNIT_ROUNDOFF) -> float:
    """The absolute tolerance for comparing two correct computations of ``reference``.

    ``reduction`` is the longest dot product or sum one layer rounds (K: in x kh x kw for a conv,
    the inner dimension of a matmul); ``depth`` the number of such layers on the longest path to the
    output. See the module docstring for the derivation.
    """
    if reduction < 1 or depth < 1:
        raise ValueError(f"reduction and depth must be >= 1, got reduction={reduction!r}, depth={depth!r}")
    values = torch.as_tensor(reference).detach().double()
    count = max(values.numel(), 2)
    spread = math.sqrt(2.0) * math.sqrt(2.0 * math.log(count))  # two computations, the largest of n elements
    magnitude = values.abs().max().item() if values.numel() else 0.0  # nothing to compare: any atol
    return spread * math.sqrt(reduction * depth) * unit_roundoff * magnitude


def perturb_one_element_(parameter: torch.Tensor, relative: float = 0.01) -> None:
    """Add ``relative`` times the parameter's norm to its first element: a small (1%) but real weight bug.

    The change is measured against the whole tensor's norm, not one element's spread: one element of a
    K-term dot product moved by a fraction of its spread changes the output by as little as that over
    sqrt(K), which is below what any portable fp32 comparison can resolve.
    """
    with torch.no_grad():
        norm = parameter.norm().item()
        if norm == 0.0:
            raise ValueError(f"cannot perturb an all-zero tensor of shape {tuple(parameter.shape)} by a relative amount")
        parameter[(0,) * parameter.dim()] += relative * norm  # any layout, scalars too


def vit_rounding(model: torch.nn.Module, block: int, tokens: int) -> tuple[int, int]:
    """(reduction, depth) for a DINOv3 ViT's output after block ``block`` (0-based) on ``tokens`` tokens.

    The patch embedding, then per block the qkv matmul, q.k, attention times v, the projection and the
    two MLP matmuls; the longest sum is the patch (16 x 16 x 3), the MLP's hidden width or the token count.
    """
    mlp = model.blocks[0].mlp
    hidden = mlp.w3.in_features if hasattr(mlp, "w3") else mlp.fc2.in_features  # SwiGLU or plain MLP
    return max(16 * 16 * 3, hidden, tokens), 1 + 6 * (block + 1)


# Layers on the longest path through a built-in or template head: the flow template's refined flow
# (test_head_flow.py; depth 20, detection 10, segmentation 7).
DEEPEST_HEAD = 42


def export_atol(engine) -> float:
    """onnxruntime against PyTorch on ``engine``'s exported ViT graph, as ``compare_with_onnxruntime`` runs it."""
    from dinov3_toolkit.tools.export import ExportGraph, example_input

    example = example_input(engine)
    with torch.inference_mode():
        outputs = ExportGraph(engine).eval()(*example)
    backbone = engine.extractor.backbone
    height, width = example[0].shape[-2:]
    tokens = (height // 16) * (width // 16) + 1 + backbone.storage_tokens.shape[1]  # patches, class, registers
    reduction, depth = vit_rounding(backbone, len(backbone.blocks) - 1, tokens)
    return rounding_atol(torch.cat([t.float().flatten() for t in outputs]), reduction=reduction,
                         depth=depth + DEEPEST_HEAD)
