// PluginRegistry: the process-wide table of router and expert kinds and of loaded plugin libraries.

import CMoert
import MoertTensor
#if canImport(Glibc)
import Glibc
#endif

/// A registered router kind: its C table (copied) and where it came from.
public struct RouterKind: @unchecked Sendable {
    /// The kind's name.
    public let name: String
    let ops: moert_router_ops
    /// The library path, or "host" for in-process registrations.
    public let source: String
}

/// A registered expert kind.
public struct ExpertKind: @unchecked Sendable {
    /// The kind's name.
    public let name: String
    let ops: moert_expert_ops
    /// The library path, or "host" for in-process registrations.
    public let source: String
    /// MOERT_EXPERT_* flags.
    public var flags: UInt32 { ops.flags }
}

/// The process-wide registry. All members are guarded by one lock.
public final class PluginRegistry: @unchecked Sendable {
    /// The registry of this process.
    public static let shared = PluginRegistry()

    private let lock = Lock()
    /// Serialises `load` and `shutdown`. A library's init runs outside `lock` (it calls back into `register`), so
    /// without this two threads loading the same library could both run its init and the second would fail with
    /// "already registered", and `loading` would name the wrong library.
    private let loadLock = Lock()
    private var routers: [RouterKind] = []
    private var experts: [ExpertKind] = []
    /// Loaded libraries: canonical path → dlopen handle.
    private var libraries: [(path: String, handle: UnsafeMutableRawPointer)] = []
    /// Models alive; plugins are unloaded only when none is.
    private var liveModels = 0
    /// The library whose init is running (names the source of kinds it registers), and the thread running it.
    private var loading: String?
    private var loadingThread: pthread_t?

    /// True on the thread running a plugin library's init: the only place its host table may register kinds.
    func isInitializingOnThisThread() -> Bool {
        lock.withLock { loadingThread.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    private init() {}

    // MARK: - Registration

    /// Registers a router kind after checking its table.
    /// - Throws: `MoertError` (`.plugin`) naming `source` on a bad table or a duplicate name.
    public func register(router ops: moert_router_ops, source: String? = nil) throws {
        let src = source ?? loading ?? "host"
        let name = try Self.checkTable(size: ops.struct_size, minimum: MemoryLayout<moert_router_ops>.size,
                                       abi: ops.abi_version, name: ops.name, what: "router", source: src)
        guard ops.create != nil, ops.route != nil, ops.destroy != nil else {
            throw MoertError(.plugin, "\(src): router kind \(name) lacks create, route or destroy")
        }
        try lock.withLock {
            guard !BuiltinKind.routers.contains(name), !routers.contains(where: { $0.name == name }) else {
                let other = routers.first { $0.name == name }?.source ?? "built-in"
                throw MoertError(.plugin, "\(src): router kind \(name) is already registered (by \(other))")
            }
            routers.append(RouterKind(name: name, ops: ops, source: src))
        }
    }

    /// Registers an expert kind after checking its table.
    /// - Throws: `MoertError` (`.plugin`) naming `source` on a bad table or a duplicate name.
    public func register(expert ops: moert_expert_ops, source: String? = nil) throws {
        let src = source ?? loading ?? "host"
        let name = try Self.checkTable(size: ops.struct_size, minimum: MemoryLayout<moert_expert_ops>.size,
                                       abi: ops.abi_version, name: ops.name, what: "expert", source: src)
        let known = MOERT_EXPERT_ZERO_COMPUTE | MOERT_EXPERT_OUTPUT_ZERO | MOERT_EXPERT_OUTPUT_IDENTITY
        guard ops.flags & ~known == 0 else {
            throw MoertError(.plugin, "\(src): expert kind \(name) has unknown flag bits 0x\(String(ops.flags & ~known, radix: 16))")
        }
        guard ops.flags & MOERT_EXPERT_OUTPUT_ZERO == 0 || ops.flags & MOERT_EXPERT_OUTPUT_IDENTITY == 0 else {
            throw MoertError(.plugin, "\(src): expert kind \(name) declares both MOERT_EXPERT_OUTPUT_ZERO and MOERT_EXPERT_OUTPUT_IDENTITY")
        }
        let skipsForward = ops.flags & (MOERT_EXPERT_OUTPUT_ZERO | MOERT_EXPERT_OUTPUT_IDENTITY) != 0
        guard ops.create != nil, ops.destroy != nil, skipsForward || ops.forward != nil else {
            throw MoertError(.plugin, "\(src): expert kind \(name) lacks create, forward or destroy")
        }
        try lock.withLock {
            guard name != BuiltinKind.expert, !experts.contains(where: { $0.name == name }) else {
                let other = experts.first { $0.name == name }?.source ?? "built-in"
                throw MoertError(.plugin, "\(src): expert kind \(name) is already registered (by \(other))")
            }
            experts.append(ExpertKind(name: name, ops: ops, source: src))
        }
    }

    private static func checkTable(size: UInt32, minimum: Int, abi: UInt32, name: UnsafePointer<CChar>?,
                                   what: String, source: String) throws -> String {
        guard abi == UInt32(MOERT_PLUGIN_ABI_VERSION) else {
            throw MoertError(.plugin, "\(source): \(what) table has plugin ABI version \(abi), moert has \(MOERT_PLUGIN_ABI_VERSION)")
        }
        guard Int(size) >= minimum else {
            throw MoertError(.plugin, "\(source): \(what) table struct_size \(size) is smaller than \(minimum)")
        }
        guard let name, let text = String(validatingCString: name), !text.isEmpty,
              text.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 || $0 == 46 || $0 == 45 })
        else { throw MoertError(.plugin, "\(source): \(what) kind name must match [a-z0-9_.-]+") }
        return text
    }

