// Version: the library version, kept equal to MOERT_VERSION in include/moert.h.

/// The moert version, "MAJOR.MINOR.PATCH".
public let moertVersion = "0.1.0"
