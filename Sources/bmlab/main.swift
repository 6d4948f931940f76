import ArgumentParser
import Foundation
import BMCore

BMLabCommand.main()
