// ChatFixtures: the chat template fixtures of Tests/fixtures/chat (made by tools/make_chat_fixtures.py) as test data.

import MoertFormats
import MoertTestSupport

/// Tests/fixtures/chat.
let chatFixtures = fixturesDirectory + "/chat"

/// The fixed time transformers' strftime_now formatted for the fixtures (tools/make_chat_fixtures.py FIXED_TIME).
let chatFixedTime = 1_741_955_696

/// One JSON object per line of a .jsonl fixture.
func readJSONLines(_ path: String) throws -> [[String: JSON]] {
    let text = try readTextFile(path, limit: 64 << 20)
    return try text.split(separator: "\n").enumerated().map { i, line in
        guard let object = try JSON.parse(String(line), what: "\(path):\(i + 1)").object else {
            throw ChatFixtureError.malformed("\(path):\(i + 1): expected an object")
        }
        return object
    }
}

enum ChatFixtureError: Error {
    case malformed(String)
}

/// What a fixture case expects: the rendered text, or an error of a Python type with a message.
enum ChatExpectation {
    case rendered(String)
    case error(type: String, message: String)

    init(_ c: [String: JSON]) throws {
        if let text = c["rendered"]?.string {
            self = .rendered(text)
        } else if let e = c["error"]?.object, let type = e["type"]?.string, let message = e["message"]?.string {
            self = .error(type: type, message: message)
        } else {
            throw ChatFixtureError.malformed("case without rendered or error")
        }
    }
}
