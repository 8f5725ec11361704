"""Int8 weights computed in float: a model file a quarter of fp32's, whose results do not depend on the batch or the CPU.

`onnxruntime.quantization.quantize_dynamic` quantises each matrix product's activations with one
scale for the whole input tensor (`DynamicQuantizeLinear`), so a text's result depends on the other
texts and the padding in its batch; and ONNX Runtime's integer kernels differ between CPUs (AVX2's
u8 x s8 pair sums saturate at 16 bits, AVX-512 VNNI's do not). Quantising each row on its own removes
the first, 7-bit weights the second, but not a third: a last-bit difference of a float operation
before the quantiser (ONNX Runtime's softmax differs by one unit in the last place between AVX2 and
AVX-512) moves a value across a rounding step, and the step shows in the result (measured on the
reader: 1e-3 of a score between an emulated Haswell and this machine, `bench/numerics.py`).

So the int8 weights are kept in the file and dequantized in the graph, and the products are float.
"""

from __future__ import annotations

from typing import Any


def weight_only(model: Any) -> Any:
    """The same onnx model computing in float: each int8 product becomes its weight dequantized, then a float MatMul.

    The weights stay int8 in the file (a `DequantizeLinear` of each, per column), so the file keeps its
    size, while the activations are never quantized: no integer rounding can turn a last-bit difference
    of an earlier float operation into a step of the result, as activations quantised row by row can.
    Float throughout, a result differs between CPUs by float rounding only (1e-7 here), and not at all
    with the batch.
    """
    from onnx import helper

    graph = model.graph
    producer = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    dropped: set[int] = set()
    replaced: dict[int, list[Any]] = {}
    for node in graph.node:
        if node.op_type != "MatMulInteger":
            continue
        quantize = producer[node.input[0]]
        (cast,) = consumers[node.output[0]]
        (scaled,) = consumers[cast.output[0]]
        joint = next(name for name in scaled.input if name != cast.output[0])
        combined = producer[joint]
        weight_scale = next(name for name in combined.input if name != quantize.output[1])
        weight = f"{node.input[1]}_dequantized"
        replaced[id(scaled)] = [
            helper.make_node("DequantizeLinear", [node.input[1], weight_scale, node.input[3]], [weight], axis=1),
            helper.make_node("MatMul", [quantize.input[0], weight], list(scaled.output)),
        ]
        dropped |= {id(node), id(cast), id(combined), id(quantize)}
    nodes = [new for node in graph.node if id(node) not in dropped for new in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    return model