    // MARK: - Lookup

    /// The router kind called `name`, if registered.
    public func router(named name: String) -> RouterKind? { lock.withLock { routers.first { $0.name == name } } }

    /// The expert kind called `name`, if registered.
    public func expert(named name: String) -> ExpertKind? { lock.withLock { experts.first { $0.name == name } } }

    /// Names of all router kinds, the built-in ones first (`BuiltinKind.routers`).
    public var routerNames: [String] { lock.withLock { BuiltinKind.routers + routers.map(\.name) } }

    /// Names of all expert kinds, the built-in first.
    public var expertNames: [String] { lock.withLock { [BuiltinKind.expert] + experts.map(\.name) } }

    // MARK: - Libraries

    /// Loads a plugin library the host chose (a path, or a bare name searched for) and runs its entry point.
    /// - Throws: `MoertError` (`.io` when not found or not loadable, `.plugin` for ABI or init failures).
    public func load(_ nameOrPath: String) throws {
        try loadLock.withLock { try lockedLoad(nameOrPath, relativeTo: nil) }
    }

    /// Loads a plugin a checkpoint names in its moert section (`source` names that section in messages). A bare
    /// name is searched for in the host's plugin directories only. A path (anything with "/") would let a
    /// downloaded model run code the host did not choose, since dlopen runs a library's constructors before moert
    /// can check anything: it is refused unless `trustPaths`, and then taken relative to `directory`.
    /// - Throws: `MoertError` (`.plugin` for a path without `trustPaths`; else as `load`).
    public func load(_ nameOrPath: String, namedBy source: String, directory: String, trustPaths: Bool) throws {
        guard trustPaths || !nameOrPath.contains("/") else {
            throw MoertError(.plugin, "\(source): plugin \"\(nameOrPath)\" is a path; a model may name plugins by bare name only (e.g. \"gru\"), unless the host trusts the model's plugin paths (MOERT_MODEL_TRUST_PLUGIN_PATHS, --trust-model-plugins, trust_model_plugins=True)")
        }
        try loadLock.withLock { try lockedLoad(nameOrPath, relativeTo: directory) }
    }

    private func lockedLoad(_ nameOrPath: String, relativeTo base: String?) throws {
        let path = try PluginSearch.resolve(nameOrPath, relativeTo: base)
        var canonical = path
        if let r = realpath(path, nil) {
            canonical = String(cString: r)
            free(r)
        }
        if lock.withLock({ libraries.contains { $0.path == canonical } }) { return }
        guard let handle = dlopen(canonical, RTLD_NOW | RTLD_LOCAL) else {
            throw MoertError(.io, "\(canonical): cannot load plugin: \(String(cString: dlerror()))")
        }
        do {
            guard let entry = dlsym(handle, MOERT_PLUGIN_ENTRY) else {
                throw MoertError(.plugin, "\(canonical): no \(MOERT_PLUGIN_ENTRY) symbol; not a moert plugin")
            }
            let initialize = unsafeBitCast(entry, to: moert_plugin_init_fn.self)
            lock.withLock { (loading, loadingThread) = (canonical, pthread_self()) }
            defer { lock.withLock { (loading, loadingThread) = (nil, nil) } }
            let before = lock.withLock { (routers.count, experts.count) }
            pluginError.clear()
            let status = initialize(HostAPI.pointer, nil)
            if status != MOERT_OK {
                // Roll back whatever this library registered before failing.
                lock.withLock {
                    routers.removeSubrange(before.0...)
                    experts.removeSubrange(before.1...)
                }
                throw MoertError(.plugin, "\(canonical): \(MOERT_PLUGIN_ENTRY) failed with status \(status): \(pluginError.take() ?? "no message")")
            }
            if let failure = lock.withLock({ pendingFailure.removeValue(forKey: canonical) }) {
                lock.withLock {
                    routers.removeAll { $0.source == canonical }
                    experts.removeAll { $0.source == canonical }
                }
                throw failure
            }
        } catch {
            dlclose(handle)
            throw error
        }
        lock.withLock { libraries.append((canonical, handle)) }
    }

    /// Registration errors raised inside a library's init, reported when the init returns.
    private var pendingFailure: [String: MoertError] = [:]

    /// Records a failed registration made from inside `loading`'s init.
    func noteRegistrationFailure(_ error: MoertError) {
        lock.withLock {
            if let l = loading, pendingFailure[l] == nil { pendingFailure[l] = error }
        }
    }

    /// Counts a model coming alive or going away.
    package func modelLifetime(_ delta: Int) { lock.withLock { liveModels += delta } }

    /// Unregisters every plugin kind and unloads every library.
    /// - Throws: `MoertError` (`.invalidArgument`) while models are alive.
    public func shutdown() throws {
        try loadLock.withLock {
            try lock.withLock {
                guard liveModels == 0 else {
                    throw MoertError(.invalidArgument, "\(liveModels) model(s) still loaded; free them before moert_shutdown")
                }
                routers.removeAll()
                experts.removeAll()
                for l in libraries { dlclose(l.handle) }
                libraries.removeAll()
            }
        }
    }
}
