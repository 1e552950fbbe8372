#!/usr/bin/env python3
"""Write a copy of a GGUF file with its tensors converted to another block type.

Usage: requantize.py IN.gguf OUT.gguf TYPE   (TYPE: F32, F16, Q8_0, Q4_0, ...)
Uses the `gguf` package from PyPI. Lets the tests exercise every block type on real
weights without downloading more models.
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize, quantize


def main():
    src, dst, type_name = sys.argv[1], sys.argv[2], sys.argv[3]
    target = GGMLQuantizationType[type_name]
    r = GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = GGUFWriter(dst, arch)
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub_type=sub)
    for t in r.tensors:
        data = dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = [int(x) for x in reversed(t.shape.tolist())]
        data = data.reshape(shape)
        # 1-D tensors (norms) stay F32, as llama.cpp's converters keep them.
        qtype = target if data.ndim > 1 and data.shape[-1] % 32 == 0 else GGMLQuantizationType.F32
        if qtype == GGMLQuantizationType.F32:
            w.add_tensor(t.name, data)
        elif qtype == GGMLQuantizationType.F16:
            w.add_tensor(t.name, data.astype(np.float16))
        else:
            q = quantize(data, qtype)
            w.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
