"""The operators a graph file may run without the user's explicit trust: pure tensor operators.

"Pure" means the operator reads its arguments and returns (or updates in place) tensors, numbers,
lists or strings, and does nothing else: no file, no network, no process, no native extension
class. The list was started from the operators that scripting and tracing every torchvision
classification family (ResNet, DenseNet, EfficientNet, MobileNet, ConvNeXt, RegNet, ViT, Swin,
MaxViT, Inception, ...) produces, and completed with the rest of each family of arithmetic, shape,
reduction, normalisation, pooling and resampling operators a medical-imaging CNN or transformer
uses. It is written out rather than derived from PyTorch's schemas on purpose: a new PyTorch
release cannot add to it unseen.

Deliberately absent (each is refused by name, and runs only if the user trusts the file):
``aten::from_file`` (maps or creates a file), ``aten::save``/``aten::load`` and the other
pickling operators, ``prim::Print``, ``aten::set_`` (re-points a tensor at a storage), custom
namespaces (``torchvision::``, ``quantized::``, extension libraries) and ``torch.classes`` objects.
"""

from __future__ import annotations


def _aten(names: str) -> set[str]:
    return {f"aten::{name}" for name in names.split()}


_ARITHMETIC = _aten("""
    abs abs_ acos add add_ addcdiv addcmul addmm addbmm asin atan atan2 baddbmm bmm ceil clamp clamp_
    clamp_max clamp_max_ clamp_min clamp_min_ clip cos cosh cumsum cumprod div div_ dot einsum erf erf_
    exp exp_ expm1 floor floor_divide floordiv fmod frac lerp log log_ log10 log1p log2 logaddexp matmul
    maximum minimum mm mul mul_ mv neg neg_ pow pow_ reciprocal remainder round rsqrt rsub sign sin sinh
    sqrt sqrt_ square sub sub_ tan true_divide trunc where nan_to_num outer
""")
_LOGIC = _aten("""
    eq ne lt le gt ge __and__ __or__ __xor__ __not__ __is__ __isnot__ __contains__ logical_and
    logical_or logical_not logical_xor isnan isinf isfinite all any equal bitwise_and bitwise_or
    bitwise_not
""")
_ACTIVATIONS = _aten("""
    relu relu_ relu6 leaky_relu leaky_relu_ elu elu_ selu selu_ celu gelu silu silu_ mish mish_
    hardswish hardswish_ hardsigmoid hardsigmoid_ hardtanh hardtanh_ sigmoid sigmoid_ tanh tanh_
    softplus softmax log_softmax prelu glu threshold threshold_ logsigmoid
""")
_LAYERS = _aten("""
    conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d _convolution convolution
    max_pool1d max_pool2d max_pool3d max_pool2d_with_indices max_pool3d_with_indices avg_pool1d
    avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d
    adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d batch_norm instance_norm layer_norm
    group_norm linear bilinear dropout dropout_ feature_dropout feature_dropout_ alpha_dropout
    alpha_dropout_ bernoulli bernoulli_ embedding upsample_nearest1d upsample_nearest2d
    upsample_nearest3d upsample_linear1d upsample_bilinear2d upsample_bicubic2d upsample_trilinear3d
    _upsample_nearest_exact2d pixel_shuffle pixel_unshuffle pad constant_pad_nd reflection_pad1d
    reflection_pad2d reflection_pad3d replication_pad1d replication_pad2d replication_pad3d
    _native_multi_head_attention scaled_dot_product_attention linalg_vector_norm norm
    cosine_similarity normalize im2col col2im unfold fold channel_shuffle
""")
_SHAPES = _aten("""
    size dim numel view reshape flatten unflatten permute transpose t contiguous squeeze squeeze_
    unsqueeze unsqueeze_ expand expand_as repeat repeat_interleave cat concat stack split
    split_with_sizes chunk unbind select slice index index_select index_put index_put_ gather
    scatter scatter_add narrow roll flip tile movedim moveaxis swapaxes swapdims masked_fill
    masked_fill_ view_as reshape_as
    _set_item append len __getitem__ list keys values items dict tril triu
""")
_REDUCTIONS = _aten("""
    sum mean max min amax amin argmax argmin prod std var topk sort argsort logsumexp median
""")
_CREATION = _aten("""
    zeros zeros_like ones ones_like full full_like empty empty_like new_zeros new_ones new_full
    new_empty arange linspace tensor scalar_tensor eye rand rand_like randn randn_like
""")
_VALUES = _aten("""
    to type_as detach detach_ clone copy copy_ fill_ zero_ item is_floating_point is_grad_enabled
    is_autocast_enabled format warn str Int Float Bool ScalarImplicit IntImplicit FloatImplicit
    __range_length __derive_index __getattr__ dtype device float int
""")
_PRIM = {
    "prim::RaiseException", "prim::NumToTensor", "prim::device", "prim::dtype", "prim::is_nested",
    "prim::requires_grad", "prim::type", "prim::layout", "prim::is_cuda", "prim::data", "prim::shape",
    "prim::min", "prim::max", "prim::abs", "prim::unchecked_unwrap_optional", "prim::Uninitialized",
}  # fmt: skip

ALLOWED_OPERATORS: frozenset[str] = frozenset(
    _ARITHMETIC | _LOGIC | _ACTIVATIONS | _LAYERS | _SHAPES | _REDUCTIONS | _CREATION | _VALUES | _PRIM
)

# TorchScript's own builtins, printed as plain names in its serialized code.
SCRIPT_BUILTINS: frozenset[str] = frozenset({
    "annotate", "unchecked_cast", "uninitialized", "range", "enumerate", "zip", "len", "int", "float",
    "bool", "str", "getattr", "hasattr", "isinstance", "min", "max", "abs", "round", "divmod", "tuple",
    "list", "dict", "sorted",
})  # fmt: skip

__all__ = ["ALLOWED_OPERATORS", "SCRIPT_BUILTINS"]
