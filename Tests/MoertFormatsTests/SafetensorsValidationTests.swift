// SafetensorsValidationTests: truncated and lying safetensors files are refused with a message naming the problem.

import Testing
import MoertFormats
import MoertTensor
import MoertTestSupport

@Suite("Safetensors validation")
struct SafetensorsValidationTests {
    /// Writes `bytes` as a file and opens it.
    func open(_ bytes: [UInt8]) throws -> MoertError? {
        let dir = try TemporaryDirectory()
        try dir.write("t.safetensors", bytes)
        return moertError { _ = try SafetensorsFile(path: dir.path + "/t.safetensors") }
    }

    static let cases: [(String, [UInt8], MoertError.Code, String)] = [
        ("empty file", [], .format, "truncated"),
        ("short length prefix", [1, 0, 0], .format, "truncated"),
        ("header length past the end", safetensorsBytes(header: "{}", declaredLength: 4096), .format, "runs past the end"),
        ("header length of terabytes", safetensorsBytes(header: "{}", declaredLength: 1 << 40), .format, "exceeds"),
        ("header not JSON", safetensorsBytes(header: "{nope"), .format, "invalid JSON"),
        ("header not an object", safetensorsBytes(header: "[1, 2]"), .format, "not a JSON object"),
        ("missing dtype", safetensorsBytes(header: #"{"a": {"shape": [1], "data_offsets": [0, 4]}}"#, data: [0, 0, 0, 0]), .format, "missing dtype"),
        ("unknown dtype", safetensorsBytes(header: #"{"a": {"dtype": "F8_E5M2", "shape": [1], "data_offsets": [0, 1]}}"#, data: [0]), .unsupported, "F8_E5M2"),
        ("offsets past the data", safetensorsBytes(header: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#, data: [0, 0, 0, 0]), .format, "run past"),
        ("shape disagrees with offsets", safetensorsBytes(header: #"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#, data: [UInt8](repeating: 0, count: 8)), .format, "needs 3 elements"),
        ("reversed offsets", safetensorsBytes(header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}"#, data: [UInt8](repeating: 0, count: 8)), .format, "data_offsets"),
        ("negative dimension", safetensorsBytes(header: #"{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#, data: [0, 0, 0, 0]), .format, "bad dimension"),
        ("shape that overflows", safetensorsBytes(header: #"{"a": {"dtype": "F32", "shape": [2147483647, 2147483647, 2147483647], "data_offsets": [0, 4]}}"#, data: [0, 0, 0, 0]), .format, "overflows"),
        ("overlapping tensors", safetensorsBytes(header: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#, data: [UInt8](repeating: 0, count: 8)), .format, "overlaps the tensor before it"),
        ("the same bytes twice", safetensorsBytes(header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#, data: [0, 0, 0, 0]), .format, "overlaps"),
        ("a gap between tensors", safetensorsBytes(header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}"#, data: [UInt8](repeating: 0, count: 12)), .format, "leaves 4 bytes unused"),
        ("data not starting at 0", safetensorsBytes(header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#, data: [UInt8](repeating: 0, count: 8)), .format, "leaves 4 bytes unused"),
        ("bytes after the last tensor", safetensorsBytes(header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#, data: [UInt8](repeating: 0, count: 9)), .format, "cover 4 of the 9 data bytes"),
        ("duplicate tensor name", safetensorsBytes(header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#, data: [0, 0, 0, 0]), .format, "duplicate key"),
    ]

    @Test("malformed files", arguments: cases.indices)
    func malformed(index: Int) throws {
        let (name, bytes, code, fragment) = Self.cases[index]
        let error = try open(bytes)
        #expect(error?.code == code, "\(name)")
        #expect(error?.message.contains(fragment) == true, "\(name): \(error?.message ?? "no error")")
        #expect(error?.message.contains("t.safetensors") == true, "\(name): message names the file")
    }

    @Test("a well-formed file reads back")
    func wellFormed() throws {
        let dir = try TemporaryDirectory()
        try dir.write("t.safetensors", safetensorsBytes(tensors: [("w", [2, 2], [1, 2, 3, 4]), ("b", [2], [5, 6])]))
        let file = try SafetensorsFile(path: dir.path + "/t.safetensors")
        #expect(file.names == ["w", "b"])
        let w = try #require(file.tensors["w"])
        #expect(w.shape == [2, 2] && w.dtype == .f32)
        let p = file.data(w)
        #expect((0..<4).map { p.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } == [1, 2, 3, 4])
    }

    @Test("a missing file is an I/O error naming the path")
    func missingFile() {
        let e = moertError { _ = try SafetensorsFile(path: "/nonexistent/x.safetensors") }
        #expect(e?.code == .io)
        #expect(e?.message.contains("/nonexistent/x.safetensors") == true)
    }
}
