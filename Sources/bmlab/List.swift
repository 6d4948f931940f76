import ArgumentParser
import BMCore
import BMMixers
import BMRouting

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the registered plugins (mixers, routers) with their options.")
    @Flag(help: "Names and one-line descriptions only.") var short = false

    func run() throws {
        print("Mixers (model.layers entries):")
        for e in MixerRegistry.entries {
            print("  \(e.name.padding(toLength: 12, withPad: " ", startingAt: 0)) [\(e.kind.rawValue)] \(e.summary)")
            if !short { for o in e.options { print("      \(o.summary)") } }
        }
        print("\nRouters (moe's router option):")
        for e in RouterRegistry.entries {
            print("  \(e.name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(e.summary)")
            if !short { for o in e.options { print("      \(o.summary)") } }
        }
    }
}
