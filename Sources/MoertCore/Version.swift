// Version: the library version, read from include/moert.h (its one source).

import CMoert

/// The moert version, "MAJOR.MINOR.PATCH" (MOERT_VERSION of moert.h).
public let moertVersion: String = MOERT_VERSION
