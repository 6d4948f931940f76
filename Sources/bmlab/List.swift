import ArgumentParser
import BMCore
import BMMixers
import BMRouting
import BMExperiments
import BMSpec

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list",
        abstract: "List the registered plugins (mixers, routers) with their options, or every spec key.")
    @Flag(help: "Names and one-line descriptions only.") var short = false
    @Flag(help: "List every spec key (type, default, range, what it does) instead of the plugins.") var keys = false
    @Flag(help: "With --keys: a markdown table.") var markdown = false
    @Option(help: "With --keys: replace the generated key reference in this markdown file (docs/specs.md).") var into: String?

    func run() throws {
        guarded {
            if let into {
                guard keys else { throw BMError.invalid("--into goes with --keys") }
                try SpecKeys.updateReference(in: into)
                print("\(into): key reference updated (\(SpecKeys.all.count) keys)")
            } else if keys {
                print(markdown ? SpecKeys.markdown() : SpecKeys.text(), terminator: "")
            } else {
                print(MixerRegistry.listing(short: short), terminator: "")
            }
        }
    }
}
