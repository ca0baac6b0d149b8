// BuiltinKind: the names of the router and expert kinds every model can use without plugins.

/// Kinds every model can use without plugins; a plugin may not register these names.
public enum BuiltinKind {
    /// The architecture's softmax top-k router (`SoftmaxTopKRouter`).
    public static let router = "topk"
    /// The architecture's SwiGLU expert (`StoredExpert`).
    public static let expert = "ffn"
}
