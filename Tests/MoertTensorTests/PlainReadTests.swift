// PlainReadTests: the plain read behind `moert bench --bandwidth` reads every whole 256-byte step once.

import CKernels
import Testing
@testable import MoertTensor

@Suite("Plain read")
struct PlainReadTests {
    @Test("moert_stream_read sums each float of the whole 256-byte steps once, over the worker threads")
    func sumsEveryStep() {
        // 4 MiB of floats i % 7, then a 100-byte tail that is left out.
        let count = (4 << 20) / 4, tail = 25
        var values = (0..<(count + tail)).map { Float($0 % 7) }
        let want = (0..<count).reduce(0.0) { $0 + Double($1 % 7) }
        let sum = values.withUnsafeBytes { moert_stream_read($0.baseAddress!, Int64($0.count)) }
        #expect(abs(Double(sum) - want) <= want * 1e-5, "\(sum) vs \(want)")
        values[0] = .nan
        #expect(values.withUnsafeBytes { moert_stream_read($0.baseAddress!, Int64($0.count)) }.isNaN)
        let rate = values.withUnsafeBytes { plainReadBytesPerSecond($0) }
        #expect(rate > 0 && rate.isFinite)
    }
}
