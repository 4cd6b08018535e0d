import CFuzzer
import Foundation
import ServalFuzzTargets

// libFuzzer over one of Serval's decoders (`FuzzTargets.all`):
//
//     serval-fuzz TARGET [libFuzzer flags] [corpus folders...]
//
// Built only with SERVAL_FUZZ=1 and -sanitize=fuzzer,address, in its own build folder (scripts/fuzz/run.sh).

nonisolated(unsafe) var selected: (@Sendable (UnsafeRawBufferPointer) -> Bool)?

var arguments = CommandLine.arguments
guard arguments.count >= 2, let target = FuzzTargets.all[arguments[1]] else {
    FileHandle.standardError.write(Data("usage: serval-fuzz TARGET [libFuzzer flags] [corpus...]; targets: \(FuzzTargets.all.keys.sorted().joined(separator: ", "))\n".utf8))
    exit(2)
}
selected = target
// libFuzzer sees the program name and its own flags, not the target name.
arguments.remove(at: 1)
var argc = Int32(arguments.count)
var cStrings: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
let code = cStrings.withUnsafeMutableBufferPointer { buffer -> Int32 in
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = buffer.baseAddress
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        _ = selected?(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
        return 0
    }
}
exit(code)
