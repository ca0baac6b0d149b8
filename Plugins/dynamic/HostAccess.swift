// HostAccess: checked access to the host API table — ABI checks, parameters and layer tensors.
//
// Part of the `dynamic` plugin (router kinds `topp` and `adamoe`; math, sources, params and tensors at the top of
// TopPRouter.swift and AdaMoERouter.swift). The host table must have abi_version == MOERT_PLUGIN_ABI_VERSION and
// a struct_size covering every field up to param_number; parameters are validated (integers in range, numbers
// finite) and tensors must be float32 with exactly the documented shape, each failure naming the parameter or
// tensor. Threads: used only during init and create, on the host's loading thread; holds no mutable state.

import CMoert

/// Bytes of `T` up to and including the field at `path`: what a `struct_size` must cover before the field is used.
/// - Returns: the size, or `Int.max` (never covered) when the layout cannot be queried.
func fieldEnd<T, F>(_ path: KeyPath<T, F>) -> Int {
    guard let offset = MemoryLayout<T>.offset(of: path) else { return Int.max }
    return offset + MemoryLayout<F>.size
}

/// The host table of one init() or create() call, checked to hold every function this plugin calls.
struct HostAccess {
    /// The plugin kind asking, for messages ("topp", "adamoe", or "dynamic" at init).
    let kind: String
    let api: UnsafePointer<moert_host_api>
    /// The host's set_error (always present once checked).
    let setError: SetErrorFunction?

    /// Checks the ABI version and that the table covers register_router through param_number.
    /// - Parameters:
    ///   - host: the table the host passed; nil is refused.
    ///   - kind: who is asking, for messages.
    /// - Throws: `PluginFailure` with `MOERT_ERR_PLUGIN`; its message is reported when set_error is available.
    init(_ host: UnsafePointer<moert_host_api>?, kind: String) throws(PluginFailure) {
        guard let host else { throw .plugin("\(kind): the host API table is NULL") }
        let size = Int(host.pointee.struct_size)
        setError = Self.setErrorIfCovered(host)
        self.kind = kind
        api = host
        guard host.pointee.abi_version == UInt32(MOERT_PLUGIN_ABI_VERSION) else {
            throw .plugin("\(kind): host plugin ABI version \(host.pointee.abi_version), "
                          + "plugin built for \(MOERT_PLUGIN_ABI_VERSION)")
        }
        let needed = fieldEnd(\moert_host_api.param_number)
        guard size >= needed else {
            throw .plugin("\(kind): host API table has \(size) bytes, at least \(needed) needed")
        }
        let t = host.pointee
        guard t.set_error != nil, t.register_router != nil, t.layer_tensor != nil, t.param_number != nil else {
            throw .plugin("\(kind): host API table lacks a function this plugin needs")
        }
    }

    /// The host's set_error when `host` is non-NULL and its table covers the field; for reporting failures of the
    /// checks themselves.
    static func setErrorIfCovered(_ host: UnsafePointer<moert_host_api>?) -> SetErrorFunction? {
        guard let host, Int(host.pointee.struct_size) >= fieldEnd(\moert_host_api.set_error) else { return nil }
        return host.pointee.set_error
    }

    // MARK: Parameters

    /// A numeric (or boolean: 1/0) parameter, nil when absent.
    /// - Throws: `PluginFailure` when the parameter is present but not a number.
    func number(_ context: OpaquePointer?, _ key: String) throws(PluginFailure) -> Double? {
        guard let paramNumber = api.pointee.param_number else { throw .plugin("\(kind): host has no param_number") }
        var value = 0.0
        let status = key.withCString { paramNumber(context, $0, &value) }
        if status == MOERT_ERR_OUT_OF_RANGE { return nil }
        guard status == MOERT_OK else { throw .invalid("\(kind): parameter \(key) must be a number") }
        return value
    }

    /// An integer parameter in `range`, `fallback` when absent.
    /// - Throws: `PluginFailure` when the value is not an integer in `range`.
    func integer(_ context: OpaquePointer?, _ key: String, default fallback: Int,
                 in range: ClosedRange<Int>) throws(PluginFailure) -> Int {
        let v = try number(context, key) ?? Double(fallback)
        guard v.isFinite, v == v.rounded(), v >= Double(range.lowerBound), v <= Double(range.upperBound) else {
            throw .invalid("\(kind): parameter \(key) = \(v): "
                           + "expected an integer in [\(range.lowerBound), \(range.upperBound)]")
        }
        return Int(v)
    }

