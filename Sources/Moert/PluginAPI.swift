// PluginAPI: loading plugins, in-process registration, and listing kinds.

import CMoert
import MoertMoE

/// Loads a plugin library. The C entry point is `moert_plugin_load`.
@c @implementation public func moert_plugin_load(_ path: UnsafePointer<CChar>!) -> moert_status {
    withStatus { try PluginRegistry.shared.load(String(cString: try require(path, "path"))) }
}

/// Registers a router kind from the host. The C entry point is `moert_register_router`.
@c @implementation public func moert_register_router(_ ops: UnsafePointer<moert_router_ops>!) -> moert_status {
    withStatus { try PluginRegistry.shared.register(router: try require(ops, "ops").pointee, source: "host") }
}

/// Registers an expert kind from the host. The C entry point is `moert_register_expert`.
@c @implementation public func moert_register_expert(_ ops: UnsafePointer<moert_expert_ops>!) -> moert_status {
    withStatus { try PluginRegistry.shared.register(expert: try require(ops, "ops").pointee, source: "host") }
}

/// Names of the registered kinds, as C strings that live as long as the process.
let kindNames = CStringCache()

/// The number of registered kinds. The C entry point is `moert_kind_count`.
@c @implementation public func moert_kind_count(_ kind: Int32) -> Int32 {
    switch kind {
    case MOERT_KIND_ROUTER: return Int32(PluginRegistry.shared.routerNames.count)
    case MOERT_KIND_EXPERT: return Int32(PluginRegistry.shared.expertNames.count)
    default: return 0
    }
}

/// The name of a registered kind. The C entry point is `moert_kind_name`.
@c @implementation public func moert_kind_name(_ kind: Int32, _ index: Int32) -> UnsafePointer<CChar>! {
    let names: [String]
    switch kind {
    case MOERT_KIND_ROUTER: names = PluginRegistry.shared.routerNames
    case MOERT_KIND_EXPERT: names = PluginRegistry.shared.expertNames
    default: return nil
    }
    guard index >= 0 && Int(index) < names.count else { return nil }
    return kindNames.cString(names[Int(index)])
}

/// Unregisters plugin kinds and unloads libraries. The C entry point is `moert_shutdown`.
@c @implementation public func moert_shutdown() -> moert_status {
    withStatus { try PluginRegistry.shared.shutdown() }
}
