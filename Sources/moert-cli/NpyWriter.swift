// NpyWriter: writes a float32 array as a NumPy .npy file (format version 1.0).

#if canImport(Glibc)
import Glibc
#endif
import MoertTensor

/// Writes `data` with `shape` to `path` as little-endian float32 `.npy`.
/// - Throws: `MoertError` (`.io`) when the file cannot be written.
func writeNpy(path: String, shape: [Int], data: [Float]) throws {
    let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
    var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64 bytes.
    let unpadded = 10 + header.utf8.count + 1
    header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
    var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
    let len = UInt16(header.utf8.count)
    bytes += [UInt8(len & 0xFF), UInt8(len >> 8)]
    bytes += Array(header.utf8)
    guard let f = fopen(path, "wb") else { throw MoertError(.io, "\(path): cannot open for writing: \(String(cString: strerror(errno)))") }
    defer { fclose(f) }
    let ok = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) == $0.count }
        && data.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) == $0.count }
    guard ok else { throw MoertError(.io, "\(path): write failed") }
}
