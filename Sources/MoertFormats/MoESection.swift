// MoESection: the "moert" section of a checkpoint — which router and experts each MoE layer uses.

import MoertTensor

/// A router or expert kind with its parameters.
public struct KindSpec: Sendable, Equatable {
    /// The kind's registered name.
    public var kind: String
    /// Its parameters, as written in the section.
    public var params: [String: JSON]

    /// Creates a spec.
    public init(kind: String, params: [String: JSON] = [:]) {
        self.kind = kind
        self.params = params
    }
}

/// `count` consecutive experts of one kind.
public struct ExpertGroup: Sendable, Equatable {
    /// The experts' kind.
    public var spec: KindSpec
    /// How many.
    public var count: Int

    /// Creates a group.
    public init(spec: KindSpec, count: Int) {
        self.spec = spec
        self.count = count
    }
}

/// An always-on SwiGLU expert the section adds to MoE layers (RMoE's shared expert): output =
/// routedWeight · (routed sum) + weight · F(x).
public struct SharedExpertSpec: Sendable, Equatable {
    /// Its width; nil: config.json's `intermediate_size`.
    public var intermediateSize: Int?
    /// The shared expert's weight.
    public var weight: Float
    /// The routed experts' weight.
    public var routedWeight: Float
}

/// The parsed section (see docs/model-format.md). What it leaves out is nil: the architecture's built-in router
/// and experts.
public struct MoESection: Sendable {
    /// Plugin libraries to load first.
    public var plugins: [String] = []
    /// Where the section was read from, for messages.
    public var source = "the moert section"
    /// The router of every MoE layer without an entry of its own; nil: the built-in.
    public var router: KindSpec?
    /// The experts of every MoE layer without an entry of its own; nil: `num_experts` built-in experts.
    public var experts: [ExpertGroup]?
    /// Routers of single decoder layers.
    public var layerRouters: [Int: KindSpec] = [:]
    /// Experts of single decoder layers.
    public var layerExperts: [Int: [ExpertGroup]] = [:]
    /// The shared expert of every MoE layer without an entry of its own; nil: none (or the architecture's own).
    public var sharedExpert: SharedExpertSpec?
    /// Shared experts of single decoder layers.
    public var layerSharedExperts: [Int: SharedExpertSpec] = [:]
    /// Layers made dense by the section, with their MLP's width (nil: config.json's `intermediate_size`).
    public var denseLayers: [Int: Int?] = [:]
    /// The block-quantized tensors; nil: none.
    public var quantization: QuantizationSection?

    /// The empty section: built-in kinds everywhere.
    public init() {}

    /// The router of decoder layer `layer`; nil: the built-in.
    public func router(layer: Int) -> KindSpec? { layerRouters[layer] ?? router }

    /// The expert groups of decoder layer `layer`; nil: the built-in experts.
    public func experts(layer: Int) -> [ExpertGroup]? { layerExperts[layer] ?? experts }

    /// The shared expert the section gives decoder layer `layer`; nil: none.
    public func sharedExpert(layer: Int) -> SharedExpertSpec? { layerSharedExperts[layer] ?? sharedExpert }

    /// True when decoder layer `layer` runs a mixture of experts: the config makes it one and the section does not
    /// make it dense.
    public func isMoELayer(_ layer: Int, config: ModelConfig) -> Bool { config.isMoELayer(layer) && denseLayers[layer] == nil }

    /// Every layer index the `layers` object names.
    public var namedLayers: [Int] {
        Set(layerRouters.keys).union(layerExperts.keys).union(layerSharedExperts.keys).union(denseLayers.keys).sorted()
    }

    /// The section of a checkpoint: `moert.json` beside config.json, else the "moert" key of config.json (`config`,
    /// as parsed), else the empty section.
    /// - Throws: `MoertError` (`.format`) for a malformed section.
    public static func read(directory: String, config: JSON) throws -> MoESection {
        let file = joinPath(directory, "moert.json")
        if fileExists(file) { return try MoESection(json: try JSON.parse(try readTextFile(file), what: file), source: file) }
        if let s = config.object?["moert"] { return try MoESection(json: s, source: joinPath(directory, "config.json") + " (moert)") }
        return MoESection()
    }

