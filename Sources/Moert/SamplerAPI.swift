// SamplerAPI: standalone token samplers.

import CMoert
import MoertCore
import MoertTensor

/// Converts host sampler options (NULL = greedy) into the core's.
func samplerOptions(_ p: UnsafePointer<moert_sampler_options>?) throws -> SamplerOptions {
    let o = try readSized(p, defaults: defaultSamplerOptions, name: "moert_sampler_options")
    var s = SamplerOptions()
    s.temperature = o.temperature
    s.topK = Int(o.top_k)
    s.topP = o.top_p
    s.seed = o.seed
    try s.validate()
    return s
}

/// The library's default (greedy) sampler options.
nonisolated(unsafe) let defaultSamplerOptions = moert_sampler_options(struct_size: UInt32(MemoryLayout<moert_sampler_options>.size),
                                                  temperature: 0, top_k: 0, top_p: 1, seed: 0)

/// Default (greedy) sampler options. The C entry point is `moert_sampler_options_init_sized`.
@c @implementation public func moert_sampler_options_init_sized(_ options: UnsafeMutablePointer<moert_sampler_options>!, _ size: Int) {
    writeDefaults(defaultSamplerOptions, to: options, size: size)
}

/// Creates a sampler. The C entry point is `moert_sampler_create`.
@c @implementation public func moert_sampler_create(_ options: UnsafePointer<moert_sampler_options>!,
                                                    _ outSampler: UnsafeMutablePointer<OpaquePointer?>!) -> moert_status {
    outSampler?.pointee = nil
    return withStatus {
        let out = try require(outSampler, "out_sampler")
        out.pointee = retainedHandle(SamplerHandle(try Sampler(options: try samplerOptions(options))))
    }
}

/// Frees a sampler. The C entry point is `moert_sampler_free`.
@c @implementation public func moert_sampler_free(_ sampler: OpaquePointer!) {
    guard let sampler else { return }
    releaseHandle(sampler, as: SamplerHandle.self)
}

/// Draws a token. The C entry point is `moert_sampler_sample`.
@c @implementation public func moert_sampler_sample(_ sampler: OpaquePointer!, _ logits: UnsafePointer<Float>!, _ nVocab: Int,
                                                    _ outToken: UnsafeMutablePointer<Int32>!) -> moert_status {
    withStatus {
        let handle = object(try require(sampler, "sampler"), as: SamplerHandle.self)
        let logits = try require(logits, "logits")
        let out = try require(outToken, "out_token")
        // size_t arrives as Int: a count above Int.max shows up negative.
        // Token ids are int32_t: a row longer than Int32.max would yield ids that do not fit.
        guard nVocab >= 0, nVocab <= Int(Int32.max) else {
            throw MoertError(.invalidArgument, "n_vocab \(UInt(bitPattern: nVocab)) does not fit token ids (at most \(Int32.max))")
        }
        out.pointee = try handle.sampler.sample(UnsafeBufferPointer(start: logits, count: nVocab))
    }
}
