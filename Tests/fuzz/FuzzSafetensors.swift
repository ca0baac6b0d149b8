// FuzzSafetensors: libFuzzer target for the safetensors header parser (bytes → SafetensorsFile).

import MoertCore
import MoertFormats
import MoertMoE
import MoertTensor

/// Opens the input as a .safetensors file. An accepted file must describe only tensors that lie inside it with the
/// size their shape and dtype imply; every float tensor is then converted, reading each of its bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let path = FuzzScratch.write("input.safetensors", data, size)
    expectingMoertError {
        let file = try SafetensorsFile(path: path)
        invariant(file.names.count == file.tensors.count, "names and tensors disagree")
        for name in file.names {
            guard let info = file.tensors[name] else { fatalError("\(name) listed but not in tensors") }
            let elements = info.shape.reduce(1, *)
            invariant(info.offset >= 8 && info.byteCount >= 0, "\(name): negative extent")
            invariant(info.offset <= file.file.size - info.byteCount, "\(name): data past the end of the file")
            invariant(elements * info.dtype.size == info.byteCount, "\(name): shape and byte count disagree")
            if let storage = info.dtype.weightStorage, info.count > 0 {
                let buffer = try FloatBuffer(count: info.count)
                convertToFloat(file.data(info), storage: storage, count: info.count, into: buffer.pointer)
            }
        }
    }
    return 0
}