    /// Parses the section from `json` (a JSON object).
    /// - Throws: `MoertError` (`.format`) naming `source` and the offending key.
    public init(json: JSON, source: String) throws {
        self.source = source
        guard let o = json.object else { throw MoertError.format("\(source): the moert section must be an object") }
        try Self.checkKeys(o, ["format_version", "plugins", "router", "experts", "shared_expert", "layers", "quantization"],
                           at: source)
        if let v = o["format_version"] {
            guard v.int == 1 else { throw MoertError.unsupported("\(source): format_version \(v) is not supported (1 is)") }
        }
        if let p = o["plugins"] {
            guard let list = p.array?.compactMap(\.string), list.count == p.array?.count else {
                throw MoertError.format("\(source): plugins must be a list of strings")
            }
            plugins = list
        }
        if let q = o["quantization"] { quantization = try QuantizationSection(json: q, source: source) }
        if let r = o["router"] { router = try Self.kind(r, at: "\(source): router") }
        if let e = o["experts"] { experts = try Self.groups(e, at: "\(source): experts") }
        if let s = o["shared_expert"] { sharedExpert = try Self.shared(s, at: "\(source): shared_expert") }
        if let l = o["layers"] {
            guard let layers = l.object else { throw MoertError.format("\(source): layers must be an object") }
            for (key, entry) in layers {
                guard let index = Int(key), index >= 0, let e = entry.object else {
                    throw MoertError.format("\(source): layers key \"\(key)\" must be a layer index with an object value")
                }
                let at = "\(source): layers.\(key)"
                try Self.checkKeys(e, ["router", "experts", "shared_expert", "dense"], at: at)
                if let r = e["router"] { layerRouters[index] = try Self.kind(r, at: at + ".router") }
                if let x = e["experts"] { layerExperts[index] = try Self.groups(x, at: at + ".experts") }
                if let s = e["shared_expert"] { layerSharedExperts[index] = try Self.shared(s, at: at + ".shared_expert") }
                if let d = e["dense"] {
                    if e.count > 1 {
                        throw MoertError.format("\(at): a dense layer has no router, experts or shared expert; give \"dense\" alone")
                    }
                    denseLayers[index] = try Self.dense(d, at: at + ".dense")
                }
            }
        }
    }

    private static func checkKeys(_ o: [String: JSON], _ allowed: Set<String>, at: String) throws {
        if let bad = o.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw MoertError.format("\(at): unknown key \"\(bad)\" (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    /// A width in [1, 2^24]: larger is not a real layer, and the loader would otherwise size reads from it.
    private static func width(_ v: JSON?, at: String) throws -> Int? {
        guard let v else { return nil }
        guard let n = v.int, n >= 1, n <= 1 << 24 else { throw MoertError.format("\(at): intermediate_size must be an integer in [1, 16777216]") }
        return Int(n)
    }

    private static func shared(_ v: JSON, at: String) throws -> SharedExpertSpec {
        guard let o = v.object else { throw MoertError.format("\(at): must be an object") }
        try checkKeys(o, ["intermediate_size", "weight", "routed_weight"], at: at)
        func scale(_ key: String) throws -> Float {
            guard let j = o[key] else { return 1 }
            guard let d = j.double, d.isFinite, abs(d) <= 1e6 else { throw MoertError.format("\(at): \(key) must be a finite number") }
            return Float(d)
        }
        return SharedExpertSpec(intermediateSize: try width(o["intermediate_size"], at: at), weight: try scale("weight"),
                                routedWeight: try scale("routed_weight"))
    }

    private static func dense(_ v: JSON, at: String) throws -> Int? {
        if v.bool == true { return nil }
        guard let o = v.object else { throw MoertError.format("\(at): must be true or an object {\"intermediate_size\": N}") }
        try checkKeys(o, ["intermediate_size"], at: at)
        return try width(o["intermediate_size"], at: at)
    }

    private static func kind(_ v: JSON, at: String) throws -> KindSpec {
        guard let o = v.object else { throw MoertError.format("\(at): must be an object with \"kind\"") }
        try checkKeys(o, ["kind", "params", "count"], at: at)
        guard let kind = o["kind"]?.string, !kind.isEmpty else { throw MoertError.format("\(at): missing \"kind\"") }
        var params: [String: JSON] = [:]
        if let p = o["params"] {
            guard let po = p.object else { throw MoertError.format("\(at): params must be an object") }
            params = po
        }
        return KindSpec(kind: kind, params: params)
    }

    /// The most experts one layer may have, all groups together.
    public static let maxExpertsPerLayer = 65536

    private static func groups(_ v: JSON, at: String) throws -> [ExpertGroup] {
        guard let list = v.array, !list.isEmpty else { throw MoertError.format("\(at): must be a non-empty list") }
        let groups = try list.enumerated().map { i, g in
            let spec = try kind(g, at: "\(at)[\(i)]")
            guard let c = g.object?["count"]?.int, c >= 1, c <= 65536 else {
                throw MoertError.format("\(at)[\(i)]: count must be an integer in [1, 65536]")
            }
            return ExpertGroup(spec: spec, count: Int(c))
        }
        let total = groups.reduce(0) { $0 + $1.count }
        guard total <= maxExpertsPerLayer else {
            throw MoertError.format("\(at): \(total) experts in all, more than the \(maxExpertsPerLayer) a layer may have")
        }
        return groups
    }
}
