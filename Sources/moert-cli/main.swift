// The `moert` command line tool: inspect, evaluate and generate with Hugging Face MoE checkpoints.

#if canImport(Glibc)
import Glibc
#endif
import MoertCore
import MoertTensor
import MoertText

let usage = """
usage: moert <command> [options]

commands:
  info      describe a model (architecture, sizes, dtype, memory)
  run       evaluate tokens and write the logits of every position as .npy
  generate  generate text (--prompt) or token ids (--tokens) after a prompt
  chat      a conversation in the terminal, through the model's chat template
  tokenize  text to token ids with the model's tokenizer
  detokenize  token ids to text
  render-chat  a conversation rendered by the model's chat template
  trace     record routing decisions and print a per-layer load summary
  bench     measure prefill and decode throughput
  quantize  write a copy of a model with 8-bit or 4-bit weights
  perplexity  perplexity of a model on a text file
  kernels   the kernels this CPU can run for each product, and which one each runs

Run 'moert <command> --help' for a command's options.
"""

/// Writes `line` and a newline to stderr (progress and warnings).
func printError(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}

/// Prints a one-line error to stderr and exits with `code`.
func fail(_ message: String, code: Int32) -> Never {
    printError("moert: error: \(message)")
    exit(code)
}

// Arguments arrive as bytes: CommandLine.arguments would turn invalid UTF-8 into U+FFFD without a word.
for i in 1..<Int(CommandLine.argc) {
    guard let raw = CommandLine.unsafeArgv[i] else { continue }
    let bytes = UnsafeRawBufferPointer(start: raw, count: strlen(raw))
    let bad = UTF8Text.firstInvalidOffset(bytes)
    if bad < bytes.count { fail("argument \(i) is not valid UTF-8 (invalid byte at offset \(bad))", code: 2) }
}

let argv = CommandLine.arguments
guard argv.count >= 2 else { print(usage); exit(2) }
let command = argv[1]
if command == "--help" || command == "-h" || command == "help" { print(usage); exit(0) }
if command == "--version" { print("moert \(moertVersion)"); exit(0) }
guard let help = commandHelp[command] else { fail("unknown command '\(command)' (try 'moert --help')", code: 2) }
let rest = argv[2...]
if rest.contains("--help") || rest.contains("-h") { print(help); exit(0) }

do {
    switch command {
    case "info":
        try infoCommand(try Arguments(rest, valued: modelOptions, flags: modelFlags.union(["--memory"])))
    case "run":
        try runCommand(try Arguments(rest, valued: modelOptions.union(routingOptions).union(["--tokens", "--logits"]), flags: modelFlags))
    case "generate":
        let a = try Arguments(rest, valued: modelOptions.union(routingOptions).union(samplingOptions).union(["--tokens", "--prompt", "--system", "--max-new", "--keep", "--scmoe", "--scmoe-alpha"]),
                              flags: modelFlags.union(["--ignore-eos", "--chat", "--context-shift"]))
        switch (a.string("--tokens"), a.string("--prompt")) {
        case (.some, nil): try generateCommand(a)
        case (nil, .some): try generateTextCommand(a)
        default: throw UsageError("give exactly one of --prompt and --tokens")
        }
    case "chat":
        try chatCommand(try Arguments(rest, valued: modelOptions.union(routingOptions).union(samplingOptions).union(["--system", "--max-new", "--keep"]),
                                      flags: modelFlags.union(["--context-shift"])))
    case "tokenize":
        try tokenizeCommand(try Arguments(rest, valued: ["--model", "--tokenizer", "--text", "--file", "--jsonl"], flags: ["--add-special"]))
    case "detokenize":
        try detokenizeCommand(try Arguments(rest, valued: ["--model", "--tokenizer", "--tokens", "--jsonl"], flags: []))
    case "render-chat":
        try renderChatCommand(try Arguments(rest, valued: ["--model", "--messages"], flags: ["--add-generation-prompt"]))
    case "bench":
        try benchCommand(try Arguments(rest, valued: modelOptions.union(routingOptions).union(["--prompt", "--decode", "--repeat", "--depth"]), flags: modelFlags.union(["--baseline", "--bandwidth"])))
    case "perplexity":
        try perplexityCommand(try Arguments(rest, valued: modelOptions.union(routingOptions).union(["--file", "--stride", "--scmoe", "--scmoe-alpha"]), flags: modelFlags))
    case "quantize":
        try quantizeCommand(try Arguments(rest, valued: ["--model", "--out", "--type", "--attention", "--experts", "--shared", "--output-type", "--calibration", "--bits", "--tensor-type"],
                                          flags: ["--force"]))
    case "kernels":
        try kernelsCommand(try Arguments(rest, valued: ["--threads"], flags: ["--available"]))
    case "trace":
        try traceCommand(try Arguments(rest, valued: modelOptions.union(routingOptions).union(["--tokens", "--out", "--max-new"]), flags: modelFlags))
    default:
        fail("unknown command '\(command)'", code: 2)
    }
} catch let e as UsageError {
    fail("\(e.message) (try 'moert \(command) --help')", code: 2)
} catch let e as MoertError {
    fail(e.message, code: 1)
} catch {
    fail("\(error)", code: 1)
}
