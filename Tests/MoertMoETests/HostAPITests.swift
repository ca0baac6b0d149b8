// HostAPITests: the host table plugins call — what it returns for impossible requests.

@testable import MoertMoE
import Testing

@Suite("Host API")
struct HostAPITests {
    @Test("alloc refuses sizes and alignments that do not fit (size_t above Int.max), and keeps working for real ones")
    func allocBounds() {
        let host = HostAPI.pointer.pointee
        for (size, alignment) in [(UInt.max, UInt(64)), (UInt(1) << 63, 64), (UInt(16), UInt.max), (UInt(1) << 62, 64)] {
            let p = host.alloc(Int(bitPattern: size), Int(bitPattern: alignment))
            #expect(p == nil, "alloc(\(size), \(alignment)) returned a pointer")
            host.free(p)
        }
        let p = host.alloc(1000, 0)
        #expect(p != nil && Int(bitPattern: p) % 64 == 0)
        host.free(p)
    }
}
