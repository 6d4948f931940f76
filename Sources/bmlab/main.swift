import ArgumentParser
import Foundation
import BMCore

// Line-buffered standard output even into a file or a pipe (Slurm .out files, sweep
// logs, notebooks): every line is there as soon as it is printed.
Machine.lineBufferStandardOutput()
Machine.dieWithParentIfAsked()             // a sweep worker or notebook child ends with its parent
// An unknown command is named, with the nearest one, instead of "unexpected arguments"
let commands = BMLabCommand.configuration.subcommands.compactMap { $0.configuration.commandName } + ["help"]
if CommandLine.arguments.count > 1, let first = CommandLine.arguments.dropFirst().first,
   !first.hasPrefix("-"), !commands.contains(first) {
    FileHandle.standardError.write(Data("bmlab: error: unknown command '\(first)'\(didYouMean(first, in: commands)); commands: \(commands.dropLast().joined(separator: ", ")) (bmlab --help)\n".utf8))
    exit(64)
}
// "--max-tokens -5" would read "-5" as an option and report a missing value, hiding
// the real problem; a negative number after an option is joined to it
// ("--max-tokens=-5"), so the option's own check names the value and the range.
var arguments = Array(CommandLine.arguments.dropFirst())
var index = 0
while index + 1 < arguments.count, arguments[index] != "--" {
    let option = arguments[index], value = arguments[index + 1]
    if option.hasPrefix("--"), !option.contains("="), value.hasPrefix("-"), Double(value) != nil {
        arguments[index] = option + "=" + value
        arguments.remove(at: index + 1)
    }
    index += 1
}
BMLabCommand.main(arguments)
