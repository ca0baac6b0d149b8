// HostAPITests: the host table plugins call — what it returns for impossible requests.

import CMoert
@testable import MoertMoE
import Testing

@Suite("Host API")
struct HostAPITests {
    @Test("alloc refuses sizes and alignments that do not fit (size_t above Int.max), and keeps working for real ones")
    func allocBounds() {
        let host = HostAPI.pointer.pointee
        for (size, alignment) in [(UInt.max, UInt(64)), (UInt(1) << 63, 64), (UInt(16), UInt.max), (UInt(1) << 62, 64),
                                   (UInt(HostAPI.maxAllocation + 1), 64)] {
            let p = host.alloc(Int(bitPattern: size), Int(bitPattern: alignment))
            #expect(p == nil, "alloc(\(size), \(alignment)) returned a pointer")
            host.free(p)
        }
        let p = host.alloc(1000, 0)
        #expect(p != nil && Int(bitPattern: p) % 64 == 0)
        host.free(p)
    }

    @Test("a kind registered through the host table outside moert_plugin_init is refused")
    func registrationOutsideInit() {
        let create: @convention(c) (UnsafePointer<moert_host_api>?, OpaquePointer?, UnsafePointer<moert_layer_info>?,
                                    UnsafeMutablePointer<moert_router_caps>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> moert_status = { _, _, _, _, _ in MOERT_OK }
        let route: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<moert_router_input>?, UnsafeMutablePointer<moert_router_output>?) -> moert_status = { _, _, _ in MOERT_OK }
        let destroy: @convention(c) (UnsafeMutableRawPointer?) -> Void = { _ in }
        let status = "late.kind".withCString { name -> moert_status in
            var ops = moert_router_ops(struct_size: UInt32(MemoryLayout<moert_router_ops>.size), abi_version: UInt32(MOERT_PLUGIN_ABI_VERSION),
                                       name: name, create: create, route: route, destroy: destroy)
            return HostAPI.pointer.pointee.register_router(nil, &ops)
        }
        #expect(status == MOERT_ERR_PLUGIN)
        #expect(pluginError.take()?.contains("only from moert_plugin_init") == true)
        #expect(!PluginRegistry.shared.routerNames.contains("late.kind"))
    }
}