    // MARK: Tensors

    /// The leading dimension of a layer tensor whose first size the plugin learns from the tensor itself (at least
    /// 1); `tensor(_:_:shape:)` checks the full shape afterwards.
    /// - Parameter what: the expected shape in words, for messages.
    /// - Throws: `PluginFailure` naming the tensor when it is missing, scalar or empty.
    func leadingDimension(_ context: OpaquePointer?, _ name: String, what: String) throws(PluginFailure) -> Int {
        guard let layerTensor = api.pointee.layer_tensor else { throw .plugin("\(kind): host has no layer_tensor") }
        var t = moert_tensor()
        t.struct_size = UInt32(MemoryLayout<moert_tensor>.size)
        let status = name.withCString { layerTensor(context, $0, &t) }
        guard status == MOERT_OK else {
            throw PluginFailure(status, "\(kind): tensor \(name) \(what) is missing or unreadable")
        }
        guard t.ndim >= 1, t.shape.0 >= 1, t.shape.0 <= Int64(Int32.max) else {
            throw .format("\(kind): tensor \(name): expected \(what), "
                          + "got \(t.ndim) dimensions with leading size \(t.shape.0)")
        }
        return Int(t.shape.0)
    }

    /// A float32 tensor of the layer (name relative to its block prefix) with exactly the shape `shape`.
    /// - Returns: its elements, valid until the instance is destroyed.
    /// - Throws: `PluginFailure` naming the tensor when it is missing, not float, or shaped otherwise.
    func tensor(_ context: OpaquePointer?, _ name: String, shape: [Int]) throws(PluginFailure) -> UnsafePointer<Float> {
        guard let layerTensor = api.pointee.layer_tensor else { throw .plugin("\(kind): host has no layer_tensor") }
        var t = moert_tensor()
        t.struct_size = UInt32(MemoryLayout<moert_tensor>.size)
        let status = name.withCString { layerTensor(context, $0, &t) }
        let want = "[" + shape.map(String.init).joined(separator: ", ") + "]"
        guard status == MOERT_OK else {
            throw PluginFailure(status, "\(kind): tensor \(name) \(want) is missing or unreadable")
        }
        let dims = [t.shape.0, t.shape.1, t.shape.2, t.shape.3]
        let ndim = Int(t.ndim)
        guard ndim >= 0 && ndim <= 4 else { throw .format("\(kind): tensor \(name) has \(ndim) dimensions") }
        let got = "[" + dims.prefix(ndim).map { String($0) }.joined(separator: ", ") + "]"
        guard t.dtype == MOERT_TENSOR_F32 else {
            throw .format("\(kind): tensor \(name): expected \(want) float, got an integer tensor \(got)")
        }
        guard ndim == shape.count, zip(dims, shape).allSatisfy({ $0.0 == Int64($0.1) }) else {
            throw .format("\(kind): tensor \(name): expected \(want), got \(got)")
        }
        guard let data = t.data else { throw .format("\(kind): tensor \(name) has no data") }
        return data.assumingMemoryBound(to: Float.self)
    }
}

/// The layer facts a router's create() reads, checked.
struct LayerFacts {
    /// E: experts in the layer.
    let experts: Int
    /// H: hidden size.
    let hidden: Int
    /// The layer's configured top_k.
    let topK: Int

    /// - Throws: `PluginFailure` when the info is missing, too small, or has no experts or width.
    init(_ layer: UnsafePointer<moert_layer_info>?, kind: String) throws(PluginFailure) {
        guard let layer, Int(layer.pointee.struct_size) >= fieldEnd(\moert_layer_info.top_k) else {
            throw .plugin("\(kind): layer info missing or too small")
        }
        experts = Int(layer.pointee.n_experts)
        hidden = Int(layer.pointee.hidden_size)
        topK = Int(layer.pointee.top_k)
        guard experts >= 1, hidden >= 1 else {
            throw .invalid("\(kind): layer has hidden_size \(hidden) and n_experts \(experts)")
        }
    }
}
