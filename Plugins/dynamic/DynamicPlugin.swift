// DynamicPlugin: the entry point of the `dynamic` plugin library, which registers the router kinds `topp`
// (TopPRouter.swift) and `adamoe` (AdaMoERouter.swift).
//
// Sources: top-p — Huang et al., "Harder Tasks Need More Experts: Dynamic Routing in MoE Models" (ACL 2024),
// ZhenweiAn/Dynamic_MoE `modeling/modeling_moe.py`; AdaMoE — Zeng et al., "AdaMoE: Token-Adaptive Routing with
// Null Experts for Mixture-of-Experts Language Models" (Findings of EMNLP 2024), CengZihao/AdaMoE
// `exp_2/LLaMA_Factory/src/llamafactory/model/adaptive_moe_utils.py` (ALGORITHMS.md sections 6 and 7).
// Math in brief: topp keeps the highest-probability experts until their cumulative softmax probability exceeds
// `threshold` (weights not renormalised); adamoe takes the top-k of a softmax over E true + m null experts and
// renormalises the true experts' weights (count 0 when only null experts are picked).
// Params and tensors: topp — `threshold`, `max_experts`; `P gate.weight` [E, H]. adamoe — `top_k`;
// `P gate.weight` [E, H], `P gate2.weight` [m, H].
// The exact math, parameter ranges and shapes are at the top of each kind's file (and in docs/model-format.md).
//
// Threads: moert_plugin_init may be called from any thread; the registered tables are built once, on first use,
// and never change or move while the library is loaded.

import CMoert
#if canImport(Glibc)
import Glibc
#endif

/// The registered ops tables. The host keeps pointers to them (and to their name strings) while the library is
/// loaded, so they live in heap storage that is never freed. nil when an allocation failed.
nonisolated(unsafe) private let routerTables: [UnsafeMutablePointer<moert_router_ops>]? = {
    var tables: [UnsafeMutablePointer<moert_router_ops>] = []
    for (name, ops) in [(TopPRouter.kind, TopPRouter.ops()), (AdaMoERouter.kind, AdaMoERouter.ops())] {
        guard let cName = strdup(name) else { return nil }
        var table = ops
        table.name = UnsafePointer(cName)
        let storage = UnsafeMutablePointer<moert_router_ops>.allocate(capacity: 1)
        storage.initialize(to: table)
        tables.append(storage)
    }
    return tables
}()

/// Checks the host's ABI version and table size, then registers `topp` and `adamoe`.
/// The C entry point is `moert_plugin_init`.
@c @implementation public func moert_plugin_init(_ host: UnsafePointer<moert_host_api>!,
                                                 _ context: UnsafeMutableRawPointer!) -> moert_status {
    var setError: SetErrorFunction?
    do throws(PluginFailure) {
        let access = try HostAccess(host, kind: "dynamic")
        setError = access.setError
        guard let register = access.api.pointee.register_router else {
            throw .plugin("dynamic: host has no register_router")
        }
        guard let tables = routerTables else { throw PluginFailure(MOERT_ERR_OUT_OF_MEMORY, "dynamic: out of memory") }
        for table in tables {
            let status = register(context, table)
            // The host has set its own message (e.g. a kind registered twice).
            guard status == MOERT_OK else { return status }
        }
        return MOERT_OK
    } catch {
        return error.report(setError ?? HostAccess.setErrorIfCovered(host))
    }
}
