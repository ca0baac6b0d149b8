// LeakSanitizerSuppressions: leaks of the test harness itself that `swift test --sanitize=address` must not report.

/// LeakSanitizer reads this when the test process exits (the sanitizer runtime declares it weak; a definition in
/// the executable replaces its empty default). XCTest's harness (`XCTMain`) leaves its test-suite objects
/// unreleased at exit even when there are no XCTest tests, which LeakSanitizer reports as indirect leaks inside
/// libXCTest.so and which would fail every sanitized run. Only frames in libXCTest.so are suppressed: a leak in
/// moert or in a test still fails the run.
@_cdecl("__lsan_default_suppressions")
public func leakSanitizerDefaultSuppressions() -> UnsafePointer<CChar> {
    let text: StaticString = "leak:libXCTest.so\n"
    return UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
}
