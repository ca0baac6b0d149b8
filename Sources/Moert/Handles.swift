// Handles: the Swift objects behind the opaque C handles, and conversions between them.

import CMoert
import MoertCore
#if canImport(Glibc)
import Glibc
#endif

/// Behind `moert_model *`: the model plus C strings it hands out.
final class ModelHandle {
    let model: Model
    let architecture: UnsafeMutablePointer<CChar>

    init(_ model: Model) {
        self.model = model
        architecture = strdup(model.config.architecture.rawValue)
    }

    deinit { free(architecture) }
}

/// Behind `moert_session *`. Retains its model handle, so a model freed too early stays valid.
final class SessionHandle {
    let modelHandle: ModelHandle
    let session: Session
    /// The trace copy whose arrays moert_session_get_trace lends out (kept until the next call).
    var traceView: TraceView?

    init(_ modelHandle: ModelHandle, _ session: Session) {
        self.modelHandle = modelHandle
        self.session = session
    }
}

/// Behind `moert_sampler *`.
final class SamplerHandle {
    var sampler: Sampler
    init(_ sampler: Sampler) { self.sampler = sampler }
}

/// Retains `object` and returns it as an opaque pointer owned by the host.
func retainedHandle(_ object: AnyObject) -> OpaquePointer {
    OpaquePointer(Unmanaged.passRetained(object).toOpaque())
}

/// The object behind a handle, without changing its reference count.
func object<T: AnyObject>(_ handle: OpaquePointer, as type: T.Type) -> T {
    Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
}

/// Releases the host's reference to a handle.
func releaseHandle<T: AnyObject>(_ handle: OpaquePointer, as type: T.Type) {
    Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).release()
}

/// The `index`-th id of a list a C getter reports one at a time (the model's and the tokenizer's stop ids); -1
/// when `index` is out of range.
func tokenId(_ ids: [Int32], at index: Int32) -> Int32 {
    index >= 0 && Int(index) < ids.count ? ids[Int(index)] : -1
}

/// A copy of a routing trace in C arrays owned by the session handle, lent out by moert_session_get_trace.
final class TraceView {
    let count: Int
    let positions: UnsafeMutableBufferPointer<Int32>
    let layers: UnsafeMutableBufferPointer<Int32>
    let tokens: UnsafeMutableBufferPointer<Int32>
    let offsets: UnsafeMutableBufferPointer<Int64>
    let expertIds: UnsafeMutableBufferPointer<Int32>
    let weights: UnsafeMutableBufferPointer<Float>

    init(_ t: TraceRecords) {
        count = t.count
        func copy<T>(_ a: [T]) -> UnsafeMutableBufferPointer<T> {
            let b = UnsafeMutableBufferPointer<T>.allocate(capacity: max(a.count, 1))
            _ = b.initialize(from: a)
            return b
        }
        positions = copy(t.positions)
        layers = copy(t.layers)
        tokens = copy(t.tokens)
        offsets = copy(t.offsets)
        expertIds = copy(t.expertIds)
        weights = copy(t.weights)
    }

    deinit {
        positions.deallocate(); layers.deallocate(); tokens.deallocate()
        offsets.deallocate(); expertIds.deallocate(); weights.deallocate()
    }
}
