import ArgumentParser
import BMCore
import BMMixers
import BMRouting

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the registered plugins (mixers, routers) with their options.")
    @Flag(help: "Names and one-line descriptions only.") var short = false

    func run() throws {
        print(MixerRegistry.listing(short: short), terminator: "")
    }
}
